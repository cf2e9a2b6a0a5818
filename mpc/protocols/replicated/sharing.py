"""Replicated shares of three parties: zero-sharings, resharing, input and openings.

Party i holds (x_i, x_{i+1}) (indices mod 3) as one uint64 array of shape (2, *S), with
x = x_0 + x_1 + x_2 mod 2^64. Each pair of parties holds a common AES-CTR seed (agreed by
the Context), so both can derive the same ring elements without a message.
References: Araki, Furukawa, Lindell, Nof and Ohara, "High-Throughput Semi-Honest Secure
Three-Party Computation with an Honest Majority", CCS 2016 (resharing by a zero-sharing);
Mohassel and Rindal, "ABY3", CCS 2018, Sec. 2.2 and 5.1 (input and reveal).
"""

from __future__ import annotations

import numpy as np

from mpc.ring import DTYPE


def nxt(ctx) -> int:
    return (ctx.pid + 1) % 3


def prv(ctx) -> int:
    return (ctx.pid + 2) % 3


def zero_share(ctx, nonce: int, shape) -> np.ndarray:
    """alpha_i with alpha_0 + alpha_1 + alpha_2 = 0: F(k_{i,i+1}) - F(k_{i-1,i}). No message."""
    return ctx.pairwise_ring(nxt(ctx), nonce, shape) - ctx.pairwise_ring(prv(ctx), nonce, shape)


def reshare(ctx, zs: np.ndarray, op: str) -> np.ndarray:
    """Replicated shares of z from this party's additive part z_i (z = z_0 + z_1 + z_2).

    1. z_i' = z_i + alpha_i (a zero-sharing: z_i' alone is uniform).
    2. Send z_i' to party i - 1; receive z_{i+1}' from party i + 1; hold (z_i', z_{i+1}').
    Rounds: 1. Comm: one ring element per element, to one peer.
    """
    seq = ctx.next_seq()
    mine = np.asarray(zs + zero_share(ctx, seq, zs.shape), dtype=DTYPE, order="C")
    got = ctx.transport.exchange(seq, op, {prv(ctx): mine}, {nxt(ctx): (DTYPE, mine.shape)})
    return np.stack([mine, got[nxt(ctx)]])


def _input_streams(ctx, peer: int, nonce: int, shape):
    """The two components that this party and `peer` derive for an input at `nonce`:
    {owner: component} for the input of each of the two (one stream, two halves)."""
    both = ctx.pairwise_ring(peer, nonce, (2,) + tuple(shape))
    low, high = sorted((ctx.pid, peer))
    return {low: both[0, ...], high: both[1, ...]}


def input_share(ctx, encoded: np.ndarray | None, owner: int, shape) -> np.ndarray:
    """Party `owner`'s array x as replicated shares, with seed-derived components.

    With o = owner: x_o comes from the seed of o and o - 1 (its two holders), x_{o+1} from
    the seed of o and o + 1; the owner sends x_{o+2} = x - x_o - x_{o+1} to o + 1 and o + 2,
    who hold it.
    Rounds: 1. Comm: the owner sends one ring element per element to each other party.
    """
    shape = tuple(shape)
    seq = ctx.next_seq()
    before, after = (owner + 2) % 3, (owner + 1) % 3
    if ctx.pid == owner:
        x_o = _input_streams(ctx, before, seq, shape)[owner]
        x_next = _input_streams(ctx, after, seq, shape)[owner]
        x_last = np.asarray(encoded - x_o - x_next, dtype=DTYPE, order="C")
        ctx.transport.send(after, seq, "input", x_last)  # the owner waits for nothing
        ctx.transport.send(before, seq, "input", x_last)
        return np.stack([x_o, x_next])
    derived = _input_streams(ctx, owner, seq, shape)[owner]
    x_last = ctx.transport.recv(owner, seq, "input", DTYPE, shape)
    if ctx.pid == after:  # holds (x_{o+1}, x_{o+2})
        return np.stack([derived, x_last])
    return np.stack([x_last, derived])  # party o + 2 holds (x_{o+2}, x_o)


def input_all(ctx, mine: np.ndarray) -> np.ndarray:
    """Replicated shares of x^(0) + x^(1) + x^(2), where x^(p) is party p's private array
    (all of one shape): the three input_share steps in one round, summed.
    Rounds: 1. Comm: one ring element per element to each other party."""
    shape = mine.shape
    seq = ctx.next_seq()
    me, after, before = ctx.pid, nxt(ctx), prv(ctx)
    with_before = _input_streams(ctx, before, seq, shape)
    with_after = _input_streams(ctx, after, seq, shape)
    own_last = np.asarray(mine - with_before[me] - with_after[me], dtype=DTYPE, order="C")
    got = ctx.transport.exchange(seq, "input", {after: own_last, before: own_last},
                                 {after: (DTYPE, shape), before: (DTYPE, shape)})
    # mine: (x_me, x_after); before's input: (derived, sent); after's: (sent, derived)
    first = with_before[me] + with_before[before] + got[after]
    second = with_after[me] + got[before] + with_after[after]
    return np.stack([first, second])


def open_all(ctx, share: np.ndarray, op: str = "open") -> np.ndarray:
    """x to every party: each sends its x_i to party i + 1, who lacks it.
    Rounds: 1. Comm: one ring element per element, to one peer."""
    first = np.asarray(share[0, ...], dtype=DTYPE, order="C")
    seq = ctx.next_seq()
    got = ctx.transport.exchange(seq, op, {nxt(ctx): first}, {prv(ctx): (DTYPE, first.shape)})
    return share[0, ...] + share[1, ...] + got[prv(ctx)]


def open_to(ctx, share: np.ndarray, receiver: int, op: str = "reveal") -> np.ndarray | None:
    """x to party `receiver` only (None elsewhere): party receiver - 1 sends it the one
    component it lacks. Rounds: 1. Comm: one ring element per element, from one party."""
    seq = ctx.next_seq()
    sender = (receiver + 2) % 3
    if ctx.pid == sender:
        ctx.transport.send(receiver, seq, op, np.asarray(share[0, ...], dtype=DTYPE,
                                                         order="C"))
    if ctx.pid != receiver:
        return None
    missing = ctx.transport.recv(sender, seq, op, DTYPE, share.shape[1:])
    return share[0, ...] + share[1, ...] + missing
