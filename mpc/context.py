"""A party's view of the computation: its id, its transport, its protocol, its seeds.

The context travels with every SecretTensor; there is no module-level state, so a test can
run several parties in one process. All parties must call the communicating methods in the
same order: each call takes the next sequence number, which labels its messages.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np

from mpc.fixedpoint import FixedPoint
from mpc.kernels.memory import keep_freed_memory
from mpc.prg import SEED_BYTES, Prg, new_seed

PAIRWISE_SEED_SEQ = 0


class Context:
    """Everything a party needs to run protocols.

    Args:
        pid: this party's id, 0 <= pid < n_parties.
        n_parties: number of computing parties (>= 2).
        transport: a net.Transport connecting the parties (and the dealer, id n_parties).
        protocol: how shares are held and computed on (an mpc.protocols.base.Protocol:
            mpc.protocols.make_protocol builds one by name).
        fixed: the fixed-point format (16 fractional bits by default).
        truncation: "exact" (default, one round, cannot fail inside the range) or
            "local-probabilistic" (dealer protocol, 2 parties only, no messages, fails with
            probability |x| / 2^64 per element; see mpc.protocols.dealer.truncation).
        owners: names and transport ids of data owners that are not parties (mpc.owners).
        check: checked mode: every truncation's result is verified, in batches, to be
            inside the range where it is exact, and FixedPointRangeError names the
            operation and the count otherwise (mpc.protocols.range_check: the cost, and
            the counts it opens).
    """

    def __init__(self, pid: int, n_parties: int, transport, protocol, *,
                 fixed: FixedPoint | None = None, truncation: str = "exact",
                 owners: dict[str, int] | None = None, check: bool = False):
        if n_parties < 2:
            raise ValueError(f"need at least 2 parties, got {n_parties}")
        if not 0 <= pid < n_parties:
            raise ValueError(f"party id {pid} outside 0..{n_parties - 1}")
        keep_freed_memory()  # every operation's tensors reuse the last one's pages
        self.pid = pid
        self.n_parties = n_parties
        self.transport = transport
        self.protocol = protocol
        self.fixed = fixed or FixedPoint()
        self.truncation = truncation
        protocol.check(self)
        self.owners = dict(owners or {})
        self.owner_inputs: dict[str, dict] = {}     # shares each owner sent (mpc.owners)
        self.owners_answered: set[str] = set()       # owners results were revealed to
        self.check = bool(check)
        self.range_pending: list = []                 # results awaiting the range check
        self.range_pending_size = 0
        self._seq = PAIRWISE_SEED_SEQ
        self._pair_prgs = self._agree_pairwise_seeds()

    # ---------------------------------------------------------------- bookkeeping
    @property
    def peers(self) -> list[int]:
        return [p for p in range(self.n_parties) if p != self.pid]

    @property
    def stats(self):
        """The transport's exact communication counters (net.CommStats)."""
        return self.transport.stats

    def operation(self, label: str):
        """Book the communication inside a `with` block under `label`."""
        return self.transport.stats.operation(label)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _agree_pairwise_seeds(self) -> dict[int, Prg]:
        """The lower id of each pair draws a seed and sends it over the encrypted channel.
        In the same round every party sends every other its settings (4 bytes), and all
        refuse to start, naming both parties, if any differ: parties with different
        protocols, fixed-point formats, truncations or checked modes would compute
        garbage or stall."""
        settings = _settings(self)
        with self.operation("setup"):
            mine = {p: new_seed() for p in self.peers if p > self.pid}
            got = self.transport.exchange(
                PAIRWISE_SEED_SEQ, "pairwise-seed",
                {p: np.concatenate([settings, np.frombuffer(mine.get(p, b""), np.uint8)])
                 for p in self.peers},
                {p: (np.uint8, (settings.size + (SEED_BYTES if p < self.pid else 0),))
                 for p in self.peers})
        for p in self.peers:
            if not np.array_equal(got[p][:settings.size], settings):
                low, high = sorted([(self.pid, settings), (p, got[p][:settings.size])],
                                   key=lambda item: item[0])
                raise ValueError(f"party {low[0]} runs with {_describe(low[1])} but party "
                                 f"{high[0]} with {_describe(high[1])}: start every party "
                                 f"with the same options")
        seeds = {**mine, **{p: bytes(got[p][settings.size:]) for p in self.peers
                            if p < self.pid}}
        return {p: Prg(s) for p, s in seeds.items()}

    def pairwise_ring(self, peer: int, nonce: int, shape) -> np.ndarray:
        """Ring elements that this party and `peer` both derive, with no message."""
        count = math.prod(shape)
        return self._pair_prgs[peer].ring(nonce, count).reshape(shape)

    # ---------------------------------------------------------------- openings
    def open(self, share: np.ndarray, op: str = "open") -> np.ndarray:
        """Reveal a shared ring tensor (this party's share, in the protocol's layout) to
        every party: the protocol's opening."""
        return self.protocol.open(self, share, op)

    def open_to(self, share: np.ndarray, receiver: int, op: str = "reveal") -> np.ndarray | None:
        """Reveal a shared ring tensor to party `receiver` only; the others get None."""
        return self.protocol.open_to(self, share, receiver, op)

    def broadcast(self, owner: int, array: np.ndarray | None, dtype, op: str) -> np.ndarray:
        """Send a small public array from `owner` to every party (shapes, flags). One round."""
        seq = self.next_seq()
        if self.pid == owner:
            array = np.asarray(array, dtype=dtype, order="C")
            for p in self.peers:
                self.transport.send(p, seq, op, array)
            return array
        return self.transport.recv(owner, seq, op, dtype, None)

    def check_range(self) -> None:
        """In checked mode, verify every truncation result queued so far (before anything
        is revealed; mpc.protocols.range_check). Nothing otherwise."""
        if self.check:
            from mpc.protocols import range_check
            range_check.check(self)

    @contextmanager
    def unchecked(self):
        """A block in which checked mode is off (what is queued is checked first). For
        computations whose range counts must not be opened: a DP-SGD step on training
        data (nn.fit uses it with a differentially private optimiser), where the counts
        would depend on the data and be revealed without noise. Every party must enter
        the same blocks (they run the same code)."""
        self.check_range()
        saved, self.check = self.check, False
        try:
            yield self
        finally:
            self.check = saved

    def close(self) -> None:
        """Check what is still queued (checked mode), then release what the protocol holds
        (the dealer is told we are done)."""
        self.check_range()
        self.protocol.close(self)


TRUNCATION_NAMES = ("exact", "local-probabilistic")


def _settings(ctx) -> np.ndarray:
    from mpc.protocols import PROTOCOLS
    return np.array([PROTOCOLS.index(ctx.protocol.name) if ctx.protocol.name in PROTOCOLS
                     else 255, ctx.fixed.frac_bits,
                     TRUNCATION_NAMES.index(ctx.truncation), int(ctx.check)], dtype=np.uint8)


def _describe(settings: np.ndarray) -> str:
    from mpc.protocols import PROTOCOLS
    protocol, frac_bits, truncation, check = (int(v) for v in settings)
    name = PROTOCOLS[protocol] if protocol < len(PROTOCOLS) else "?"
    return (f"protocol={name!r}, frac_bits={frac_bits}, "
            f"truncation={TRUNCATION_NAMES[truncation]!r}, check={bool(check)}")

