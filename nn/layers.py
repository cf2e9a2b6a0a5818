"""Layers with forward and backward on shares: Linear, ReLU, Sigmoid, Flatten, Sequential."""

from __future__ import annotations

import math

import numpy as np

import mpc
from nn.module import Module, Parameter


class Linear(Module):
    """y = x @ W + b, x of shape [batch, in]. Weights start from a seeded uniform
    initialiser (public, as in every framework's reproducible init) or from given arrays,
    and are secret from the first update on.

    Backward: dW = x^T @ g, db = sum_batch g, dx = g @ W^T: two secret matrix products in
    the 2 rounds of one (mpc.matmul_many); only dW when the input needs no gradient, as
    the first layer's data does not."""

    def __init__(self, ctx, in_features: int, out_features: int, *, seed: int = 0,
                 weight: np.ndarray | None = None, bias: np.ndarray | None = None):
        rng = np.random.default_rng(seed)
        bound = 1 / math.sqrt(in_features)
        if weight is None:
            weight = rng.uniform(-bound, bound, (in_features, out_features))
        if bias is None:
            bias = rng.uniform(-bound, bound, (out_features,))
        self.weight = Parameter(mpc.share_public(ctx, weight))
        self.bias = Parameter(mpc.share_public(ctx, bias))
        self._x = None

    def parameters(self):
        return [self.weight, self.bias]

    def forward(self, x):
        self._x = x
        return x @ self.weight.value + self.bias.value

    def backward(self, grad, input_grad=True):
        self.bias.grad = grad.sum(axis=0)
        if not input_grad:
            self.weight.grad = self._x.T @ grad
            return None
        self.weight.grad, grad_x = mpc.matmul_many([(self._x.T, grad),
                                                    (grad, self.weight.value.T)])
        return grad_x


class ReLU(Module):
    """max(x, 0); backward multiplies by the derivative bit kept from the forward pass."""

    def forward(self, x):
        out, self._mask = x.relu(with_grad=True)
        return out

    def backward(self, grad, input_grad=True):
        return grad * self._mask


class Sigmoid(Module):
    """1/(1 + e^-x); backward: g * s * (1 - s)."""

    def forward(self, x):
        self._s = mpc.sigmoid(x)
        return self._s

    def backward(self, grad, input_grad=True):
        return grad * (self._s - self._s.square())


