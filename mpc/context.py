"""A party's view of the computation: its id, its transport, its provider, its seeds.

The context travels with every SecretTensor; there is no module-level state, so a test can
run several parties in one process. All parties must call the communicating methods in the
same order: each call takes the next sequence number, which labels its messages.
"""

from __future__ import annotations

import math

import numpy as np

from mpc.fixedpoint import FixedPoint
from mpc.prg import SEED_BYTES, Prg, new_seed
from mpc.ring import DTYPE

PAIRWISE_SEED_SEQ = 0
LARGE_OPEN = 1 << 16  # elements; from here on n >= 3 parties open by reduce-scatter


class Context:
    """Everything a party needs to run protocols.

    Args:
        pid: this party's id, 0 <= pid < n_parties.
        n_parties: number of computing parties (>= 2).
        transport: a net.Transport connecting the parties (and the dealer, id n_parties).
        provider: where correlated randomness comes from (mpc.providers).
        fixed: the fixed-point format (16 fractional bits by default).
        truncation: "exact" (default, one round, cannot fail inside the range) or
            "local-probabilistic" (2 parties only, no messages, fails with probability
            |x| / 2^64 per element; see mpc.protocols.truncation).
        owners: names and transport ids of data owners that are not parties (mpc.owners).
        check: checked mode: every truncation's result is verified, in batches, to be
            inside the range where it is exact, and FixedPointRangeError names the
            operation and the count otherwise (mpc.protocols.range_check: the cost, and
            the counts it opens).
    """

    def __init__(self, pid: int, n_parties: int, transport, provider, *,
                 fixed: FixedPoint | None = None, truncation: str = "exact",
                 owners: dict[str, int] | None = None, check: bool = False):
        if n_parties < 2:
            raise ValueError(f"need at least 2 parties, got {n_parties}")
        if not 0 <= pid < n_parties:
            raise ValueError(f"party id {pid} outside 0..{n_parties - 1}")
        from mpc.protocols.truncation import TRUNCATIONS
        if truncation not in TRUNCATIONS:
            raise ValueError(f"unknown truncation {truncation!r}; "
                             f"choose one of {sorted(TRUNCATIONS)}")
        if truncation == "local-probabilistic" and n_parties != 2:
            raise ValueError("local-probabilistic truncation works for 2 parties only")
        self.pid = pid
        self.n_parties = n_parties
        self.transport = transport
        self.provider = provider
        self.fixed = fixed or FixedPoint()
        self.truncation = truncation
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
        In the same round every party sends every other its settings (3 bytes), and all
        refuse to start, naming both parties, if any differ: parties with different
        fixed-point formats, truncations or checked modes would compute garbage or
        stall."""
        settings = np.array([self.fixed.frac_bits, _truncations().index(self.truncation),
                             int(self.check)], dtype=np.uint8)
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
        """Reveal a shared ring tensor to every party. One round (two when n >= 3 and large).

        Comm per party: all-to-all sends (n-1) * size elements; reduce-scatter then
        all-gather sends 2 (n-1)/n * size elements in two rounds.
        """
        share = np.asarray(share, dtype=DTYPE, order="C")
        if self.n_parties >= 3 and share.size >= LARGE_OPEN:
            return self._open_reduce_scatter(share, op)
        seq = self.next_seq()
        got = self.transport.exchange(seq, op, {p: share for p in self.peers},
                                      {p: (DTYPE, share.shape) for p in self.peers})
        return _sum_into(share, got.values())

    def _open_reduce_scatter(self, share: np.ndarray, op: str) -> np.ndarray:
        flat = share.reshape(-1)
        bounds = np.linspace(0, flat.size, self.n_parties + 1).astype(np.int64)
        part = [flat[bounds[p]:bounds[p + 1]] for p in range(self.n_parties)]
        mine = part[self.pid]
        seq = self.next_seq()
        got = self.transport.exchange(seq, op + ":reduce", {p: part[p] for p in self.peers},
                                      {p: (DTYPE, mine.shape) for p in self.peers})
        summed = _sum_into(mine, got.values())
        seq = self.next_seq()
        got = self.transport.exchange(seq, op + ":gather", {p: summed for p in self.peers},
                                      {p: (DTYPE, part[p].shape) for p in self.peers})
        got[self.pid] = summed
        return np.concatenate([got[p] for p in range(self.n_parties)]).reshape(share.shape)

    def open_many(self, shares: list[np.ndarray], op: str = "open") -> list[np.ndarray]:
        """Open several tensors in one round (one message per peer)."""
        flat = np.concatenate([np.asarray(s, dtype=DTYPE).reshape(-1) for s in shares])
        return self.open_flat(flat, [s.shape for s in shares], op)

    def open_flat(self, flat: np.ndarray, shapes, op: str = "open") -> list[np.ndarray]:
        """Open one flat buffer that holds several tensors of `shapes`, back to back."""
        opened = self.open(flat, op)
        sizes = np.cumsum([math.prod(s) for s in shapes])[:-1]
        return [part.reshape(s) for part, s in zip(np.split(opened, sizes), shapes)]

    def open_xor(self, share: np.ndarray, op: str = "open-xor") -> np.ndarray:
        """Reveal a XOR-shared array (any unsigned dtype) to every party. One round.
        Comm per party: share.nbytes to each peer."""
        share = np.asarray(share, order="C")
        seq = self.next_seq()
        got = self.transport.exchange(seq, op, {p: share for p in self.peers},
                                      {p: (share.dtype, share.shape) for p in self.peers})
        total = share.copy()
        for value in got.values():
            total ^= value
        return total

    def open_to(self, share: np.ndarray, receiver: int, op: str = "reveal") -> np.ndarray | None:
        """Reveal a shared ring tensor to one party only; the others get None. One round."""
        share = np.asarray(share, dtype=DTYPE, order="C")
        seq = self.next_seq()
        if self.pid != receiver:
            self.transport.send(receiver, seq, op, share)
            return None
        got = self.transport.exchange(seq, op, {}, {p: (DTYPE, share.shape) for p in self.peers})
        return _sum_into(share, got.values())

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

    def close(self) -> None:
        """Check what is still queued (checked mode), then release the provider (the
        dealer is told we are done)."""
        self.check_range()
        self.provider.close()


def _truncations() -> list[str]:
    from mpc.protocols.truncation import TRUNCATIONS
    return sorted(TRUNCATIONS)


def _describe(settings: np.ndarray) -> str:
    frac_bits, truncation, check = (int(v) for v in settings)
    names = _truncations()
    name = names[truncation] if truncation < len(names) else "?"
    return f"frac_bits={frac_bits}, truncation={name!r}, check={bool(check)}"


def _sum_into(first: np.ndarray, others) -> np.ndarray:
    """first + sum(others) in a new array, one pass per operand."""
    total = None
    for value in others:
        if total is None:
            total = np.add(first, value, out=np.empty_like(first))
        else:
            np.add(total, value, out=total)
    return first.copy() if total is None else total
