"""BatchNorm1d, BatchNorm2d and LayerNorm on shares.

All three compute y = gamma (x - mean) / sqrt(var + eps) + beta, with the statistics over
a batch (BatchNorm, per channel) or over each example's last dimensions (LayerNorm).

The inverse square root is mpc.inv_sqrt: for var + eps in [4^-5, 4^8) (about 9.8e-4 to
65536) its error is <= 4 units + 5e-5 / sqrt(var + eps) (units of 2^-16); below 4^-5 it
saturates at 32, as if var + eps were 4^-5. So:
- eps barely matters: PyTorch's 1e-5 encodes as one unit (1.5e-5), below the domain's
  floor; what keeps near-constant features finite is that floor, an effective eps of
  about 1e-3 for variances below it (their outputs are scaled by 32, not 1/sqrt(eps)).
- The statistics carry fixed-point error of a few units, so xhat's relative error is
  about 5e-5 + (a few units) / (2 var): 1e-4 at var = 1, 2% at var = 1e-3. Inputs
  should have variances well above 1e-3 (standardise them), and below 65536 with
  |x - mean| < 181 (its square must stay in the fixed-point range).
"""

from __future__ import annotations

import numpy as np

import mpc
from nn.module import Buffer, Module, Parameter


def mul_many(pairs):
    """[a_i * b_i] for several pairs of equal-shaped secret tensors in the rounds of one
    product (2): flattened into one vector. Example: gw, gx = mul_many([(g, x), (g, w)])"""
    a = mpc.concatenate([x.reshape(-1) for x, _ in pairs])
    b = mpc.concatenate([y.reshape(-1) for _, y in pairs])
    flat, out, start = a * b, [], 0
    for x, _ in pairs:
        out.append(flat[start:start + x.size].reshape(x.shape))
        start += x.size
    return out


class _Normalization(Module):
    """The shared forward and backward; subclasses say over which axes (stats_axes) the
    statistics go and how gamma and beta broadcast (param_view)."""

    eps: float

    def _affine_init(self, ctx, shape) -> None:
        self.weight = Parameter(mpc.share_public(ctx, np.ones(shape)))
        self.bias = Parameter(mpc.share_public(ctx, np.zeros(shape)))

    def _check(self, x) -> None:
        raise NotImplementedError

    def stats_axes(self, x) -> tuple[int, ...]:
        raise NotImplementedError

    def param_view(self, x) -> tuple[int, ...]:
        raise NotImplementedError

    def parameters(self):
        return [self.weight, self.bias]

    def _batch_forward(self, x):
        """Normalise with the batch's own statistics; keeps xhat, 1/std for backward.
        Rounds: 1 (mean) + 2 + 1 (variance) + 49 (inv_sqrt) + 2 (xhat) + 2 (affine) = 57."""
        axes = self.stats_axes(x)
        mean = x.mean(axis=axes, keepdims=True)
        centred = x - mean.broadcast_to(x.shape)
        var = centred.square().mean(axis=axes, keepdims=True)
        inv = mpc.inv_sqrt(var + self.eps)
        self._xhat = centred * inv.broadcast_to(x.shape)
        self._inv, self._count = inv, x.size // inv.size
        view = self.param_view(x)
        gamma = self.weight.value.reshape(view).broadcast_to(x.shape)
        self._gamma = gamma
        return self._xhat * gamma + self.bias.value.reshape(view).broadcast_to(x.shape), \
            mean, var

    def _batch_backward(self, grad, input_grad):
        """dgamma = sum g xhat, dbeta = sum g over the batch axes; with dxhat = g gamma,
        dx = (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) / std over the statistics' axes.
        Rounds: 2 (g gamma, g xhat together) + 2 + 1 (both means) + 2 + 2 = 9; 2 without
        the input gradient."""
        axes, view = self.stats_axes(grad), self.param_view(grad)
        batch_axes = tuple(a for a in range(grad.ndim) if view[a] == 1)
        dxhat, g_xhat = mul_many([(grad, self._gamma), (grad, self._xhat)])
        self.weight.grad = g_xhat.sum(axis=batch_axes).reshape(self.weight.value.shape)
        self.bias.grad = grad.sum(axis=batch_axes).reshape(self.bias.value.shape)
        if not input_grad:
            return None
        product = dxhat * self._xhat
        sums = mpc.stack([dxhat.sum(axis=axes, keepdims=True),
                          product.sum(axis=axes, keepdims=True)]) / self._count
        inner = dxhat - sums[0].broadcast_to(grad.shape) - \
            self._xhat * sums[1].broadcast_to(grad.shape)
        return inner * self._inv.broadcast_to(grad.shape)


