"""Non-linear functions on shares: reciprocal, division, exp, sigmoid, tanh, softmax,
sqrt, inverse sqrt and log. Each states its input domain and error bound (units of
2^-16 unless said otherwise); tests sweep the whole domain and assert the bound.

Shared machinery: a secret positive x is normalised as x = 2^k * a with a in [1/2, 1) by
comparing x with every power of two of the domain in one batched comparison (8 rounds):
the comparison bits give the one-hot of k, and 2^-k as an integer share with WIDE_BITS
fractional bits, so no division or bit decomposition is needed. Iterations (Newton) and
polynomials then run on a, where they converge fast and have no cliffs.
"""

from __future__ import annotations

import math

import numpy as np

from mpc.tensor import SecretTensor

WIDE_BITS = 30  # fractional bits of the secret power-of-two scales
RECIPROCAL_LOG2_RANGE = (-10, 14)  # |x| in [2^-10, 2^15): about [9.8e-4, 32768)
SQRT_LOG4_RANGE = (-5, 7)  # x in [4^-5, 4^8): about [9.8e-4, 65536)
EXP_MAX_ARG = 20.0  # exp(20) = 4.85e8 is inside the fixed-point range
LOG_LOG2_RANGE = (-10, 14)
SIGMOID_KNOTS = np.linspace(-8.0, 8.0, 33)  # pieces of width 1/2; flat outside


def _chebyshev_poly(fn, lo: float, hi: float, degree: int) -> np.ndarray:
    """Power-basis coefficients (lowest first) of fn's Chebyshev interpolant on [lo, hi]."""
    nodes = np.cos(np.pi * (np.arange(degree + 1) + 0.5) / (degree + 1))
    xs = (nodes + 1) / 2 * (hi - lo) + lo
    return np.polynomial.polynomial.polyfit(xs, fn(xs), degree)


EXP2_POLY = _chebyshev_poly(np.exp2, 0.0, 1.0, 5)  # error < 0.01 unit on [0, 1]
LOG_POLY = _chebyshev_poly(np.log, 0.5, 1.0, 9)  # error < 1e-8 on [1/2, 1]


# ------------------------------------------------------------------ building blocks
def _horner(x: SecretTensor, coefficients) -> SecretTensor:
    """sum_i c_i x^i for public c (lowest first); one multiplication per degree."""
    y = x * float(coefficients[-1]) + float(coefficients[-2])
    for c in coefficients[-3::-1]:
        y = y * x + float(c)
    return y


def _mul_by_bit(x: SecretTensor, bit: np.ndarray) -> np.ndarray:
    """Shares of x * b for integer 0/1 shares b: a product without truncation."""
    with x.ctx.operation("mul_bit"):
        return x.ctx.protocol.product(x.ctx, "mul", x.share, bit, None, None)


def _mul_by_wide(x: SecretTensor, wide: np.ndarray) -> SecretTensor:
    """x * s for s shared as an integer with WIDE_BITS fractional bits (|x s| < 2^15)."""
    with x.ctx.operation("mul_wide"):
        return x._new(x.ctx.protocol.product(x.ctx, "mul", x.share, wide, None, WIDE_BITS))


def _at_least(x: SecretTensor, thresholds: np.ndarray) -> np.ndarray:
    """Integer 0/1 shares of [x >= t] for every public threshold t: shape x.shape + (m,).
    One batched comparison."""
    diff = x.reshape(x.shape + (1,)) - thresholds
    below = diff._less_than_zero("normalize")[0]
    return _one_minus(x.ctx, below)


def _one_minus(ctx, bits: np.ndarray) -> np.ndarray:
    """Shares of 1 - b for integer shares b (local)."""
    proto = ctx.protocol
    ones = np.ones(proto.shape(bits), dtype=np.uint64)
    return proto.add_public(ctx, proto.local(np.negative, bits), ones)


def _one_hot_of_floor(at_least: np.ndarray, ctx) -> np.ndarray:
    """From bits [x >= t_j] (increasing t_j) the one-hot of the largest j with x >= t_j;
    x below t_0 counts as j = 0."""
    nxt = np.concatenate([at_least[..., 1:], np.zeros_like(at_least[..., :1])], axis=-1)
    onehot = at_least - nxt
    onehot[..., 0] += _one_minus(ctx, at_least[..., 0])
    return onehot


