"""SecretTensor: a secret-shared fixed-point array that behaves like a numpy array.

Each party holds a SecretTensor wrapping its own share (`.share`, uint64, in the layout of
the context's protocol) and the Context. Operators check their operands and hand off to the
protocol (`ctx.protocol`, mpc.protocols.base.Protocol) in one line; nothing here knows which
protocol runs. Public operands (numbers, numpy arrays) are encoded on the fly; integer-typed
public operands multiply without truncation.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from mpc import kernels
from mpc.fixedpoint import as_reals
from mpc.noise import add_noise
from mpc.ring import DTYPE
from mpc.shapes import matmul_shape, product_shape


class ShapeError(ValueError):
    """Operands whose shapes do not fit the operation."""


class SecretTensor:
    """[x]: this party's share of a fixed-point tensor. See module docstring."""

    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(self, ctx, share: np.ndarray):
        share = np.asarray(share)
        if share.dtype != DTYPE:
            raise TypeError(f"a share must be uint64, got {share.dtype}")
        self.ctx = ctx
        self.share = share

    # ------------------------------------------------------------ array-like basics
    @property
    def shape(self) -> tuple[int, ...]:
        return self.ctx.protocol.shape(self.share)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def frac_bits(self) -> int:
        return self.ctx.fixed.frac_bits

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d SecretTensor")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"SecretTensor(shape={self.shape}, frac_bits={self.frac_bits}, party={self.ctx.pid})"

    def _new(self, share: np.ndarray) -> "SecretTensor":
        return SecretTensor(self.ctx, np.asarray(share, dtype=DTYPE))

    def _local(self, fn, *shares) -> "SecretTensor":
        """fn on the share's components (and on those of `shares`): a local linear map."""
        return self._new(self.ctx.protocol.local(fn, self.share, *shares))

    # ------------------------------------------------------------ linear, local
    def __add__(self, other):
        if isinstance(other, SecretTensor):
            return self._local(np.add, _same_ctx(self, other).share)
        return self._new(self.ctx.protocol.add_public(self.ctx, self.share, _encode(self, other)))

    __radd__ = __add__

    def __neg__(self):
        return self._local(np.negative)

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    # ------------------------------------------------------------ products
    def __mul__(self, other):
        if isinstance(other, SecretTensor):
            return self._bilinear("mul", other)
        if _is_integer(other):
            factor = _ring_int(other)
            return self._local(lambda s: s * factor)
        encoded = _encode(self, other)
        return self._scaled(self._local(lambda s: s * encoded))

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, SecretTensor):
            from mpc.functions import divide  # functions builds on this module
            return divide(self, other)
        divisor = as_reals(other)
        if np.any(divisor == 0):
            raise ZeroDivisionError("division of a SecretTensor by zero")
        if _is_integer(other) and np.ndim(other) == 0:
            quotient = self._divide_by_int(abs(int(other)))
            return quotient if int(other) > 0 else -quotient
        return self * (1.0 / divisor)

    def __matmul__(self, other):
        if isinstance(other, SecretTensor):
            return self._bilinear("matmul", other)
        encoded = _encode(self, other)
        return self._scaled(self._local(lambda s: _matmul(s, encoded)))

    def __rmatmul__(self, other):
        encoded = _encode(self, other)
        return self._scaled(self._local(lambda s: _matmul(encoded, s)))

    def square(self) -> "SecretTensor":
        """x * x: cheaper than a multiplication (see the protocol's square)."""
        with self.ctx.operation("square"):
            return self._new(self.ctx.protocol.square(self.ctx, self.share, self.frac_bits))

    def conv2d(self, weight, stride=1, padding=0) -> "SecretTensor":
        """2-D cross-correlation of [N,C,H,W] by [O,C,kh,kw] (weight secret or public)."""
        params = {"stride": list(_pair(stride)), "padding": list(_pair(padding))}
        if isinstance(weight, SecretTensor):
            return self._bilinear("conv2d", weight, params)
        w = _encode(self, weight)
        try:
            product_shape("conv2d", self.shape, w.shape, params)
        except ValueError as exc:
            raise ShapeError(str(exc)) from None
        return self._scaled(self._local(
            lambda s: kernels.conv2d(s, w, stride=tuple(params["stride"]),
                                     padding=tuple(params["padding"]))))

    def _bilinear(self, kind: str, other: "SecretTensor", params=None) -> "SecretTensor":
        _same_ctx(self, other)
        try:
            product_shape(kind, self.shape, other.shape, params)
        except ValueError as exc:
            raise ShapeError(str(exc)) from None
        with self.ctx.operation(kind):
            return self._new(self.ctx.protocol.product(self.ctx, kind, self.share, other.share,
                                                       params, self.frac_bits))

    def _scaled(self, product: "SecretTensor") -> "SecretTensor":
        """Truncate a product with a public fixed-point factor."""
        with self.ctx.operation("mul_public"):
            return self._new(self.ctx.protocol.truncate(self.ctx, product.share, self.frac_bits))

    # ------------------------------------------------------------ comparisons
    def _less_than_zero(self, label: str, select: bool = False):
        """Integer 0/1 shares of [x < 0] (and of x * [x < 0] with `select`), x's shape."""
        proto, shape = self.ctx.protocol, self.shape
        flat = self.reshape(-1).share
        with self.ctx.operation(label):
            bit, picked = proto.less_than_zero(self.ctx, flat, select=select)
        bit = proto.local(lambda c: c.reshape(shape), bit)
        return bit, (proto.local(lambda c: c.reshape(shape), picked) if select else None)

    def _from_bit(self, bit: np.ndarray, negate: bool = False) -> "SecretTensor":
        """Integer 0/1 shares as fixed point 0.0/1.0 (or 1 - bit): exact, local."""
        scale = np.uint64(self.ctx.fixed.scale)
        scaled = self._new(self.ctx.protocol.local(lambda s: s * scale, bit))
        return 1.0 - scaled if negate else scaled

    def __lt__(self, other) -> "SecretTensor":
        """[x < y] as 0.0/1.0; exact (each protocol's compare module: rounds and bytes)."""
        diff = self - other
        return diff._from_bit(diff._less_than_zero("compare")[0])

    def __gt__(self, other) -> "SecretTensor":
        diff = other - self
        return diff._from_bit(diff._less_than_zero("compare")[0])

    def __le__(self, other) -> "SecretTensor":
        diff = other - self
        return diff._from_bit(diff._less_than_zero("compare")[0], negate=True)

    def __ge__(self, other) -> "SecretTensor":
        diff = self - other
        return diff._from_bit(diff._less_than_zero("compare")[0], negate=True)

    def __eq__(self, other) -> "SecretTensor":  # noqa: D105 - elementwise, like numpy
        """[x == y] = 1 - [x < y] - [y < x]: two comparisons in one batch."""
        diff = self - other
        both = concatenate([diff.reshape(-1), (-diff).reshape(-1)])
        bits = both._less_than_zero("compare")[0]
        n, shape = diff.size, diff.shape
        either = self.ctx.protocol.local(lambda b: (b[:n] + b[n:]).reshape(shape), bits)
        return diff._from_bit(either, negate=True)

    def __ne__(self, other) -> "SecretTensor":  # noqa: D105 - elementwise, like numpy
        """[x != y] = [x < y] + [y < x]: the same batch as ==, then 1 - that (local)."""
        return 1 - (self == other)

    def __bool__(self):
        raise TypeError("a SecretTensor has no truth value: it is secret, and `if`, `and`, "
                        "`or`, `not` and bool() would need it opened; reveal it first "
                        "(`x.reveal()`, to every party) or stay secret with "
                        "`mpc.where(condition, a, b)`")

    # == is elementwise and secret, so a SecretTensor cannot be a dict key or set member
    # (and `x in list`, list.index and list.remove raise through __bool__: compare ids)
    __hash__ = None

    def relu(self, with_grad: bool = False):
        """max(x, 0); with `with_grad` also the derivative [x >= 0] as 0.0/1.0.
        One comparison with the product fused in (see compare.less_than_zero)."""
        bit, picked = self._less_than_zero("relu", select=True)
        out = self._local(np.subtract, picked)
        return (out, self._from_bit(bit, negate=True)) if with_grad else out

    def sign(self) -> "SecretTensor":
        """+1.0 where x >= 0, -1.0 where x < 0 (the sign of 0 is +1)."""
        bit = self._less_than_zero("sign")[0]
        return 1.0 - self._from_bit(bit) * 2

    def __abs__(self) -> "SecretTensor":
        _, picked = self._less_than_zero("abs", select=True)
        return self._local(lambda s, p: s - np.uint64(2) * p, picked)

    def abs(self) -> "SecretTensor":
        return self.__abs__()

    def max(self, axis=None) -> "SecretTensor":
        """Maximum over `axis` (all elements if None) by a tree of log2(n) fused ReLUs:
        max(a, b) = b + relu(a - b)."""
        x = self.reshape(-1) if axis is None else self._axis_last(axis)
        while x.shape[-1] > 1:
            pairs = x.shape[-1] // 2
            a, b = x[..., 0:2 * pairs:2], x[..., 1:2 * pairs:2]
            merged = b + (a - b).relu()
            x = concatenate([merged, x[..., 2 * pairs:]], axis=-1) if x.shape[-1] % 2 else merged
        return x[..., 0] if axis is not None else x.reshape(())

    def argmax(self, axis: int = -1) -> "SecretTensor":
        """One-hot [x == max(x)] along `axis` (0.0/1.0, same shape as x); ties mark every
        maximal position. One max tree plus one comparison."""
        moved = self._axis_last(axis)
        top = moved.max(axis=-1)
        onehot = moved._ge_broadcast(top)
        return onehot.transpose(*_inverse_last(self.ndim, axis))

    def _ge_broadcast(self, top: "SecretTensor") -> "SecretTensor":
        diff = self - top.reshape(top.shape + (1,))
        return diff._from_bit(diff._less_than_zero("compare")[0], negate=True)

    def _axis_last(self, axis: int) -> "SecretTensor":
        axis = axis % self.ndim
        order = [a for a in range(self.ndim) if a != axis] + [axis]
        return self.transpose(*order)

    def im2col(self, kernel, stride=1, padding=0) -> "SecretTensor":
        """[N,C,H,W] -> [N, C*kh*kw, H'*W'] patches (local: a rearrangement of shares)."""
        kh, kw = _pair(kernel)
        return self._local(lambda s: kernels.im2col(s, kh, kw, _pair(stride), _pair(padding)))

    def col2im(self, input_shape, kernel, stride=1, padding=0) -> "SecretTensor":
        """Adjoint of im2col: add patches back onto an [N,C,H,W] tensor (local)."""
        kh, kw = _pair(kernel)
        return self._local(lambda s: kernels.col2im(s, tuple(input_shape), kh, kw,
                                                    _pair(stride), _pair(padding)))

    def max_pool2d(self, kernel, stride=None) -> "SecretTensor":
        """2-D max pooling of [N,C,H,W] over kernel windows (stride defaults to kernel)."""
        kh, kw = _pair(kernel)
        sh, sw = _pair(stride if stride is not None else kernel)
        n, c, h, w = self.shape
        cols = self.reshape(n * c, 1, h, w).im2col((kh, kw), (sh, sw))
        out_h, out_w = (h - kh) // sh + 1, (w - kw) // sw + 1
        return cols.max(axis=1).reshape(n, c, out_h, out_w)

    # ------------------------------------------------------------ reductions
    def sum(self, axis=None, keepdims: bool = False) -> "SecretTensor":
        return self._local(lambda s: np.sum(s, axis=axis, keepdims=keepdims, dtype=DTYPE))

    def mean(self, axis=None, keepdims: bool = False) -> "SecretTensor":
        """Sum, then divide by the count with 8 extra bits of precision in 1/count.

        Error: < 1 + count * |mean| / 2^9 units of 2^-f; needs |mean| < 2^(62 - 2f - 8).
        """
        axes = range(self.ndim) if axis is None else np.atleast_1d(axis)
        count = int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axis, keepdims)._divide_by_int(count)

    def _divide_by_int(self, divisor: int, extra_bits: int = 8) -> "SecretTensor":
        bits = self.frac_bits + extra_bits
        factor = np.uint64(round(2 ** bits / divisor))
        scaled = self._local(lambda s: s * factor)
        with self.ctx.operation("mul_public"):
            return self._new(self.ctx.protocol.truncate(self.ctx, scaled.share, bits))

    # ------------------------------------------------------------ shape, local
    def reshape(self, *shape) -> "SecretTensor":
        return self._local(lambda s: s.reshape(*shape))

    def transpose(self, *axes) -> "SecretTensor":
        return self._local(lambda s: s.transpose(*axes))

    @property
    def T(self) -> "SecretTensor":
        return self.transpose()

    def flatten(self) -> "SecretTensor":
        return self.reshape(-1)

    def broadcast_to(self, shape) -> "SecretTensor":
        return self._local(lambda s: np.broadcast_to(s, shape).copy())

    def __getitem__(self, index) -> "SecretTensor":
        return self._local(lambda s: s[index])

    def __setitem__(self, index, value) -> None:
        if not isinstance(value, SecretTensor):
            raise TypeError("assign a SecretTensor (share public values first)")
        self.share = self.ctx.protocol.local(_assigned(index), self.share,
                                             _same_ctx(self, value).share)

    # ------------------------------------------------------------ revealing
    def reveal(self, noise: float | None = None, colluders: int | None = None) -> np.ndarray:
        """Open to every party and decode to float64. One round. With `noise` (a standard
        deviation), each party first adds its own discrete Gaussian: the opened value is
        x + e and no party sees x (mpc.noise.add_noise: `colluders`, the utility cost)."""
        if noise is not None:
            return add_noise(self, noise, colluders).reveal()
        self.ctx.check_range()
        with self.ctx.operation("reveal"):
            return self.ctx.fixed.decode(self.ctx.protocol.open(self.ctx, self.share, "reveal"))

    def reveal_to(self, party: int, noise: float | None = None,
                  colluders: int | None = None) -> np.ndarray | None:
        """Open to `party` only (float64 there, None elsewhere). One round. `noise` and
        `colluders` as for reveal."""
        if noise is not None:
            return add_noise(self, noise, colluders).reveal_to(party)
        self.ctx.check_range()
        with self.ctx.operation("reveal"):
            opened = self.ctx.protocol.open_to(self.ctx, self.share, party, "reveal")
        return None if opened is None else self.ctx.fixed.decode(opened)


