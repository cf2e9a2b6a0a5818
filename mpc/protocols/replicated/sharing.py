"""Replicated shares of three parties: zero-sharings, resharing, input and openings.

Party i holds (x_i, x_{i+1}) (indices mod 3) as one uint64 array of shape (2, *S), with
x = x_0 + x_1 + x_2 mod 2^64. Each pair of parties holds a common AES-CTR seed (agreed by
the Context), so both can derive the same ring elements without a message; the three
also hold one common seed (agree_common_seed, on first use), for inputs.
References: Araki, Furukawa, Lindell, Nof and Ohara, "High-Throughput Semi-Honest Secure
Three-Party Computation with an Honest Majority", CCS 2016 (resharing by a zero-sharing);
Mohassel and Rindal, "ABY3", CCS 2018, Sec. 2.2 and 5.1 (input and reveal).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from mpc.prg import SEED_BYTES, Prg, new_seed
from mpc.ring import DTYPE


def nxt(ctx) -> int:
    return (ctx.pid + 1) % 3


def prv(ctx) -> int:
    return (ctx.pid + 2) % 3


def zero_share(ctx, nonce: int, shape) -> np.ndarray:
    """alpha_i with alpha_0 + alpha_1 + alpha_2 = 0: F(k_{i,i+1}) - F(k_{i-1,i}), a fresh
    array. No message."""
    alpha = ctx.pairwise_ring(nxt(ctx), nonce, shape)
    return np.subtract(alpha, ctx.pairwise_ring(prv(ctx), nonce, shape), out=alpha)


def reshare(ctx, zs: np.ndarray, op: str) -> np.ndarray:
    """Replicated shares of z from this party's additive part z_i (z = z_0 + z_1 + z_2).

    1. z_i' = z_i + alpha_i (a zero-sharing: z_i' alone is uniform).
    2. Send z_i' to party i - 1; receive z_{i+1}' from party i + 1; hold (z_i', z_{i+1}').
    Rounds: 1. Comm: one ring element (8 bytes) per element, to one peer.
    """
    seq = ctx.next_seq()
    mine = np.add(zs, zero_share(ctx, seq, np.shape(zs)), dtype=DTYPE)
    got = ctx.transport.exchange(seq, op, {prv(ctx): mine}, {nxt(ctx): (DTYPE, mine.shape)})
    return np.stack([mine, got[nxt(ctx)]])


def common_ring(ctx, nonce: int, shape) -> np.ndarray:
    """Ring elements that all three parties derive from their common seed (agreed on first
    use: common_seed), with no message."""
    return ctx.protocol.common_seed(ctx).ring(nonce, math.prod(shape)).reshape(shape)


def agree_common_seed(ctx) -> Prg:
    """A seed all three parties know: each sends the other two 16 random bytes (one round,
    32 bytes a party, booked under "setup") and the seed is the first 16 bytes of
    SHA-256 of the three contributions in party order: unknown outside the three, and
    uniform as long as one of them drew honestly."""
    mine = new_seed()
    with ctx.stats.operation("setup", apart=True):
        got = ctx.transport.exchange(ctx.next_seq(), "common-seed",
                                     {p: np.frombuffer(mine, np.uint8) for p in ctx.peers},
                                     {p: (np.uint8, (SEED_BYTES,)) for p in ctx.peers})
    parts = [mine if p == ctx.pid else bytes(got[p]) for p in range(3)]
    return Prg(hashlib.sha256(b"".join(parts)).digest()[:SEED_BYTES])


def input_share(ctx, encoded: np.ndarray | None, owner: int, shape) -> np.ndarray:
    """Party `owner`'s array x as replicated shares, two of the three components derived.

    With o = owner: x_{o+2} (held by o + 1 and o + 2) comes from the three parties' common
    seed, x_{o+1} (held by o and o + 1) from the seed of o and o + 1, and the owner sends
    x_o = x - x_{o+1} - x_{o+2} to o + 2, its other holder. Private: o + 1 holds x_{o+1}
    and x_{o+2}, two independent streams; o + 2 holds x_{o+2} and x_o, which is masked by
    x_{o+1}, a stream it cannot derive: each non-owner's two components are uniform and
    independent, whatever x.
    Rounds: 1 (o + 2 waits; o + 1 receives nothing). Comm: the owner sends one ring element
    per element, to o + 2 only (8 bytes).
    """
    shape = tuple(shape)
    seq = ctx.next_seq()
    after, before = (owner + 1) % 3, (owner + 2) % 3
    if ctx.pid != after:
        x_last = common_ring(ctx, seq, shape)  # x_{o+2}
    if ctx.pid != before:
        x_next = ctx.pairwise_ring(after if ctx.pid == owner else owner, seq, shape)
    if ctx.pid == owner:
        x_o = np.asarray(encoded - x_next - common_ring(ctx, seq, shape), dtype=DTYPE,
                         order="C")
        ctx.transport.send(before, seq, "input", x_o)  # the owner waits for nothing
        return np.stack([x_o, x_next])
    if ctx.pid == after:  # holds (x_{o+1}, x_{o+2})
        return np.stack([x_next, common_ring(ctx, seq, shape)])
    x_o = ctx.transport.recv(owner, seq, "input", DTYPE, shape)
    return np.stack([x_last, x_o])  # party o + 2 holds (x_{o+2}, x_o)


def input_all(ctx, mine: np.ndarray) -> np.ndarray:
    """Replicated shares of x^(0) + x^(1) + x^(2), where x^(p) is party p's private array
    (all of one shape): the three input_share steps in one round, summed (the common
    stream cut in three, one part per owner).
    Rounds: 1. Comm: one ring element per element, to one peer (8 bytes)."""
    shape = mine.shape
    seq = ctx.next_seq()
    me, after, before = ctx.pid, nxt(ctx), prv(ctx)
    common = common_ring(ctx, seq, (3,) + tuple(shape))
    with_after = ctx.pairwise_ring(after, seq, shape)    # my input's x_{me+1}
    with_before = ctx.pairwise_ring(before, seq, shape)  # before's input's x_me
    own = np.asarray(mine - with_after - common[me], dtype=DTYPE, order="C")
    got = ctx.transport.exchange(seq, "input", {before: own}, {after: (DTYPE, shape)})
    # mine: (x_me, x_after); before's input: (derived, common); after's: (common, sent)
    first = own + with_before + common[after]
    second = with_after + common[before] + got[after]
    return np.stack([first, second])


def open_all(ctx, share: np.ndarray, op: str = "open") -> np.ndarray:
    """x to every party: each sends its x_i to party i + 1, who lacks it.
    Rounds: 1. Comm: one ring element (8 bytes) per element, to one peer."""
    first = np.asarray(share[0, ...], dtype=DTYPE, order="C")
    seq = ctx.next_seq()
    got = ctx.transport.exchange(seq, op, {nxt(ctx): first}, {prv(ctx): (DTYPE, first.shape)})
    return share[0, ...] + share[1, ...] + got[prv(ctx)]


def open_to(ctx, share: np.ndarray, receiver: int, op: str = "reveal") -> np.ndarray | None:
    """x to party `receiver` only (None elsewhere): party receiver - 1 sends it the one
    component it lacks. Rounds: 1. Comm: one ring element (8 bytes) per element, from one
    party."""
    seq = ctx.next_seq()
    sender = (receiver + 2) % 3
    if ctx.pid == sender:
        ctx.transport.send(receiver, seq, op, np.asarray(share[0, ...], dtype=DTYPE,
                                                         order="C"))
    if ctx.pid != receiver:
        return None
    missing = ctx.transport.recv(sender, seq, op, DTYPE, share.shape[1:])
    return share[0, ...] + share[1, ...] + missing