def _weighted(onehot: np.ndarray, weights) -> np.ndarray:
    """sum_j onehot_j * w_j for public integer weights (local)."""
    w = np.array([int(v) % (1 << 64) for v in weights], dtype=np.uint64)
    return np.sum(onehot * w, axis=-1, dtype=np.uint64)


def _clamp(x: SecretTensor, lo: float, hi: float) -> SecretTensor:
    """min(max(x, lo), hi) with two ReLUs in one batched comparison."""
    both = x.reshape(x.shape + (1,)) - np.array([lo, hi])
    parts = both.relu()
    return parts[..., 0] - parts[..., 1] + lo


def _newton_reciprocal(a: SecretTensor, iterations: int = 3) -> SecretTensor:
    """1/a for a in [1/2, 1]: y0 = 2.9142 - 2a (relative error <= 0.086), then
    y <- y (2 - a y); relative error 0.086^(2^k): 5.4e-5 after 2, 3e-9 after 3."""
    y = a * -2.0 + 2.9142
    for _ in range(iterations):
        y = y * ((a * y) * -1.0 + 2.0)
    return y


# ------------------------------------------------------------------ public functions
def reciprocal(x: SecretTensor) -> SecretTensor:
    """1/x for 2^-10 <= |x| < 2^15 (about 9.8e-4 to 32768), either sign.

    Normalise |x| = 2^k a, a in [1/2, 1); Newton on a; scale back by 2^-k; restore the
    sign. Error: |1/x - y| <= 4 units + 5e-5 |1/x| (Newton's few units on 1/a, scaled by
    2^-k). Outside the domain the result saturates:
    |x| < 2^-10 gives +-1024 (as for |x| = 2^-10), |x| >= 2^15 gives +-2^-15.
    Rounds: 45. Comm: 1373.5 bytes per element to each peer (mostly the 25 batched
    comparisons of the normalisation).
    """
    lo, hi = RECIPROCAL_LOG2_RANGE
    negative, picked = x._less_than_zero("abs", select=True)
    magnitude = x._new(x.share - np.uint64(2) * picked)
    onehot = _one_hot_of_floor(_at_least(magnitude, 2.0 ** np.arange(lo, hi + 1)), x.ctx)
    scale = _weighted(onehot, [1 << (WIDE_BITS - i - 1) for i in range(lo, hi + 1)])
    a = _clamp(_mul_by_wide(magnitude, scale), 0.5, 1.0)
    inverse = _mul_by_wide(_newton_reciprocal(a), scale)
    return x._new(inverse.share - np.uint64(2) * _mul_by_bit(inverse, negative))


def divide(x, y: SecretTensor) -> SecretTensor:
    """x / y for secret y in reciprocal's domain: x * reciprocal(y).
    Error <= |x| (4 units + 5e-5 / |y|) + 1 unit."""
    return x * reciprocal(y)


def _log2e_times(x: SecretTensor) -> SecretTensor:
    """x log2(e) as x + x (log2(e) - 1): the truncated product stays below 2^30 for
    |x| <= 2^31 (a difference of two values of the fixed-point range, as in softmax)."""
    return x + x * (math.log2(math.e) - 1.0)


def _exp2(t: SecretTensor, lo: int, hi: int, top: float) -> SecretTensor:
    """2^t for t <= top (hi <= top < hi + 1), as 0 for t < lo + 1 (lo <= -f - 1: below
    one unit anyway), and 2^top above top.

    One batched comparison of t with lo, lo+1, ..., hi and top, with the products fused
    in (select), gives the bits [t >= k] and min(t - k, 0). From them, k = floor(t)
    (lo below lo + 1) and t clamped to [lo, top]: clamp = top - min(t - lo, 0) +
    min(t - top, 0). Then 2^t = 2^(t_c - k) 2^k with 2^(t_c - k) by a degree-5
    polynomial on [0, 1]; the weight of 2^lo is 0. Every intermediate stays small for
    every t, so nothing wraps (and the checked mode has nothing to report).
    """
    ints = np.arange(lo, hi + 1)
    thresholds = np.append(ints.astype(np.float64), [top] if top > hi else [])
    diff = t.reshape(t.shape + (1,)) - thresholds
    below, mins = diff._less_than_zero("exp", select=True)  # [t < k], min(t - k, 0)
    at_least = _one_minus(t.ctx, below[..., 1:ints.size])  # [t >= k] for k = lo+1..hi
    scale = t.ctx.fixed.scale
    floor = t._new(_weighted(at_least, [scale] * (ints.size - 1))) + float(lo)
    clamped = t._new(mins[..., -1] - mins[..., 0]) + float(top)
    onehot = _one_hot_of_floor(np.concatenate(
        [_one_minus(t.ctx, np.zeros_like(at_least[..., :1])), at_least], axis=-1), t.ctx)
    f = t.ctx.fixed.frac_bits
    powers = [1 << (k + f) if k + f >= 0 and k > lo else 0 for k in range(lo, hi + 1)]
    return _horner(clamped - floor, EXP2_POLY) * t._new(_weighted(onehot, powers))