# ---------------------------------------------------------------- helpers
def _same_ctx(x: SecretTensor, y: SecretTensor) -> SecretTensor:
    if x.ctx is not y.ctx:
        raise ValueError("operands belong to different contexts (different computations)")
    return y


def _is_integer(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, np.ndarray) and value.dtype.kind in "iu"


def _ring_int(value) -> np.ndarray:
    return np.asarray(value).astype(np.int64).view(DTYPE)


def _encode(x: SecretTensor, value) -> np.ndarray:
    return x.ctx.fixed.encode(value)


def _assigned(index):
    """The component map of x[index] = v: a copy of x with v written in."""
    def assign(s, v):
        out = s.copy()
        out[index] = v
        return out
    return assign


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        matmul_shape(a.shape, b.shape)
    except ValueError as exc:
        raise ShapeError(str(exc)) from None
    return kernels.matmul(a, b)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _inverse_last(ndim: int, axis: int) -> list[int]:
    """The transpose that undoes moving `axis` to the end."""
    axis = axis % ndim
    order = [a for a in range(ndim) if a != axis] + [axis]
    return list(np.argsort(order))


def where(condition: SecretTensor, x, y) -> SecretTensor:
    """condition ? x : y elementwise, for a 0.0/1.0 secret condition: c * (x - y) + y
    (x and y secret or public). One multiplication."""
    if not isinstance(x, SecretTensor):
        x = as_reals(x)
    return condition * (x - y) + y


