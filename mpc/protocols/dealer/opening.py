"""Openings of additive shares: x = x_0 + ... + x_{n-1} mod 2^64 (or XOR for bit strings)."""

from __future__ import annotations

import numpy as np

from mpc.ring import DTYPE
from mpc.shapes import cut

LARGE_OPEN = 1 << 16  # elements; from here on n >= 3 parties open by reduce-scatter


def open_sum(ctx, share: np.ndarray, op: str = "open") -> np.ndarray:
    """Reveal an additively shared ring tensor to every party. One round (two when n >= 3
    and large).

    Comm per party: all-to-all sends (n-1) * size elements; reduce-scatter then
    all-gather sends 2 (n-1)/n * size elements in two rounds.
    """
    share = np.asarray(share, dtype=DTYPE, order="C")
    if not all_to_all(ctx, share.size):
        return _open_reduce_scatter(ctx, share, op)
    return _sum_into(share, exchange_shares(ctx, share, op))


def all_to_all(ctx, size: int) -> bool:
    """Whether open_sum opens `size` elements in one all-to-all round (exchange_shares)."""
    return ctx.n_parties < 3 or size < LARGE_OPEN


def exchange_shares(ctx, share: np.ndarray, op: str) -> list[np.ndarray]:
    """open_sum's all-to-all round without the sum: every other party's share of a C-order
    ring tensor, for a caller that sums them inside its own pass. One round.
    Comm per party: (n-1) * size elements."""
    seq = ctx.next_seq()
    got = ctx.transport.exchange(seq, op, {p: share for p in ctx.peers},
                                 {p: (DTYPE, share.shape) for p in ctx.peers})
    return list(got.values())


def _open_reduce_scatter(ctx, share: np.ndarray, op: str) -> np.ndarray:
    bounds, summed = reduce_scatter(ctx, share.reshape(-1), op)
    seq = ctx.next_seq()
    got = ctx.transport.exchange(seq, op + ":gather", {p: summed for p in ctx.peers},
                                 {p: (DTYPE, (bounds[p + 1] - bounds[p],)) for p in ctx.peers})
    got[ctx.pid] = summed
    return np.concatenate([got[p] for p in range(ctx.n_parties)]).reshape(share.shape)


def part_bounds(size: int, n_parties: int) -> list[int]:
    """Party p's part of a flat tensor of `size` elements is [bounds[p], bounds[p + 1])."""
    return [size * p // n_parties for p in range(n_parties + 1)]


def reduce_scatter(ctx, flat: np.ndarray, op: str) -> tuple[list[int], np.ndarray]:
    """Party p learns the sum of part p (part_bounds) of a flat shared tensor and nothing
    else. Returns (bounds, this party's summed part). One round.
    Comm per party: (n-1)/n * size elements, its share of each other party's part."""
    bounds = part_bounds(flat.size, ctx.n_parties)
    part = [flat[bounds[p]:bounds[p + 1]] for p in range(ctx.n_parties)]
    mine = part[ctx.pid]
    seq = ctx.next_seq()
    got = ctx.transport.exchange(seq, op + ":reduce", {p: part[p] for p in ctx.peers},
                                 {p: (DTYPE, mine.shape) for p in ctx.peers})
    return bounds, _sum_into(mine, got.values())


def open_many(ctx, shares: list[np.ndarray], op: str = "open") -> list[np.ndarray]:
    """Open several tensors in one round (one message per peer)."""
    flat = np.concatenate([np.asarray(s, dtype=DTYPE).reshape(-1) for s in shares])
    return open_flat(ctx, flat, [s.shape for s in shares], op)


def open_flat(ctx, flat: np.ndarray, shapes, op: str = "open") -> list[np.ndarray]:
    """Open one flat buffer that holds several tensors of `shapes`, back to back."""
    opened = open_sum(ctx, flat, op)
    return cut(opened, shapes)


def open_xor(ctx, share: np.ndarray, op: str = "open-xor") -> np.ndarray:
    """Reveal a XOR-shared array (any unsigned dtype) to every party. One round.
    Comm per party: share.nbytes to each peer."""
    share = np.asarray(share, order="C")
    seq = ctx.next_seq()
    got = ctx.transport.exchange(seq, op, {p: share for p in ctx.peers},
                                 {p: (share.dtype, share.shape) for p in ctx.peers})
    total = share.copy()
    for value in got.values():
        total ^= value
    return total


def open_sum_to(ctx, share: np.ndarray, receiver: int, op: str = "reveal") -> np.ndarray | None:
    """Reveal an additively shared ring tensor to one party only; the others get None.
    One round. Comm: size elements from each other party to the receiver."""
    share = np.asarray(share, dtype=DTYPE, order="C")
    seq = ctx.next_seq()
    if ctx.pid != receiver:
        ctx.transport.send(receiver, seq, op, share)
        return None
    got = ctx.transport.exchange(seq, op, {}, {p: (DTYPE, share.shape) for p in ctx.peers})
    return _sum_into(share, got.values())


def _sum_into(first: np.ndarray, others) -> np.ndarray:
    """first + sum(others) in a new array, one pass per operand."""
    total = None
    for value in others:
        if total is None:
            total = np.add(first, value, out=np.empty_like(first))
        else:
            np.add(total, value, out=total)
    return first.copy() if total is None else total