def exp(x: SecretTensor) -> SecretTensor:
    """e^x for x <= 20 (e^20 = 4.85e8); results below one unit (x < -11.8) are 0, and
    above 20 the result saturates at e^20, for every x of the fixed-point range.

    t = x log2(e); then 2^t by _exp2 with the integers -18..28 and the clamp at
    20 log2(e) in one comparison. Error: |e^x - y| <= 3 units + 2e-4 e^x.
    Rounds: 20. Comm: 2422.0 bytes per element to each peer.
    """
    return _exp2(_log2e_times(x), -18, 28, EXP_MAX_ARG * math.log2(math.e))


def exp_nonpositive(x: SecretTensor) -> SecretTensor:
    """e^x for x <= 0 (after subtracting a max, or -|x|): the same as exp with the
    integers -18..0 only, so less than half the comparisons. x > 0 gives e^0 = 1 (the
    value at the domain's edge); x down to -2^31 is fine. Error <= 3 units.
    Rounds: 20. Comm: 1040.9 bytes per element to each peer."""
    return _exp2(_log2e_times(x), -18, 0, 0.0)


def sigmoid(x: SecretTensor) -> SecretTensor:
    """1 / (1 + e^-x) for every x (no domain limit): with s = 1/(1 + e^-|x|) in [1/2, 1),
    sigmoid(x) = s for x >= 0 and 1 - s otherwise. Error <= 4 units.
    Rounds: 48. Comm: 1304.5 bytes per element to each peer."""
    negative, picked = x._less_than_zero("abs", select=True)
    magnitude = x._new(x.share - np.uint64(2) * picked)
    half_denominator = (exp_nonpositive(-magnitude) + 1.0) * 0.5  # in (1/2, 1]
    s = _newton_reciprocal(half_denominator) * 0.5
    flipped = (s * -2.0 + 1.0)  # 1 - 2s
    return s + x._new(_mul_by_bit(flipped, negative))


def _sigmoid_hinges(knots: np.ndarray, beta_bits: int) -> tuple[np.ndarray, float]:
    """The continuous piecewise-linear approximation of sigmoid with these knots, flat
    outside them, as C - sum_j beta_j min(x - k_j, 0): returns the beta_j as integers with
    `beta_bits` fractional bits (summing to exactly 0, so the terms cancel far below
    the knots) and C. The knot values are equalised (each moved towards the middle of its
    two pieces' error bands, 60 times) until the largest error is the same on every piece:
    0.00152, half the interpolant's 0.0030."""
    def sig(v):
        return 0.5 * (1 + np.tanh(v / 2))
    grid = np.linspace(knots[0], knots[-1], 100 * (len(knots) - 1) + 1)
    piece = np.minimum(np.searchsorted(knots, grid, side="right") - 1, len(knots) - 2)
    values = sig(knots)
    for _ in range(60):
        error = np.interp(grid, knots, values) - sig(grid)
        top, bottom = np.full(len(knots) - 1, -np.inf), np.full(len(knots) - 1, np.inf)
        np.maximum.at(top, piece, error)
        np.minimum.at(bottom, piece, error)
        middle = (top + bottom) / 2
        values -= (np.r_[middle[:1], middle] + np.r_[middle, middle[-1:]]) / 4
    slopes = np.diff(values) / np.diff(knots)
    betas = np.diff(np.r_[0.0, slopes, 0.0])  # slope changes at the knots
    scale = 2.0 ** beta_bits
    encoded = np.round(betas * scale).astype(np.int64)
    encoded[-1] -= encoded.sum()  # exactly 0 in all: no x term survives
    # sigmoid ~ values[-1] above the last knot, where every min() is 0
    return encoded, float(values[-1])


