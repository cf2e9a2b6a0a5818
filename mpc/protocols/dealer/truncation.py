"""Fixed-point truncation: from 2f fractional bits back to f, after a product.

Two methods; the context's `truncation` setting picks one.
"""

from __future__ import annotations

import math

import numpy as np

from mpc import kernels
from mpc.protocols.dealer import opening
from mpc.protocols.dealer.correlations import ItemSpec
from mpc.protocols import range_check
from mpc.ring import DTYPE

OFFSET_BITS = 62  # inputs are shifted by 2^62 to be non-negative; |x| < 2^62 is required


def request(ctx, shape, bits: int | None = None):
    """Ask the provider for what truncating a tensor of `shape` needs (call early)."""
    if ctx.truncation != "exact":
        return None
    bits = ctx.fixed.frac_bits if bits is None else bits
    return ctx.protocol.provider.request(ItemSpec("trunc", ((math.prod(shape),),),
                                         {"frac_bits": bits}))


def request_product(ctx, kind: str, x_shape, y_shape, params: dict | None, bits: int):
    """Ask for a Beaver triple fused with the exact truncation of its product (see
    truncated_product), or None where the truncation is not the exact one (then request
    the triple and the truncation separately)."""
    if ctx.truncation != "exact":
        return None
    params = dict(params or {}, op=kind, frac_bits=bits)
    return ctx.protocol.provider.request(ItemSpec("trunc-product",
                                                  (tuple(x_shape), tuple(y_shape)), params))


def truncated_product(ctx, masked: np.ndarray, ticket, bits: int,
                      operand_size: int) -> np.ndarray:
    """The exact truncation (truncate_exact, from step 2) of a product x o y whose Beaver
    recombination was done with the fused item of request_product: the parties add
    d o [b] + [a] o e (+ d o e) to [q] instead of [c] (mpc.protocols.dealer.arithmetic),
    and since the dealer made the mask r = q - c - 2^62, the result `masked` is already
    [x o y + 2^62 + r], step 1's masked value (a flat or shaped tensor of the output's
    elements). Returns [x o y / 2^bits], flat. `ticket` may be a list of such items
    whose products are concatenated in `masked` (mpc.protocols.dealer.protocol
    .products: several products in one truncation); their pairs are concatenated too.

    Rounds: 1, or 2 where split_opening says so (truncate_exact). Comm: truncate_exact's.
    Provider: the dealer sends the corrected party the triple's and the pair's
    corrections in one: t and m, 8 + 2 bytes per output element (f <= 16), instead of
    the 8 of c and the 8 + 2 of (t, m); every party draws a, b, q (+ t, m) from its stream
    instead of a, b, c, r (+ t, m).
    """
    flat = masked.reshape(-1)
    split = split_opening(ctx, flat.size, operand_size)
    out = _finish_split(ctx, flat, ticket, bits) if split else \
        _finish_open(ctx, flat, ticket, bits)
    if ctx.check:
        range_check.record(ctx, out, bits)
    return out


def truncate(ctx, xs: np.ndarray, ticket=None, bits: int | None = None,
             operand_size: int | None = None) -> np.ndarray:
    """[x] -> [x / 2^bits] (bits = f by default: from 2f fractional bits back to f).
    `operand_size`: the elements a product opened to make xs, if it is one (see
    `split_opening`). In checked mode the result is queued for mpc.protocols.range_check."""
    bits = ctx.fixed.frac_bits if bits is None else bits
    if ticket is None:
        ticket = request(ctx, np.shape(xs), bits)
    flat = np.asarray(xs, dtype=DTYPE).reshape(-1)  # 0-d arrays would turn into scalars
    out = TRUNCATIONS[ctx.truncation](ctx, flat, ticket, bits,
                                      split_opening(ctx, flat.size, operand_size))
    if ctx.check:
        range_check.record(ctx, out, bits)
    return out.reshape(np.shape(xs))


SPLIT_MIN = 1 << 16  # elements; from here on the exact truncation may open by parts
SPLIT_ALWAYS = 1 << 18  # elements; from here on it does (2 parties: 1 MB saved per party)


def split_opening(ctx, size: int, operand_size: int | None) -> bool:
    """Whether the exact truncation of `size` elements opens c by parts (2 rounds, about
    8 (n-1)/n bytes per element and party) rather than to everyone (1 round, 8 (n-1)).

    n >= 3: from SPLIT_MIN elements, where the plain opening would reduce-scatter in 2
    rounds and twice the bytes anyway. n = 2: from SPLIT_ALWAYS elements (the 4 bytes per
    element it saves each party outweigh a round: 1 MB is 80 ms at 100 Mbit/s, a round
    trip 1-50 ms), and from SPLIT_MIN elements when the output is larger than the
    operands opened for it (a convolution), where the truncation carries most bytes."""
    if size < SPLIT_MIN:
        return False
    if ctx.n_parties >= 3 or size >= SPLIT_ALWAYS:
        return True
    return operand_size is not None and size > operand_size


