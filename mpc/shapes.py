"""Result shapes of the bilinear operations, with the errors for operands that do not fit."""

from __future__ import annotations

import numpy as np

Shape = tuple[int, ...]


def broadcast_shape(a: Shape, b: Shape) -> Shape:
    return tuple(np.broadcast_shapes(a, b))


def matmul_shape(a: Shape, b: Shape) -> Shape:
    """Result shape of np.matmul(a, b), with its error for mismatched operands."""
    if len(a) == 0 or len(b) == 0:
        raise ValueError("matmul: operands must have at least one dimension")
    a2 = (1,) + a if len(a) == 1 else a
    b2 = b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ValueError(f"matmul: {a} @ {b}: inner dimensions differ")
    out = broadcast_shape(a2[:-2], b2[:-2]) + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def conv2d_shape(x: Shape, w: Shape, stride: Shape, padding: Shape) -> Shape:
    if len(x) != 4 or len(w) != 4:
        raise ValueError(f"conv2d: input {x} must be [N,C,H,W] and weight {w} [O,C,kh,kw]")
    if x[1] != w[1]:
        raise ValueError(f"conv2d: input has {x[1]} channels, weight expects {w[1]}")
    h = (x[2] + 2 * padding[0] - w[2]) // stride[0] + 1
    wd = (x[3] + 2 * padding[1] - w[3]) // stride[1] + 1
    if h <= 0 or wd <= 0:
        raise ValueError(f"conv2d: kernel {w[2:]} larger than padded input {x[2:]}")
    return (x[0], w[0], h, wd)


def product_shape(kind: str, x: Shape, y: Shape, params: dict | None = None) -> Shape:
    """The shape of x o y for kind "mul" (broadcast), "matmul" or "conv2d" (ValueError
    when the operands do not fit)."""
    params = params or {}
    if kind == "mul":
        return broadcast_shape(x, y)
    if kind == "matmul":
        return matmul_shape(x, y)
    if kind == "conv2d":
        return conv2d_shape(x, y, tuple(params.get("stride", (1, 1))),
                            tuple(params.get("padding", (0, 0))))
    raise ValueError(f"unknown product kind {kind!r}")


def cut(flat: np.ndarray, shapes) -> list[np.ndarray]:
    """Tensors of `shapes` from one flat buffer, back to back (views)."""
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        out.append(flat[start:start + size].reshape(shape))
        start += size
    return out