SIGMOID_BETA_BITS = 24  # the slopes' precision: their rounding stays below 2e-5
SIGMOID_BETAS, SIGMOID_TOP = _sigmoid_hinges(SIGMOID_KNOTS, SIGMOID_BETA_BITS)


def sigmoid_piecewise(x: SecretTensor) -> SecretTensor:
    """sigmoid(x) by a continuous piecewise-linear function with knots every 1/2 on
    [-8, 8], flat outside, for every x. Error <= 0.0016 for f >= 16 fractional bits (the
    pieces' 0.00152, the slopes' rounding and one unit; 0.0025 at f = 10): 100 times
    coarser than sigmoid's but 5 times fewer rounds, which is what a training step needs
    (a gradient p - y wants two or three correct digits, not five).

    With z_j = x - k_j for the 33 knots, one batched comparison with the product fused in
    gives [min(z_j, 0)] = [z_j * (z_j < 0)] for all j in its 8 rounds; then
    sigmoid = C - sum_j beta_j min(z_j, 0) with public beta_j (the slope changes), one
    truncation (by the betas' 24 fractional bits, whatever f is: the sum stays below
    2^40, inside the exact truncation's range; with local-probabilistic truncation its
    failure chance is 2^-24 per element, caught by nn's overflow guard). Rounds: 9.
    Comm: 1579.6 bytes per element to each peer (up to 2^20 / 33 elements; beyond, the
    comparison runs in batches of 2^20, 8 rounds each).
    """
    shifted = x.reshape(x.shape + (1,)) - SIGMOID_KNOTS
    hinges = x._new(x.ctx.protocol.hinge_sums(  # sum_j beta_j min(z_j, 0), f bits
        x.ctx, shifted.share, SIGMOID_BETAS.astype(np.uint64), SIGMOID_BETA_BITS, "sigmoid"))
    return SIGMOID_TOP - hinges


def tanh(x: SecretTensor) -> SecretTensor:
    """tanh(x) = 2 sigmoid(2x) - 1 for every x. Error <= 10 units.
    Rounds: 48. Comm: 1304.5 bytes per element to each peer."""
    return sigmoid(x * 2) * 2 - 1.0


def softmax(x: SecretTensor, axis: int = -1) -> SecretTensor:
    """exp(x - max) / sum(exp(x - max)) along `axis`, for any finite x (the shift keeps
    every exp argument <= 0; the sum is in [1, n], inside reciprocal's domain for
    n < 32768). Error <= 6 units per output.
    Rounds: 8 ceil(log2(n)) for the max, then 20 + 45 + 2 (n = 8: 91)."""
    moved = x._axis_last(axis)
    shifted = moved - moved.max(axis=-1).reshape(moved.shape[:-1] + (1,))
    e = exp_nonpositive(shifted)
    total = e.sum(axis=-1, keepdims=True)
    out = e * reciprocal(total).broadcast_to(e.shape)
    order = [a for a in range(x.ndim) if a != axis % x.ndim] + [axis % x.ndim]
    return out.transpose(*np.argsort(order))


def _normalize_nonnegative(x: SecretTensor, base: float, lo: int, hi: int):
    """One batched comparison of x with 0 and base^lo..base^hi: returns the one-hot of
    i with base^i <= x < base^(i+1) (slot lo also takes 0 <= x < base^lo; for x < 0 every
    slot is 0, so the scale derived from it is 0 and nothing wraps however negative x
    is) and the integer shares [x < 0], [0 <= x < base^lo]."""
    at_least = _at_least(x, np.append(0.0, base ** np.arange(lo, hi + 1)))
    negative = _one_minus(x.ctx, at_least[..., 0])
    onehot = _one_hot_of_floor(at_least[..., 1:], x.ctx)
    onehot[..., 0] -= negative
    return onehot, negative, at_least[..., 0] - at_least[..., 1]


