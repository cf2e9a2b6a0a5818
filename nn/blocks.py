"""Dropout, residual blocks and global average pooling."""

from __future__ import annotations

import mpc
from nn.module import Module


class Dropout(Module):
    """In training, each element is kept with probability 1 - p and scaled by 1/(1 - p)
    (inverted dropout, as PyTorch); in evaluation (model.eval()) the identity.

    The mask is secret: mpc.bernoulli combines every party's randomness, so no party (nor
    n - 1 of them) knows which units were dropped. A public mask would show every party
    which units each example used and which gradient entries are zero: information about
    the training run outside what the protocol (and a DP analysis) accounts for. Keeping
    it secret costs 7 rounds a forward pass.
    Forward: 7 (the mask, mpc.bernoulli) + 2 rounds. Backward: g * mask, 2 rounds.
    P(keep) is mpc.exact_probability(1 - p); the scale 1/(1 - p) is encoded to one unit.
    Example: nn.Sequential(nn.Linear(ctx, 64, 64), nn.ReLU(), nn.Dropout(ctx, 0.5), ...)
    """

    def __init__(self, ctx, p: float = 0.5):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1) (the probability of dropping a "
                             f"unit), got {p}")
        self.ctx, self.p = ctx, float(p)
        self._mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        self._mask = mpc.bernoulli(x.ctx, x.shape, 1.0 - self.p, value=1.0 / (1.0 - self.p))
        return x * self._mask

    def backward(self, grad, input_grad=True):
        return grad if self._mask is None else grad * self._mask


class Residual(Module):
    """y = x + f(x) for a module f whose output has its input's shape (a ResNet block's
    skip connection). Backward: g + f.backward(g); no rounds of its own.
    Example: nn.Residual(nn.Sequential(nn.Linear(ctx, 16, 16), nn.ReLU()))"""

    def __init__(self, module: Module):
        if not isinstance(module, Module):
            raise TypeError(f"Residual wraps a Module, got {type(module).__name__}")
        self.module = module

    def parameters(self):
        return self.module.parameters()

    def forward(self, x):
        out = self.module(x)
        if out.shape != x.shape:
            raise mpc.ShapeError(f"Residual: the wrapped {type(self.module).__name__} maps "
                                 f"{x.shape} to {out.shape}; y = x + f(x) needs equal shapes")
        return x + out

    def backward(self, grad, input_grad=True):
        inner = self.module.backward(grad, input_grad=input_grad)
        return grad + inner if input_grad else None


class GlobalAvgPool2d(Module):
    """[N, C, H, W] -> [N, C, 1, 1], the mean over each channel's H x W (ONNX's
    GlobalAveragePool; torch.nn.AdaptiveAvgPool2d(1)); keepdims=False gives [N, C].
    Forward: 1 round (the division). Backward: g / (H W) spread back, 1 round."""

    def __init__(self, keepdims: bool = True):
        self.keepdims = keepdims

    def forward(self, x):
        if x.ndim != 4:
            raise mpc.ShapeError(f"GlobalAvgPool2d: input of shape {x.shape}; expected "
                                 f"[N, C, H, W]")
        self._shape = x.shape
        return x.mean(axis=(2, 3), keepdims=self.keepdims)

    def backward(self, grad, input_grad=True):
        n, c, h, w = self._shape
        return (grad / (h * w)).reshape(n, c, 1, 1).broadcast_to(self._shape)
