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

    Backward: dW = x^T @ g, db = sum_batch g, dx = g @ W^T (two secret matrix products,
    independent, so they share rounds when the caller batches them)."""

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

    def backward(self, grad):
        self.weight.grad = self._x.T @ grad
        self.bias.grad = grad.sum(axis=0)
        return grad @ self.weight.value.T


class ReLU(Module):
    """max(x, 0); backward multiplies by the derivative bit kept from the forward pass."""

    def forward(self, x):
        out, self._mask = x.relu(with_grad=True)
        return out

    def backward(self, grad):
        return grad * self._mask


class Sigmoid(Module):
    """1/(1 + e^-x); backward: g * s * (1 - s)."""

    def forward(self, x):
        self._s = mpc.sigmoid(x)
        return self._s

    def backward(self, grad):
        return grad * (self._s - self._s.square())


class Flatten(Module):
    """[batch, ...] -> [batch, features]."""

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
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

    def backward(self, grad):
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad
