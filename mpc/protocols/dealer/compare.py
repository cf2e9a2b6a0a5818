"""Secure comparison: [z < 0] from [z] by a masked opening and a log-depth circuit on the
mask's bits, with the dealer's help (edaBit-style). Exact for every z in the signed ring.

Protocol less_than_zero([z]), with one dealer item (mpc.protocols.dealer.correlations._ltz_recipe):
  1. Open c = z + r mod 2^64 (r uniform: c reveals nothing). With `select`, also open
     z - u in the same message.
  2. z = c - r, so MSB(z) = c63 XOR r63 XOR borrow, where borrow = [c_low < r_low] on
     the low 63 bits (c public, r's bits XOR-shared by the dealer).
  3. borrow by a tree over bit positions: per bit, lt = r_i AND NOT c_i and
     eq = NOT (r_i XOR c_i) are local; each level merges neighbours,
     lt = lt_hi XOR (eq_hi AND lt_lo), eq = eq_hi AND eq_lo: one AND of 64, 32, 16, 8, 4
     and 2 bits per element at levels 0..5 (both ANDs of a level in one word), each with
     a binary Beaver triple: open d = x ^ a, e = y ^ b.
  4. Convert the bit b = MSB(z) to an arithmetic 0/1 with a shared bit beta (dabit):
     open e = b XOR beta (one bit), [b] = e + (1 - 2e) [beta].
  5. With `select`: [z * b] = e [z] + (1 - 2e) ((z - u) [beta] + [u beta]), no extra round.
Rounds: 8 (1 + 6 + 1) per batch of at most CHUNK elements (see less_than_zero).
Comm per element to each peer: 8 bytes (c) [+ 8 with select] +
2 * (8 + 4 + 2 + 1) bytes (levels 0-3) + 1 + 1/2 (levels 4-5, bit-packed) + 1/8 (e) =
39.625 bytes, 47.625 with select. The dealer sends the corrected party 32 bytes per element
(40 with select).
References: Escudero, Ghosh, Keller, Rachuri, Scholl, "Improved Primitives for MPC over
Mixed Arithmetic-Binary Circuits" (edaBits), CRYPTO 2020; Makri, Rotaru, Vercauteren,
Smart, "Rabbit: Efficient Comparison for Secure Multi-Party Computation", FC 2021 (masked
opening then public-vs-secret bitwise comparison); Rotaru and Wood, "MArBled Circuits",
INDOCRYPT 2019 (daBits).
"""

from __future__ import annotations

import numpy as np

from mpc import kernels
from mpc.protocols.dealer import kernels as dealer_kernels
from mpc.protocols.dealer import opening
from mpc.protocols.dealer.correlations import ItemSpec

LOW63 = np.uint64((1 << 63) - 1)
ALL_ONES = np.uint64(2**64 - 1)
REST_OFFSETS = {1: 0, 2: 32, 3: 48, 4: 56, 5: 60}  # where levels 1..5 sit in the Ar/Br/Cr words
_WIRE = {64: np.uint64, 32: np.uint32, 16: np.uint16, 8: np.uint8}
CHUNK = 1 << 20  # elements per batch: bounds the parties' and the dealer's working memory


def request(ctx, size: int, select: bool = False):
    """Ask the provider for a comparison of `size` elements (call early)."""
    return ctx.protocol.provider.request(ItemSpec("ltz", ((int(size),),), {"select": select}))


def _and_level(ctx, level: int, lt, eq, a_word, b_word, c_word):
    """One tree level: [X AND Y] with a binary triple (one round), merged into (lt, eq)."""
    width, half, n = 64 >> level, 32 >> level, lt.size
    offset = 0 if level == 0 else REST_OFFSETS[level]
    dtype = _WIRE.get(width, np.uint8)
    masked = dealer_kernels.lt_level_masked(lt, eq, half, a_word, b_word, offset, width, dtype)
    if width < 8:
        masked = kernels.pack_narrow(masked, width)
    opened = opening.open_xor(ctx, masked, "cmp-and")
    if width < 8:
        opened = kernels.unpack_narrow(opened, width, 2 * n)
    return dealer_kernels.lt_level_finish(opened[:n], opened[n:], a_word, b_word, c_word, offset,
                                   width, ctx.pid == 0, lt, half)


def less_than_zero(ctx, zs: np.ndarray, select: bool = False, chunk: int = CHUNK):
    """[z < 0] as arithmetic 0/1 shares (integers, not fixed point), and with `select`
    also [z * (z < 0)]. `zs` is flat.

    Up to `chunk` elements go in one batch (8 rounds); a larger input goes in batches of
    `chunk`, one after the other, each with its own dealer item, so that no process holds
    more than two batches' randomness and intermediates: 8 rounds per batch, the same
    bytes. The next batch's item is requested first, so the dealer makes it meanwhile.
    """
    n = zs.size
    if n <= chunk:
        return _batch(ctx, zs, request(ctx, n, select), select)
    bit = np.empty(n, dtype=zs.dtype)
    picked = np.empty(n, dtype=zs.dtype) if select else None
    ticket = request(ctx, chunk, select)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        following = request(ctx, min(chunk, n - stop), select) if stop < n else None
        bit[start:stop], part = _batch(ctx, zs[start:stop], ticket, select)
        if select:
            picked[start:stop] = part
        ticket = following
    return bit, picked


def bit_to_arithmetic(ctx, bit_xor, beta, beta_arith, op: str):
    """The XOR-shared bits b (one per uint64 word's low bit) as arithmetic 0/1 shares, with
    the dealer's bit beta shared both ways: open e = b XOR beta (packed, one bit per
    element), then [b] = e + (1 - 2e) [beta]. Returns ([b], e). Rounds: 1. Comm: n/8
    bytes to each peer."""
    n = bit_xor.size
    packed = kernels.pack_narrow(bit_xor ^ beta, 1)
    e = kernels.unpack_narrow(opening.open_xor(ctx, packed, op), 1, n)
    bit = np.where(e.astype(bool), np.negative(beta_arith), beta_arith)
    if ctx.pid == 0:
        bit += e
    return bit, e


def _batch(ctx, zs: np.ndarray, ticket, select: bool):
    """less_than_zero on one batch with its requested dealer item (module docstring)."""
    free = ctx.protocol.provider.take_free(ticket)
    r, a0, ar, b0, br, beta = free[:6]
    first = ctx.pid == 0
    if select:
        c, z_minus_u = opening.open_many(ctx, [zs + r, zs - free[6]], "cmp-mask")
    else:
        c = opening.open_sum(ctx, zs + r, "cmp-mask")
    derived = ctx.protocol.provider.take_derived(ticket)
    r_bits, c0, cr, beta_arith = derived[:4]

    c_low = c & LOW63
    r_low = r_bits & LOW63
    lt = r_low & ~c_low
    eq = r_low ^ (c_low ^ ALL_ONES) if first else r_low
    for level in range(6):
        words = (a0, b0, c0) if level == 0 else (ar, br, cr)
        lt, eq = _and_level(ctx, level, lt, eq, *words)
    msb = lt ^ (r_bits >> np.uint64(63))
    if first:
        msb ^= c >> np.uint64(63)

    bit, e = bit_to_arithmetic(ctx, msb, beta, beta_arith, "cmp-b2a")
    if not select:
        return bit, None
    z_beta = z_minus_u * beta_arith + derived[4]
    return bit, np.where(e.astype(bool), zs - z_beta, z_beta)