def matmul_many(pairs) -> list[SecretTensor]:
    """[a_i @ b_i] for several independent pairs of secret tensors in the rounds of one
    product: every masked operand in one opening, every result in one truncation.
    Rounds: 2 (each product alone: 2). Comm: the same bytes as the products one by one.
    Example (a layer's two gradients): dw, dx = mpc.matmul_many([(x.T, g), (g, w.T)])"""
    pairs = [(a, _same_ctx(a, b)) for a, b in pairs]
    ctx = pairs[0][0].ctx
    try:
        for a, b in pairs:
            matmul_shape(a.shape, b.shape)
    except ValueError as exc:
        raise ShapeError(str(exc)) from None
    with ctx.operation("matmul"):
        products = ctx.protocol.products(ctx, "matmul", [(a.share, b.share) for a, b in pairs],
                                         ctx.fixed.frac_bits)
    return [SecretTensor(ctx, p) for p in products]


def concatenate(tensors, axis: int = 0) -> SecretTensor:
    first = tensors[0]
    shares = [_same_ctx(first, t).share for t in tensors]
    return first._new(first.ctx.protocol.local(lambda *s: np.concatenate(s, axis=axis), *shares))


def stack(tensors, axis: int = 0) -> SecretTensor:
    first = tensors[0]
    shares = [_same_ctx(first, t).share for t in tensors]
    return first._new(first.ctx.protocol.local(lambda *s: np.stack(s, axis=axis), *shares))


def conv2d(x: SecretTensor, weight, stride=1, padding=0) -> SecretTensor:
    return x.conv2d(weight, stride=stride, padding=padding)