class Flatten(Module):
    """[batch, ...] -> [batch, features]."""

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad, input_grad=True):
        return grad.reshape(self._shape)


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse."""

    def __init__(self, *layers: Module):
        self.layers = list(layers)

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad, input_grad=True):
        for i in reversed(range(len(self.layers))):
            grad = self.layers[i].backward(grad, input_grad=input_grad or i > 0)
        return grad


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _check_images(name: str, x, channels: int | None = None) -> None:
    """ShapeError unless x is [N, C, H, W] (with C = channels if given)."""
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        want = f"C = {channels}" if channels is not None else "channels on axis 1"
        raise mpc.ShapeError(f"{name}: input of shape {x.shape}; expected [N, C, H, W] with "
                             f"{want} (reshape flat images first, e.g. x.reshape(-1, 1, 8, 8))")


class Conv2d(Module):
    """2-D convolution [N,C,H,W] -> [N,O,H',W'] with stride and padding, as a matrix
    product of the weight [O, C*kh*kw] with the input's patches (im2col is local on
    shares). Backward: dW = sum_n g_n @ cols_n^T, dx = col2im(W^T @ g)."""

    def __init__(self, ctx, in_channels: int, out_channels: int, kernel_size, *,
                 stride=1, padding=0, seed: int = 0, weight: np.ndarray | None = None,
                 bias: np.ndarray | None = None):
        self.kernel, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        fan_in = in_channels * self.kernel[0] * self.kernel[1]
        rng, bound = np.random.default_rng(seed), 1 / math.sqrt(fan_in)
        if weight is None:
            weight = rng.uniform(-bound, bound, (out_channels, in_channels) + self.kernel)
        if bias is None:
            bias = rng.uniform(-bound, bound, (out_channels,))
        self.weight = Parameter(mpc.share_public(ctx, weight))
        self.bias = Parameter(mpc.share_public(ctx, bias))

    def parameters(self):
        return [self.weight, self.bias]

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1

    def forward(self, x):
        _check_images("Conv2d", x, self.weight.value.shape[1])
        self._shape = x.shape
        self._cols = x.im2col(self.kernel, self.stride, self.padding)  # [N, C*kh*kw, L]
        w2 = self.weight.value.reshape(self.weight.value.shape[0], -1)
        out = w2 @ self._cols + self.bias.value.reshape(1, -1, 1)
        return out.reshape(x.shape[0], w2.shape[0], *self._out_hw(*x.shape[2:]))

    def backward(self, grad, input_grad=True):
        n, o = grad.shape[:2]
        g = grad.reshape(n, o, -1)
        w_shape = self.weight.value.shape
        self.bias.grad = g.sum(axis=(0, 2))
        cols_t = self._cols.transpose(0, 2, 1)
        if not input_grad:
            self.weight.grad = (g @ cols_t).sum(axis=0).reshape(w_shape)
            return None
        w2 = self.weight.value.reshape(o, -1)
        per_image, spread = mpc.matmul_many([(g, cols_t), (w2.T, g)])  # 2 rounds for both
        self.weight.grad = per_image.sum(axis=0).reshape(w_shape)
        return spread.col2im(self._shape, self.kernel, self.stride, self.padding)


class AvgPool2d(Module):
    """Mean over kernel windows (stride defaults to the kernel); local but for one
    division by kh*kw. Backward spreads g / (kh*kw) back over each window."""

    def __init__(self, kernel_size, stride=None):
        self.kernel = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)

    def forward(self, x):
        _check_images("AvgPool2d", x)
        n, c, h, w = self._shape = x.shape
        cols = x.reshape(n * c, 1, h, w).im2col(self.kernel, self.stride)
        self._cols_shape = cols.shape
        out_h = (h - self.kernel[0]) // self.stride[0] + 1
        out_w = (w - self.kernel[1]) // self.stride[1] + 1
        return cols.mean(axis=1).reshape(n, c, out_h, out_w)

    def backward(self, grad, input_grad=True):
        n, c, h, w = self._shape
        size = self.kernel[0] * self.kernel[1]
        per_window = (grad / size).reshape(n * c, 1, -1)
        spread = mpc.concatenate([per_window] * size, axis=1)
        return spread.col2im((n * c, 1, h, w), self.kernel, self.stride).reshape(n, c, h, w)


class MaxPool2d(Module):
    """Max over kernel windows; backward routes g to the window's maximum (the one-hot of
    argmax; on ties every maximal position gets g)."""

    def __init__(self, kernel_size, stride=None):
        self.kernel = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)

    def forward(self, x):
        _check_images("MaxPool2d", x)
        n, c, h, w = self._shape = x.shape
        cols = x.reshape(n * c, 1, h, w).im2col(self.kernel, self.stride)  # [NC, k, L]
        top = cols.max(axis=1)
        self._onehot = cols >= top.reshape(top.shape[0], 1, top.shape[1])
        out_h = (h - self.kernel[0]) // self.stride[0] + 1
        out_w = (w - self.kernel[1]) // self.stride[1] + 1
        return top.reshape(n, c, out_h, out_w)

    def backward(self, grad, input_grad=True):
        n, c, h, w = self._shape
        g = grad.reshape(n * c, 1, -1)
        routed = self._onehot * g.broadcast_to(self._onehot.shape)
        return routed.col2im((n * c, 1, h, w), self.kernel, self.stride).reshape(n, c, h, w)
