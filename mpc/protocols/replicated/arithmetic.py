"""Local terms of the bilinear products on replicated shares: each party's additive part of
x o y, from its two components alone (no message); a reshare or a fused truncation then
turns the parts into replicated shares of the product.

For a bilinear o (elementwise, matrix product, convolution) and party i holding
(x_i, x_{i+1}), (y_i, y_{i+1}):
    z_i = x_i o y_i + x_i o y_{i+1} + x_{i+1} o y_i = x_i o (y_i + y_{i+1}) + x_{i+1} o y_i,
and z_0 + z_1 + z_2 = (x_0 + x_1 + x_2) o (y_0 + y_1 + y_2): each of the nine cross terms
x_j o y_k is computed by exactly one party (the one holding both j and k). Two products of
the operands' shapes per party; only the output travels, so the inner dimension of a
matrix product or a convolution costs nothing on the wire.
Square: z_i = x_i^2 + 2 x_i x_{i+1}.
References: Araki et al., CCS 2016, Sec. 2 (multiplication); Mohassel and Rindal, "ABY3",
CCS 2018, Sec. 5.1 (matrix products reshare only the output).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mpc import kernels


@njit(cache=True, nogil=True)
def _mul_terms(x0, x1, y0, y1, out):
    """out = x0 (y0 + y1) + x1 y0 elementwise, flat uint64 arrays, in one pass."""
    for i in range(out.shape[0]):
        out[i] = x0[i] * (y0[i] + y1[i]) + x1[i] * y0[i]


def _op(kind: str, params: dict | None):
    params = params or {}
    if kind == "mul":
        return np.multiply
    if kind == "matmul":
        return kernels.matmul
    if kind == "conv2d":
        stride = tuple(params.get("stride", (1, 1)))
        padding = tuple(params.get("padding", (0, 0)))
        return lambda x, w: kernels.conv2d(x, w, stride=stride, padding=padding)
    raise ValueError(f"unknown product kind {kind!r}")


def local_product(kind: str, xs: np.ndarray, ys: np.ndarray, params: dict | None = None):
    """This party's additive part of x o y (module docstring), of the product's shape: a
    fresh array."""
    if kind == "mul" and xs.shape == ys.shape:
        x0, x1, y0, y1 = (np.ascontiguousarray(v).reshape(-1) for v in (*xs, *ys))
        out = np.empty(x0.size, xs.dtype)
        _mul_terms(x0, x1, y0, y1, out)
        return out.reshape(xs.shape[1:])
    op = _op(kind, params)
    with np.errstate(over="ignore"):
        return op(xs[0, ...], ys[0, ...] + ys[1, ...]) + op(xs[1, ...], ys[0, ...])


def local_square(xs: np.ndarray) -> np.ndarray:
    """This party's additive part of x * x."""
    with np.errstate(over="ignore"):
        return xs[0, ...] * (xs[0, ...] + np.uint64(2) * xs[1, ...])
