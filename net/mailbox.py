"""Where messages wait until they are asked for: keyed by (sender, seq), and bounded.

A peer with a valid key could otherwise make a member hold any amount of memory: by
replaying messages already used (nobody will ever take them again) or by sending ones
far ahead of anything the member will ask for soon. The mailbox refuses, with a
ProtocolError naming the sender, a message whose sequence number

- it already holds ("sent message 7 twice"),
- was already taken (a replay), or lies below the sender's floor (see below),
- is more than `window` ahead of the furthest one taken or asked for from that sender,

and a message that would make what one sender has waiting exceed `max_bytes` (one
message alone is always accepted: the member may need it).

Sequence numbers live in lanes of 2**40 (LANE): within a lane, each sender's numbers go
up, roughly in the order they are used (mpc uses lane 0 for its lock-step counter and
lane 1 for replacements and acknowledgements, k + 2**40). "Taken" is exact per lane: a
floor below which everything counts as taken, plus the set of numbers taken above it; the
set is kept under MAX_TRACKED by raising the floor past its older half (a number that far
behind and never used was skipped: nobody waits for it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from net.errors import ProtocolError

LANE = 1 << 40
WINDOW = 1 << 20
"""How far ahead (in sequence numbers) of the furthest one used a message may be."""
MAX_BYTES = 1 << 30
"""Bytes of messages one sender may have waiting (1 GiB)."""
MAX_TRACKED = 1 << 16


@dataclass
class _Lane:
    floor: int
    taken: set[int] = field(default_factory=set)

    def take(self, seq: int) -> None:
        self.taken.add(seq)
        while self.floor in self.taken:
            self.taken.discard(self.floor)
            self.floor += 1
        if len(self.taken) > MAX_TRACKED:
            ordered = sorted(self.taken)
            self.floor = ordered[len(ordered) // 2] + 1
            self.taken = set(ordered[len(ordered) // 2 + 1:])

    def was_taken(self, seq: int) -> bool:
        return seq < self.floor or seq in self.taken


@dataclass
class _Sender:
    lanes: dict[int, _Lane] = field(default_factory=dict)
    furthest: int = 0   # the highest in-lane number taken or asked for
    waiting: int = 0    # bytes held

    def lane(self, seq: int) -> _Lane:
        number = seq // LANE
        if number not in self.lanes:
            self.lanes[number] = _Lane(number * LANE)
        return self.lanes[number]


class Mailbox:
    """Messages of member `me` that arrived before they were asked for."""

    def __init__(self, me: int, max_bytes: int = MAX_BYTES, window: int = WINDOW,
                 name: Callable[[int], str] = "party {}".format):
        self.me = me
        self._name = name
        self.max_bytes = max_bytes
        self.window = window
        self._held: dict[tuple[int, int], tuple[object, int]] = {}
        self._senders: dict[int, _Sender] = {}

    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._held

    def waiting_bytes(self, sender: int) -> int:
        return self._sender(sender).waiting

    def _sender(self, sender: int) -> _Sender:
        if sender not in self._senders:
            self._senders[sender] = _Sender()
        return self._senders[sender]

    def expect(self, sender: int, seq: int) -> None:
        """Note that `seq` from `sender` is wanted now (it moves the window)."""
        state = self._sender(sender)
        state.furthest = max(state.furthest, seq % LANE)

    def put(self, sender: int, seq: int, op: str, item: object, nbytes: int) -> None:
        """Hold `item` (message `seq`, tagged `op`, `nbytes` long) or raise ProtocolError."""
        me, who, state = self._name(self.me), self._name(sender), self._sender(sender)
        refused = f"{me}: refused message {seq} ('{op}', {nbytes} bytes) from {who}"
        if (sender, seq) in self._held:
            raise ProtocolError(f"{me}: {who} sent message {seq} twice",
                                culprit=sender)
        if state.lane(seq).was_taken(seq):
            raise ProtocolError(f"{refused}: message {seq} from {who} was already "
                                f"received and used (a replay, or the parties run different "
                                f"code)", culprit=sender)
        if seq % LANE > state.furthest + self.window:
            raise ProtocolError(f"{refused}: it is more than {self.window} messages ahead of "
                                f"the furthest one used from {who} "
                                f"({state.furthest})", culprit=sender)
        if state.waiting and state.waiting + nbytes > self.max_bytes:
            raise ProtocolError(f"{refused}: {who} already has {state.waiting} "
                                f"bytes of messages waiting to be used, and the limit is "
                                f"{self.max_bytes}", culprit=sender)
        self._held[sender, seq] = (item, nbytes)
        state.waiting += nbytes

    def take(self, sender: int, seq: int):
        """The item held for (sender, seq), now counted as used; None if not here."""
        entry = self._held.pop((sender, seq), None)
        if entry is None:
            return None
        item, nbytes = entry
        state = self._sender(sender)
        state.waiting -= nbytes
        state.lane(seq).take(seq)
        state.furthest = max(state.furthest, seq % LANE)
        return item
