"""Beaver multiplication for the bilinear operations: elementwise product, matrix product,
2-D convolution, and squaring with a square pair. Results are at 2f fractional bits; the
caller truncates.

For a bilinear op (x, y) -> x o y and a triple ([a], [b], [c = a o b]):
  1. Open d = x - a and e = y - b together (one round).
  2. [x o y] = [c] + d o [b] + [a] o e + d o e, the public d o e added by party 0 only.
Rounds: 1. Comm per party: (size(x) + size(y)) ring elements to each peer.
References: Beaver, "Efficient Multiparty Protocols Using Circuit Randomization",
CRYPTO 1991; Mohassel and Zhang, "SecureML", S&P 2017, Sec. 4.2 (matrix triples).
"""

from __future__ import annotations

import numpy as np

from mpc import kernels
from mpc.correlations import ItemSpec
from mpc.ring import DTYPE


def _conv_combine(d, e, a, b, c, add_de, stride, padding):
    out = c + kernels.conv2d(d, b, stride=stride, padding=padding)
    left = a + d if add_de else a
    return out + kernels.conv2d(left, e, stride=stride, padding=padding)


def request(ctx, kind: str, x_shape, y_shape, params: dict | None = None):
    """Ask the provider for the triple that `bilinear` will need (call early)."""
    return ctx.provider.request(ItemSpec(kind, (tuple(x_shape), tuple(y_shape)), params or {}))


def bilinear(ctx, kind: str, xs: np.ndarray, ys: np.ndarray, params: dict | None = None,
             ticket=None):
    """[x o y] for kind in {"mul", "matmul", "conv2d"}; see the module docstring."""
    params = params or {}
    ticket = ticket or request(ctx, kind, xs.shape, ys.shape, params)
    a, b = ctx.provider.take_free(ticket)
    masked = np.empty(xs.size + ys.size, dtype=DTYPE)  # both openings in one message
    np.subtract(xs, a, out=masked[:xs.size].reshape(xs.shape))
    np.subtract(ys, b, out=masked[xs.size:].reshape(ys.shape))
    d, e = ctx.open_flat(masked, [xs.shape, ys.shape], kind)
    (c,) = ctx.provider.take_derived(ticket)  # the dealer made it during the opening
    add_de = ctx.pid == 0
    if kind == "mul":
        return kernels.beaver_combine(d, e, a, b, c, add_de)
    if kind == "matmul":
        return kernels.beaver_combine_matmul(d, e, a, b, c, add_de)
    return _conv_combine(d, e, a, b, c, add_de, tuple(params.get("stride", (1, 1))),
                         tuple(params.get("padding", (0, 0))))


def square(ctx, xs: np.ndarray) -> np.ndarray:
    """[x^2] with a square pair ([a], [a^2]): open d = x - a, then a^2 + 2 d a + d^2.

    Rounds: 1. Comm per party: size(x) ring elements to each peer (half a multiplication).
    """
    a, a2 = ctx.provider.get(ItemSpec("square", (xs.shape,)))
    d = ctx.open(xs - a, "square")
    out = a2 + np.uint64(2) * d * a
    if ctx.pid == 0:
        out += d * d
    return out
