"""GELU and its derivative by continuous piecewise-linear functions, both from one batched
comparison (the construction of mpc.sigmoid_piecewise, for any slopes at the ends).

A continuous piecewise-linear f with knots k_0 < ... < k_m, slope s_left below k_0 and
s_right above k_m, is f(x) = A + s_right x + sum_j beta_j min(x - k_j, 0), where beta_j is
the slope left of k_j minus the slope right of it (so sum_j beta_j = s_left - s_right) and
A = f(k_m) - s_right k_m. Given [min(x - k_j, 0)] for every j (one comparison with the
product fused in), f is a public linear combination: local but for one truncation.
"""

from __future__ import annotations

import math

import numpy as np

from mpc.tensor import SecretTensor

BETA_BITS = 24  # fractional bits of the public slope changes (their rounding: < 2e-6)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _gelu_grad(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
            + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi))


def _warped_knots(count: int, top: float, power: float) -> np.ndarray:
    """`count` knots on [-top, top], denser near 0 (where GELU bends), on a 1/64 grid so
    that they encode exactly."""
    t = np.linspace(-1.0, 1.0, count)
    return np.round(np.sign(t) * np.abs(t) ** power * top * 64) / 64


def fit_hinges(fn, knots: np.ndarray, slope_left: float, slope_right: float,
               beta_bits: int = BETA_BITS) -> tuple[np.ndarray, float]:
    """The piecewise-linear approximation of fn with these knots as (betas, A) of the
    module's formula, the betas as integers with `beta_bits` fractional bits (summing to
    exactly (slope_left - slope_right) 2^beta_bits, so far outside the knots the slopes
    are exact). The knot values are equalised (each moved towards the middle of its two
    pieces' error bands, 60 times) so the largest error is about the same on every piece:
    half the interpolant's."""
    grid = np.linspace(knots[0], knots[-1], 100 * (len(knots) - 1) + 1)
    piece = np.minimum(np.searchsorted(knots, grid, side="right") - 1, len(knots) - 2)
    values, target = fn(knots).astype(np.float64), fn(grid)
    for _ in range(60):
        error = np.interp(grid, knots, values) - target
        top, bottom = np.full(len(knots) - 1, -np.inf), np.full(len(knots) - 1, np.inf)
        np.maximum.at(top, piece, error)
        np.minimum.at(bottom, piece, error)
        middle = (top + bottom) / 2
        values -= (np.r_[middle[:1], middle] + np.r_[middle, middle[-1:]]) / 4
    slopes = np.r_[slope_left, np.diff(values) / np.diff(knots), slope_right]
    betas = slopes[:-1] - slopes[1:]
    scale = 2.0 ** beta_bits
    encoded = np.round(betas * scale).astype(np.int64)
    encoded[-1] += round((slope_left - slope_right) * scale) - encoded.sum()
    return encoded, float(values[-1] - slope_right * knots[-1])


GELU_KNOTS = _warped_knots(33, 4.0, 1.4)
GELU_BETAS, GELU_OFFSET = fit_hinges(_gelu, GELU_KNOTS, 0.0, 1.0)
GELU_GRAD_BETAS, GELU_GRAD_OFFSET = fit_hinges(_gelu_grad, GELU_KNOTS, 0.0, 0.0)


def gelu(x: SecretTensor, with_grad: bool = False):
    """GELU(x) = x Phi(x) (Phi the standard normal CDF; the exact form, not the tanh one)
    by a continuous piecewise-linear function with 33 knots on [-4, 4], denser near 0,
    slope 0 below and 1 above; with `with_grad`, also GELU'(x) = Phi(x) + x phi(x) by a
    second such function on the same knots (flat at both ends), from the same comparison.

    Error for every x, f >= 16: |GELU - y| <= 0.0016 and |GELU' - y'| <= 0.0028 (the
    pieces' 0.00147 and 0.00258, the slopes' rounding, one unit; measured by tests).
    GELU' is the true derivative's approximation, not the derivative of the
    approximation (which is a step function, off by up to 0.1).

    1. z_j = x - k_j for the 33 knots (local).
    2. One batched comparison with the product fused in: [min(z_j, 0)] for all j.
    3. sum_j beta_j [min(z_j, 0)] with public integer beta_j (24 fractional bits), for
       GELU and GELU' (local); both truncated by 24 bits in one batch (the sums stay below
       2^57 for |x| < 2^15: inside the exact truncation's range).
    4. y = A + x + hinges, y' = A' + hinges' (local).
    Rounds: 9. Comm: 33 comparisons with select per element (33 * 47.625 = 1571.6 bytes
    to each peer) and one truncation of 1 (2 with `with_grad`) elements.
    References: the hinge form of a continuous piecewise-linear function (Chua and Kang,
    IEEE Trans. Circuits Syst., 1977); Hendrycks and Gimpel, "Gaussian Error Linear
    Units", 2016, for GELU.
    """
    shifted = x.reshape(x.shape + (1,)) - GELU_KNOTS
    _, below = shifted._less_than_zero("gelu", select=True)
    betas = [GELU_BETAS] + ([GELU_GRAD_BETAS] if with_grad else [])
    weighted = x.ctx.protocol.local(
        lambda s: np.stack([np.sum(s * b.astype(np.uint64), axis=-1, dtype=np.uint64)
                            for b in betas]), below)
    with x.ctx.operation("gelu"):
        hinges = x._new(x.ctx.protocol.truncate(x.ctx, weighted, BETA_BITS))
    y = hinges[0] + x + GELU_OFFSET
    return (y, hinges[1] + GELU_GRAD_OFFSET) if with_grad else y

