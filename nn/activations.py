"""Activations beyond ReLU and Sigmoid: Tanh, GELU, Softmax, LogSoftmax. Each keeps what
its backward needs from the forward pass; rounds are per call, whatever the shape."""

from __future__ import annotations

import mpc
from nn.module import Module


class Tanh(Module):
    """tanh(x) by mpc.tanh (error <= 10 units, 48 rounds); backward g (1 - t^2): 4 rounds."""

    def forward(self, x):
        self._t = mpc.tanh(x)
        return self._t

    def backward(self, grad, input_grad=True):
        return grad * (1.0 - self._t.square())


class GELU(Module):
    """GELU(x) = x Phi(x) (exact form) by mpc.gelu's piecewise-linear approximation:
    error <= 0.0016, and its derivative's approximation (<= 0.0028) from the same
    comparison. Forward: 9 rounds. Backward: g GELU'(x), 2 rounds."""

    def forward(self, x):
        out, self._grad = mpc.gelu(x, with_grad=True)
        return out

    def backward(self, grad, input_grad=True):
        return grad * self._grad


def _check_axis(name: str, axis: int, x) -> None:
    if not -x.ndim <= axis < x.ndim:
        raise mpc.ShapeError(f"{name}(axis={axis}): input of shape {x.shape} has no such axis")


class Softmax(Module):
    """softmax along `axis` by mpc.softmax (error <= 6 units; 91 rounds for 8 classes,
    8 ceil(log2 n) + 67 in general). Backward: s (g - sum(g s)), 4 rounds.
    For training a classifier use a loss on the logits (nn.SoftmaxCrossEntropyLoss)."""

    def __init__(self, axis: int = -1):
        self.axis = axis

    def forward(self, x):
        _check_axis("Softmax", self.axis, x)
        self._s = mpc.softmax(x, axis=self.axis)
        return self._s

    def backward(self, grad, input_grad=True):
        dot = (grad * self._s).sum(axis=self.axis, keepdims=True)
        return self._s * (grad - dot.broadcast_to(grad.shape))


class LogSoftmax(Module):
    """log softmax along `axis`: (x - max) - log(sum(exp(x - max))), the input of
    nn.NLLLoss. Error: the log's (<= 12 units, rarely above 4: mpc.log) and the exp
    sum's relative to the sum (>= 1; each exp <= 5 units); at most 4 units measured
    over tests/test_layers_deep.py's draws.
    Forward: 8 ceil(log2 n) (max) + 20 (exp) + 35 (log) rounds. Backward:
    g - exp(out) sum(g), 22 rounds (exp of out <= 0 and one product)."""

    def __init__(self, axis: int = -1):
        self.axis = axis

    def forward(self, x):
        _check_axis("LogSoftmax", self.axis, x)
        top = x.max(axis=self.axis)
        shape = list(x.shape)
        shape[self.axis] = 1
        shifted = x - top.reshape(shape).broadcast_to(x.shape)
        total = mpc.exp_nonpositive(shifted).sum(axis=self.axis, keepdims=True)
        self._out = shifted - mpc.log(total).broadcast_to(x.shape)
        return self._out

    def backward(self, grad, input_grad=True):
        s = mpc.exp_nonpositive(self._out)
        total = grad.sum(axis=self.axis, keepdims=True).broadcast_to(grad.shape)
        return grad - s * total
