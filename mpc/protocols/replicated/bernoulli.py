"""Secret Bernoulli(p) bits on replicated shares that no single party knows: [b] with
b_i ~ Bernoulli(p) independently, as replicated integer 0/1 shares.

Protocol bernoulli_bits(n, p), in the rounds and roles of the comparison
(mpc.protocols.replicated.compare: each batch cut in three parts, party h the helper of
part h, a = h + 1 and b = h + 2 the other two):
  1. h draws v, 63 random bits per element, from its own AES-CTR stream under a fresh OS
     seed; a and b draw w, 63 bits per element, from the seed they share. u = v ^ w is
     uniform on [0, 2^63) and unknown to each single party (to h, w is a one-time pad;
     to a and b, v is).
  2. Let T = round(p 2^63) (mpc.protocols.dealer.bernoulli.exact_probability: p as
     implemented is T / 2^63, p itself for p >= 2^-10) and c = 2^63 - 1 - T; then
     b = [u > c] is 1 for exactly T of the 2^63 values of u.
  3. [v ^ w > c] exactly as the comparison computes [v > t]: h XOR-shares the one-hot
     groups of v between a and b, whose shares of [v_g ^ w_g > c_g] and [v_g ^ w_g == c_g]
     are local (mpc.protocols.replicated.binary.compare_leaves with w), then the 4-level
     AND tree, the bit injection with h's random bit and the reshare.
What a party receives: as in the comparison, masked one-hot shares, triple corrections
and openings of fresh masks: uniform whatever u and b are.
Rounds: 7 per batch of CHUNK elements. Comm: 23.625 bytes per element from each party
(for n a multiple of 192), as the comparison without select.
References: as mpc.protocols.replicated.compare; the joint coin of h's and the others'
randomness is the folklore coin toss of semi-honest MPC (Goldreich, Foundations of
Cryptography II, Sec. 7.4).
"""

from __future__ import annotations

import numpy as np

from mpc.prg import Prg, new_seed
from mpc.protocols.dealer.bernoulli import TWO63, threshold_count
from mpc.protocols.replicated import compare

LOW63 = np.uint64(TWO63 - 1)


class Coin:
    """What each role compares for [v ^ w > c] (module docstring, steps 1 and 3)."""

    def __init__(self, c: int):
        self.c = np.uint64(c)

    def helper(self, ctx, part: slice, nonce: int, h: int):
        n = part.stop - part.start
        return Prg(new_seed()).ring(0, n) & LOW63, None, None

    def computer(self, ctx, part: slice, nonce: int, h: int, first: bool):
        n = part.stop - part.start
        peer = (h + 2) % 3 if first else (h + 1) % 3
        w = ctx.pairwise_ring(peer, nonce, (n,)) & LOW63
        return np.full(n, self.c, dtype=np.uint64), w, None, None, None


def bernoulli_bits(ctx, n: int, p: float, chunk: int = compare.CHUNK) -> np.ndarray:
    """Replicated integer 0/1 shares (2, n) of n secret Bernoulli(p) bits.
    Example:
        keep = bernoulli_bits(ctx, 1000, 0.9)   # dropout's mask, before scaling
    """
    if ctx.n_parties != 3:
        raise ValueError(f"replicated sampling needs 3 parties, got {ctx.n_parties}")
    count = threshold_count(p)
    out = np.zeros((2, n), dtype=np.uint64)
    if count in (0, TWO63):  # p = 0 or p = 1: public, nothing to hide
        if count and ctx.pid != 1:  # the constant 1 as x_0 = 1: party 0's [0], party 2's [1]
            out[0 if ctx.pid == 0 else 1] = np.uint64(1)
        return out
    coin = Coin(TWO63 - 1 - count)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        out[:, start:stop] = compare.run_batch(ctx, coin, stop - start, False, few=False)[0]
    return out