def _sqrt_parts(x: SecretTensor):
    """x = 4^(i+1) a with a in [1/4, 1): (a clamped, one-hot of i, 1/sqrt(a), [x < 0],
    [0 <= x < 4^lo]); for x < 0, a = 1/4."""
    lo, hi = SQRT_LOG4_RANGE
    onehot, negative, small = _normalize_nonnegative(x, 4.0, lo, hi)
    scale = _weighted(onehot, [1 << (WIDE_BITS - 2 * i - 2) for i in range(lo, hi + 1)])
    a = _clamp(_mul_by_wide(x, scale), 0.25, 1.0)
    y = a * -1.6 + 2.6  # 1/sqrt(a) on [1/4, 1] within 18%
    for _ in range(4):
        y = y * ((a * y.square()) * -0.5 + 1.5)
    return a, onehot, y, negative, small


def inv_sqrt(x: SecretTensor) -> SecretTensor:
    """1/sqrt(x) for x in [4^-5, 4^8) (about 9.8e-4 to 65536).

    Normalise x = 4^(i+1) a with a in [1/4, 1); Newton y <- y (3 - a y^2) / 2 from a
    linear start (4 steps); scale back by 2^-(i+1). Error <= 4 units + 5e-5 / sqrt(x).
    Outside the domain it gives the value at the domain's nearer end: x < 4^-5 (0 and
    every negative x included) gives 32, x >= 4^8 gives 1/256.
    Rounds: 49. Comm: 994.0 bytes per element to each peer.
    """
    lo, hi = SQRT_LOG4_RANGE
    _, onehot, y, negative, _ = _sqrt_parts(x)
    weights = [1 << (WIDE_BITS - i - 1) for i in range(lo, hi + 1)]
    return _mul_by_wide(y, _weighted(onehot, weights) + negative * np.uint64(weights[0]))


def sqrt(x: SecretTensor) -> SecretTensor:
    """sqrt(x) for x in [0, 4^8): 2^(i+1) * (a / sqrt(a)) on the normalised a, so the
    precision is that of a number in [1/2, 1) scaled up. Error <= 4 units + 1e-4 sqrt(x)
    on [4^-5, 4^8): a drops x's low bits (<= 1 unit of a >= 1/4, relative 2^-15 in
    sqrt(a)), the product a y rounds (<= 1 unit of a value >= 1/2, 2^-15) and Newton's y
    adds as much again; the scale-up 2^(i+1) keeps these relative. On [0, 4^-5) it returns 32 x, the line from sqrt(0) = 0 to the
    value at 4^-5 (error <= 0.008). Outside the domain it gives the value at the
    domain's nearer end: every x < 0 gives 0 = sqrt(0), x >= 4^8 gives 256.
    Rounds: 52. Comm: 1034.0 bytes per element to each peer."""
    lo, hi = SQRT_LOG4_RANGE
    a, onehot, y, _, small = _sqrt_parts(x)
    inside = _mul_by_wide(a * y, _weighted(onehot, [1 << (WIDE_BITS + i + 1)
                                                    for i in range(lo, hi + 1)]))
    linear = x * (2 ** -lo)  # 32 x (an integer factor: exact, no truncation)
    return inside + x._new(_mul_by_bit(linear - inside, small))


def log(x: SecretTensor) -> SecretTensor:
    """Natural log for x in [2^-10, 2^15): x = 2^k a with a in [1/2, 1), log x =
    k ln 2 + log a, log a by a degree-9 polynomial. Error <= 6 units. Outside the
    domain it gives the value at the domain's nearer end: x < 2^-10 (0 and every
    negative x included) gives log(2^-10), x >= 2^15 log(2^15).
    Rounds: 36. Comm: 1357.5 bytes per element to each peer."""
    lo, hi = LOG_LOG2_RANGE
    onehot, negative, _ = _normalize_nonnegative(x, 2.0, lo, hi)
    scale = _weighted(onehot, [1 << (WIDE_BITS - i - 1) for i in range(lo, hi + 1)])
    unit = x.ctx.fixed.scale
    exponent = x._new(_weighted(onehot, [(i + 1) * unit for i in range(lo, hi + 1)])
                      + negative * np.uint64(((lo + 1) * unit) % (1 << 64)))
    a = _clamp(_mul_by_wide(x, scale), 0.5, 1.0)
    return exponent * math.log(2) + _horner(a, LOG_POLY)