class _BatchNorm(_Normalization):
    """Batch normalisation (Ioffe and Szegedy, ICML 2015) over axis 1, the channels.

    Training (model.train()): the batch's statistics, see the module docstring; the
    running statistics move as in PyTorch, r <- (1 - momentum) r + momentum s, with the
    unbiased variance, on shares (1 round for both: a product by public reals).
    Forward: 58 rounds. Backward: 9 (2 without the input gradient).
    Inference (model.eval()): y = (x - running_mean) gamma / sqrt(running_var + eps) + beta.
    Forward: 49 + 2 + 2 = 53 rounds. Backward (for fine-tuning with frozen statistics):
    dx = g gamma / std, dgamma = sum g (x - running_mean) / std: 4 rounds.

    Attributes as PyTorch's: weight (gamma, ones), bias (beta, zeros), running_mean
    (zeros), running_var (ones), the last two Buffers, secret from the first update.
    """

    dims: tuple[int, ...]

    def __init__(self, ctx, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        if not (isinstance(num_features, (int, np.integer)) and num_features > 0):
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self._affine_init(ctx, (self.num_features,))
        self.running_mean = Buffer(mpc.share_public(ctx, np.zeros(self.num_features)))
        self.running_var = Buffer(mpc.share_public(ctx, np.ones(self.num_features)))

    def _check(self, x) -> None:
        name = type(self).__name__
        if x.ndim not in self.dims or x.shape[1] != self.num_features:
            raise mpc.ShapeError(f"{name}({self.num_features}): input of shape {x.shape}; "
                                 f"expected {' or '.join(f'{d}-D' for d in self.dims)} "
                                 f"with {self.num_features} channels on axis 1")
        if self.training and x.size // x.shape[1] < 2:
            raise ValueError(f"{name}: training needs more than one value per channel "
                             f"(input of shape {x.shape}); use eval() for one example")

    def stats_axes(self, x):
        return tuple(a for a in range(x.ndim) if a != 1)

    def param_view(self, x):
        return (1, self.num_features) + (1,) * (x.ndim - 2)

    def forward(self, x):
        self._check(x)
        if not self.training:
            return self._running_forward(x)
        y, mean, var = self._batch_forward(x)
        count = self._count
        c = self.num_features
        stats = mpc.stack([self.running_mean.value, mean.reshape(c),
                           self.running_var.value, var.reshape(c)])
        m = self.momentum
        moved = stats * np.array([[1 - m], [m], [1 - m], [m * count / (count - 1)]])
        self.running_mean.value = moved[0] + moved[1]
        self.running_var.value = moved[2] + moved[3]
        return y

    def _running_forward(self, x):
        view = self.param_view(x)
        inv = mpc.inv_sqrt(self.running_var.value + self.eps)
        self._scale = (self.weight.value * inv).reshape(view).broadcast_to(x.shape)
        self._centred = x - self.running_mean.value.reshape(view).broadcast_to(x.shape)
        self._inv_eval = inv
        shift = self.bias.value.reshape(view).broadcast_to(x.shape)
        return self._centred * self._scale + shift

    def backward(self, grad, input_grad=True):
        if self.training:
            return self._batch_backward(grad, input_grad)
        axes = self.stats_axes(grad)
        dx, g_centred = mul_many([(grad, self._scale), (grad, self._centred)])
        self.weight.grad = g_centred.sum(axis=axes) * self._inv_eval
        self.bias.grad = grad.sum(axis=axes)
        return dx if input_grad else None


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of [N, C] or [N, C, L] inputs; see _BatchNorm for rounds.
    Example: nn.Sequential(nn.Linear(ctx, 30, 16), nn.BatchNorm1d(ctx, 16), nn.ReLU())"""

    dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of [N, C, H, W] inputs (statistics over N, H, W per channel);
    see _BatchNorm for rounds. Example: nn.BatchNorm2d(ctx, 8) after an nn.Conv2d(ctx, 1, 8, 3)"""

    dims = (4,)


class LayerNorm(_Normalization):
    """Layer normalisation (Ba, Kiros and Hinton, 2016) over each example's last
    dimensions `normalized_shape`, with elementwise weight (ones) and bias (zeros) of that
    shape, as torch.nn.LayerNorm. The same in training and evaluation.
    Forward: 57 rounds. Backward: 9 (2 without the input gradient).
    Example: nn.LayerNorm(ctx, 64) on [batch, 64] or [batch, tokens, 64]"""

    def __init__(self, ctx, normalized_shape, eps: float = 1e-5):
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) \
            else tuple(normalized_shape)
        if not shape or any(not isinstance(d, (int, np.integer)) or d < 1 for d in shape):
            raise ValueError(f"normalized_shape must be a positive int or a tuple of them, "
                             f"got {normalized_shape!r}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.normalized_shape, self.eps = tuple(int(d) for d in shape), float(eps)
        self._affine_init(ctx, self.normalized_shape)

    def _check(self, x) -> None:
        k = len(self.normalized_shape)
        if x.ndim <= k or tuple(x.shape[-k:]) != self.normalized_shape:
            raise mpc.ShapeError(f"LayerNorm{self.normalized_shape}: input of shape {x.shape}"
                                 f"; its last dimensions must be {self.normalized_shape}")

    def stats_axes(self, x):
        return tuple(range(x.ndim - len(self.normalized_shape), x.ndim))

    def param_view(self, x):
        return (1,) * (x.ndim - len(self.normalized_shape)) + self.normalized_shape

    def forward(self, x):
        self._check(x)
        return self._batch_forward(x)[0]

    def backward(self, grad, input_grad=True):
        return self._batch_backward(grad, input_grad)
