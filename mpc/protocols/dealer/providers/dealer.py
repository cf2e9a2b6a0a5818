"""The trusted dealer: a process on the mesh that sends correlated randomness, seed-compressed.

At start the dealer sends each party a fresh 128-bit seed over the encrypted channel. Item
k is corrected by party k mod n, which sends the request (kind and public shapes only); the
dealer expands every party's stream, computes the derived values and sends that party one
correction tensor per derived component. The dealer never receives a share of anything.

Speculation: training repeats the same sequence of requests every step, so after serving
item k the dealer guesses the specs of the next few items from what followed the last two
specs before, and sends their corrections at once, ahead of the requests. A party whose
request matches the guess (the correction carries the spec's tag) does not wait for the
dealer at all; on a wrong guess the dealer sends the right correction at seq k + RETRY.
A wrong guess leaks nothing: item streams are keyed by (k, spec tag), so the guessed
item's randomness is never used by anyone.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from mpc.kernels.memory import keep_freed_memory
from mpc.protocols.dealer.correlations import (ItemSpec, correction_bytes, derive_payload,
                                               unpack_corrections)
from mpc.prg import SEED_BYTES, Prg, new_seed
from mpc.protocols.dealer.providers.base import Provider, Ticket, corrected_party, party_streams
from net import ProtocolError

SEED_SEQ = 0
DONE_REQUEST = b'{"kind": "done"}'
RETRY = 1 << 40  # seq offset of a correction that replaces a wrong guess
SPECULATION_DEPTH = 2
SPECULATE_MAX_ELEMENTS = 1 << 16  # guessing helps latency-bound small items; a wrong
# guess at a large one would cost a lot of work
MAX_REQUEST_BYTES = 1 << 16  # a request names a kind and shapes: a few hundred bytes
CONTEXTS = (16, 8, 4, 2)  # context lengths tried, longest first
MAX_CONTEXTS = 1 << 16  # forget what was learnt past this many contexts (bounded memory)
TAG_BYTES = 8


class DealerProvider(Provider):
    """Party side of the dealer: derives shares locally, fetches its corrections."""

    def __init__(self, pid: int, n_parties: int, transport, dealer_id: int):
        self._transport = transport
        self._dealer = dealer_id
        with transport.stats.operation("setup"):
            seed = transport.recv(dealer_id, SEED_SEQ, "seed", np.uint8, (SEED_BYTES,))
        super().__init__(pid, n_parties, bytes(seed))

    def _requested(self, ticket: Ticket) -> None:
        if self.corrects(ticket):
            with self._transport.stats.operation("dealer", apart=True):
                self._transport.send(self._dealer, ticket.number, "request",
                                     ticket.spec.to_bytes())

    def _corrections(self, ticket: Ticket, shapes):
        rec, tag = ticket.recipe, np.frombuffer(ticket.spec.tag, np.uint8)
        size = TAG_BYTES + correction_bytes(rec)
        with self._transport.stats.operation("dealer", apart=True):
            raw = self._transport.recv(self._dealer, ticket.number, "correction", np.uint8,
                                       None, is_round=False)
            if not np.array_equal(raw[:TAG_BYTES], tag):  # the dealer guessed wrong
                raw = self._transport.recv(self._dealer, ticket.number + RETRY, "correction",
                                           np.uint8, (size,), is_round=False)
        if raw.size != size or not np.array_equal(raw[:TAG_BYTES], tag):
            raise ProtocolError(f"party {self.pid}: the dealer's correction {ticket.number} "
                                f"does not fit request {ticket.spec.kind} {ticket.spec.shapes}")
        return unpack_corrections(rec, raw[TAG_BYTES:])

    def close(self) -> None:
        if corrected_party(self._next_item, self.n_parties) == self.pid:
            with self._transport.stats.operation("dealer", apart=True):
                self._transport.send(self._dealer, self._next_item, "request",
                                     np.frombuffer(DONE_REQUEST, dtype=np.uint8))


def serve_dealer(transport, n_parties: int, idle_timeout: float | None = None) -> int:
    """Run the dealer until the parties say they are done; returns the items served.

    `transport` is the dealer's end of the mesh (its id is n_parties). Raises the
    transport's PeerLost/PeerTimeout if the party it waits for disappears.
    """
    if idle_timeout is not None:
        transport.timeout = idle_timeout
    keep_freed_memory()  # halves the dealer's work on large items (mpc.kernels.memory)
    seeds = [new_seed() for _ in range(n_parties)]
    for pid, seed in enumerate(seeds):
        transport.send(pid, SEED_SEQ, "seed", np.frombuffer(seed, dtype=np.uint8))
    prgs = [Prg(s) for s in seeds]

    def send_item(number: int, raw: bytes, seq: int) -> None:
        spec = _parse(raw)
        payload = derive_payload(spec, party_streams(prgs, number, spec), spec.tag)
        transport.send(corrected_party(number, n_parties), seq, "correction", payload)

    follows: dict[tuple[bytes, ...], bytes] = {}  # recent specs -> the spec after them
    guessed: dict[int, bytes] = {}  # item number -> spec whose correction went out ahead
    history: tuple[bytes, ...] = ()  # the last CONTEXTS[0] specs served
    number = 1
    while True:
        raw = bytes(transport.recv(corrected_party(number, n_parties), number, "request",
                                   np.uint8, None))
        if raw == DONE_REQUEST:
            return number - 1
        guess = guessed.pop(number, None)
        if guess is None:
            send_item(number, raw, number)
        elif guess != raw:
            send_item(number, raw, number + RETRY)
        if len(follows) > MAX_CONTEXTS:
            follows.clear()  # a program that never repeats: guessing would not help anyway
        for length in CONTEXTS:
            if len(history) >= length:
                follows[history[len(history) - length:]] = raw
        history = (history + (raw,))[-CONTEXTS[0]:]
        context = history
        for ahead in range(1, SPECULATION_DEPTH + 1):
            upcoming = _predict(follows, context)
            if upcoming is None or upcoming == DONE_REQUEST or _elements(upcoming) > \
                    SPECULATE_MAX_ELEMENTS:
                break
            if number + ahead not in guessed:
                guessed[number + ahead] = upcoming
                send_item(number + ahead, upcoming, number + ahead)
            context = (context + (upcoming,))[-CONTEXTS[0]:]
        number += 1


def _predict(follows: dict, context: tuple) -> bytes | None:
    """The spec that followed the longest recent context seen before, if any."""
    for length in CONTEXTS:
        if len(context) >= length:
            upcoming = follows.get(context[len(context) - length:])
            if upcoming is not None:
                return upcoming
    return None


def _elements(raw: bytes) -> int:
    return sum(math.prod(shape) for shape in _parse(raw).shapes)


@functools.lru_cache(maxsize=4096)
def _parse(raw: bytes) -> ItemSpec:
    """A request's spec, validated; parsed once per distinct request (they repeat; the
    cached spec is shared, so nothing may change it). Requests are a few hundred bytes:
    longer ones are refused before they could fill the cache."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise ValueError(f"a correlated-randomness request of {len(raw)} bytes (at most "
                         f"{MAX_REQUEST_BYTES})")
    return ItemSpec.from_bytes(np.frombuffer(raw, np.uint8))
