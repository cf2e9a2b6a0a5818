"""Secret Bernoulli(p) bits that no party and not the dealer knows: [b], b_i ~ Bernoulli(p)
independently, as arithmetic 0/1 shares.

Protocol bernoulli_bits(n, p), with one dealer item of the comparison's kind
(mpc.protocols.dealer.correlations._ltz_recipe: its AND triples and its shared bit; its
mask is unused):
  1. Each party draws 63 bits per element from its own AES-CTR stream keyed by a fresh
     OS seed: its XOR share of u. u = XOR of all parties' words is uniform on [0, 2^63)
     and unknown to any n - 1 parties (the missing party's word is a one-time pad);
     the dealer sees nothing of it. No message.
  2. Let T = round(p 2^63) (`exact_probability`: p as implemented is T / 2^63, which is
     p itself for p >= 2^-10) and the public threshold c = 2^63 - 1 - T. Then
     b = [u > c] = [u >= 2^63 - T] is 1 for exactly T of the 2^63 values of u:
     P(b = 1) = T / 2^63.
  3. [u > c] for public c by mpc.protocols.dealer.compare's tree over bit positions (per bit,
     gt = u_i AND NOT c_i and eq = NOT (u_i XOR c_i) are local; six levels of ANDs with
     binary Beaver triples merge neighbours): the borrow circuit of the comparison, with
     u in the place of the dealer's mask and c in the place of the opened value.
  4. The XOR-shared bit to an arithmetic 0/1 with the dealer's shared bit beta:
     open e = b XOR beta (one bit), [b] = e + (1 - 2e) [beta].
What a party receives: the openings of the AND levels (each masked by a fresh triple
input) and e (masked by beta): uniform whatever u and b are.
Rounds: 7 (6 AND levels + 1), whatever n (batches of CHUNK elements: 7 rounds each).
Comm per element to each peer: 2 * (8 + 4 + 2 + 1) + 1 + 1/2 + 1/8 = 31.625 bytes; the
dealer sends the corrected party 32 bytes per element (its comparison item).
References: Escudero, Ghosh, Keller, Rachuri, Scholl, "Improved Primitives for MPC over
Mixed Arithmetic-Binary Circuits", CRYPTO 2020 (edaBits; the public-vs-shared-bits
comparison); Rotaru and Wood, "MArBled Circuits", INDOCRYPT 2019 (daBits); the
"sum of every party's randomness" coin is the folklore joint coin toss of semi-honest
MPC (e.g. Goldreich, Foundations of Cryptography II, Sec. 7.4).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from mpc.prg import Prg, new_seed
from mpc.protocols.dealer import compare
from mpc.ring import DTYPE

TWO63 = 1 << 63
LOW63 = np.uint64(TWO63 - 1)


def threshold_count(p: float) -> int:
    """T of step 2: the number of the 2^63 values of u that give b = 1."""
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability must be in [0, 1], got {p!r}")
    return int(round(Fraction(p) * TWO63))


def exact_probability(p: float) -> float:
    """The probability bernoulli_bits(p) implements: T / 2^63, exactly (T < 2^53 or a
    multiple of a power of two, so the float is exact); p itself for p >= 2^-10."""
    count = threshold_count(p)
    value = count / TWO63
    assert Fraction(value) == Fraction(count, TWO63)
    return value


def bernoulli_bits(ctx, n: int, p: float) -> np.ndarray:
    """Arithmetic 0/1 shares (integers, not fixed point) of n secret Bernoulli(p) bits."""
    count = threshold_count(p)
    if count in (0, TWO63):  # p = 0 or p = 1 (public: nothing to hide)
        value = np.uint64(count // TWO63) if ctx.pid == 0 else np.uint64(0)
        return np.full(n, value, dtype=DTYPE)
    words = Prg(new_seed()).ring(0, n) & LOW63  # step 1: this party's XOR share of u
    return greater_than_public(ctx, words, TWO63 - 1 - count)


def greater_than_public(ctx, u_xor: np.ndarray, c: int, chunk: int = compare.CHUNK):
    """Arithmetic 0/1 shares of [u > c] for u < 2^63 held as XOR shares (`u_xor`, this
    party's words; bit 63 zero) and a public 0 <= c < 2^63 (steps 3 and 4)."""
    if not 0 <= c < TWO63:
        raise ValueError(f"the public bound must be in [0, 2^63), got {c}")
    u_xor = np.ascontiguousarray(u_xor, dtype=DTYPE).reshape(-1)
    if np.any(u_xor > LOW63):
        raise ValueError("u must be a 63-bit value (bit 63 of every XOR share zero)")
    out = np.empty(u_xor.size, dtype=DTYPE)
    for start in range(0, u_xor.size, chunk):
        part = u_xor[start:start + chunk]
        out[start:start + part.size] = _batch(ctx, part, np.uint64(c))
    return out


def _batch(ctx, u_xor: np.ndarray, c: np.uint64) -> np.ndarray:
    n = u_xor.size
    ticket = compare.request(ctx, n)
    free = ctx.protocol.provider.take_free(ticket)
    _, a0, ar, b0, br, beta = free[:6]
    derived = ctx.protocol.provider.take_derived(ticket)
    _, c0, cr, beta_arith = derived[:4]
    first = ctx.pid == 0
    c_word = np.full(n, c, dtype=DTYPE)
    gt = u_xor & ~c_word  # XOR-linear in u: party 0's term carries the constant
    eq = u_xor ^ (c_word ^ compare.ALL_ONES) if first else u_xor.copy()
    for level in range(6):
        words = (a0, b0, c0) if level == 0 else (ar, br, cr)
        gt, eq = compare._and_level(ctx, level, gt, eq, *words)
    return compare.bit_to_arithmetic(ctx, gt, beta, beta_arith, "bern-b2a")[0]