def truncate_exact(ctx, xs: np.ndarray, ticket, bits: int, split: bool = False) -> np.ndarray:
    """Exact-to-one-ulp truncation by f = `bits` with a dealer pair; any number of parties.

    Needs |x| < 2^62 (x as a signed ring value). With [r] uniform in Z_2^64, its top bit
    m = r >> 63 and s = (r mod 2^63) >> f, the provider gives [t] = [2^(63-f) m - s] and
    [m] modulo 2^f:
      1. x' = x + 2^62, so 0 <= x' < 2^63.
      2. Open c = x' + r mod 2^64 (uniform, so it reveals nothing about x).
      3. With c_low = c mod 2^63 and c63 its top bit, the carry into bit 63 of
         x' + (r mod 2^63) is w = c63 XOR m = c63 + (1 - 2 c63) m: linear in [m].
      4. x' = c_low + 2^63 w - (r mod 2^63) exactly, so
         y' = (c_low >> f) + 2^(63-f) [w] - [s] equals floor(x' / 2^f) + b, where the
         bit b = [(c_low mod 2^f) < (r mod 2^f)] is 1 with probability (x' mod 2^f) / 2^f.
         Here 2^(63-f) [w] - [s] = [t] + 2^(63-f) c63 - c63 2^(64-f) [m], and the last
         term needs [m] only modulo 2^f.
      5. y = y' - 2^(62-f).
    The public part of step 4, (c_low >> f) + 2^(63-f) c63 - 2^(62-f), is added by one
    party; every other party needs only c63. So with `split` (see split_opening) c is
    opened by parts: party p receives part p of c (mpc.protocols.dealer.opening
    .reduce_scatter) and adds that part's public part, then sends the others its top bits,
    packed 8 to a byte.
    Error: y is floor(x/2^f) or floor(x/2^f) + 1 and E[y] = x / 2^f (unbiased), so
    |y - x/2^f| < 1 unit of 2^-f. Failure probability: 0 for |x| < 2^62; outside that
    range the result is meaningless (the fixed-point range keeps products inside it).

    Rounds: 1; split: 2. Comm per party: one ring element per element to each peer;
    split: (n-1)/n * size ring elements and (n-1) * ceil(size/n / 8) bytes in all (for
    n = 2: 4 + 1/16 bytes per element instead of 8). Each party receives c or c63 of
    uniform c only.
    Provider: the dealer sends the corrected party 8 + 2 bytes per element (f <= 16).
    References: Escudero, Ghosh, Keller, Rachuri, Scholl, "Improved Primitives for MPC over
    Mixed Arithmetic-Binary Circuits", CRYPTO 2020, Sec. 5 (truncation with the mask's
    top bit shared); Catrina and de Hoogh, ESORICS 2010 (probabilistic truncation).
    """
    (r,) = ctx.protocol.provider.take_free(ticket)  # flat, like xs
    first = ctx.pid == 0
    masked = np.add(xs, r, out=r)  # r is this party's own fresh array
    if first:
        masked += np.uint64(1 << OFFSET_BITS)
    if split:
        return _finish_split(ctx, masked, ticket, bits)
    return _finish_open(ctx, masked, ticket, bits)


def _take_pair(ctx, ticket):
    """The truncation pair (t, m) of a ticket, or of several concatenated."""
    if not isinstance(ticket, list):
        return ctx.protocol.provider.take_derived(ticket)
    pairs = [ctx.protocol.provider.take_derived(t) for t in ticket]
    if len(pairs) == 1:
        return pairs[0]
    return tuple(np.concatenate([p[i].reshape(-1) for p in pairs]) for i in range(2))


def _finish_open(ctx, masked: np.ndarray, ticket, bits: int) -> np.ndarray:
    """Steps 2-5 of truncate_exact, c opened to everyone."""
    c = opening.open_sum(ctx, masked, "trunc")
    t, m = _take_pair(ctx, ticket)
    return kernels.trunc_finish(c, t, m, bits, ctx.pid == 0, out=c)  # c is fresh


def _finish_split(ctx, masked: np.ndarray, ticket, bits: int) -> np.ndarray:
    """Steps 2-5 of truncate_exact with c opened by parts (its `split`)."""
    bounds, c_mine = opening.reduce_scatter(ctx, masked, "trunc")
    packed = kernels.top_bits_packed(c_mine)
    seq = ctx.next_seq()
    for peer in ctx.peers:
        ctx.transport.send(peer, seq, "trunc:top", packed)
    t, m = _take_pair(ctx, ticket)
    out = np.empty_like(masked)
    part = {p: slice(bounds[p], bounds[p + 1]) for p in range(ctx.n_parties)}
    mine = part[ctx.pid]
    kernels.trunc_finish(c_mine, t[mine], m[mine], bits, True, out=out[mine])
    got = ctx.transport.exchange(seq, "trunc:top", {}, {
        p: (np.uint8, ((bounds[p + 1] - bounds[p] + 7) // 8,)) for p in ctx.peers})
    for p, top in got.items():
        kernels.trunc_finish_bits(top, t[part[p]], m[part[p]], bits, out=out[part[p]])
    return out


def truncate_local_probabilistic(ctx, xs: np.ndarray, ticket, bits: int,
                                 split: bool = False) -> np.ndarray:
    """SecureML's zero-message truncation for 2 parties. CAN FAIL CATASTROPHICALLY.

    Party 0 shifts its share arithmetically; party 1 shifts the negation of its share and
    negates back. When the two shares do not wrap around the ring the result is
    floor(x/2^f) or one more. When they do, it is off by about 2^(64-f) (for f = 16, a
    value near 2.8e14): this happens with probability |x| / 2^64 per element (x as a ring
    value at 2f fractional bits: the chance that party 0's uniform share lands in the
    window of width |x| where the signed sum overflows). A product of 1000 at f = 16
    (2^42 in the ring) fails about once in 4 million elements; a training run with 10^9
    products will see it.
    Rounds: 0. Comm: 0.
    References: Mohassel and Zhang, "SecureML", IEEE S&P 2017, Sec. 4.1, Theorem 1.
    (`split` is ignored: nothing is opened.)
    """
    f = np.int64(bits)
    signed = xs.view(np.int64)
    if ctx.pid == 0:
        return (signed >> f).view(DTYPE)
    return np.negative((np.negative(signed) >> f)).view(DTYPE)


TRUNCATIONS = {"exact": truncate_exact, "local-probabilistic": truncate_local_probabilistic}
