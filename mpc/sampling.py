"""Secret random samples: Bernoulli bits nobody knows (mpc.protocols.bernoulli), for
sampling that must stay hidden from every party, the dealer and the result's recipient
(DP-SGD's Poisson subsampling, nn.dp)."""

from __future__ import annotations

import math

import numpy as np

from mpc.protocols import bernoulli as _bernoulli
from mpc.tensor import SecretTensor

exact_probability = _bernoulli.exact_probability


def bernoulli(ctx, shape, p: float, value: float = 1.0) -> SecretTensor:
    """[value * b] of `shape` in fixed point, b = 1 with probability exact_probability(p)
    independently per element, known to no party and not to the dealer (`value` scales
    exactly, with no truncation: dropout's keep mask is bernoulli(ctx, s, 0.9, 1 / 0.9)).
    Rounds: 7. Comm: 31.625 bytes per element to each peer (mpc.protocols.bernoulli).
    Example:
        mask = mpc.bernoulli(ctx, (1000,), 0.05)   # a secret Poisson sample of 1000 rows
    """
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"bernoulli: negative dimension in shape {shape}")
    with ctx.operation("bernoulli"):
        bits = _bernoulli.bernoulli_bits(ctx, math.prod(shape), p)
    return SecretTensor(ctx, bits.reshape(shape) * ctx.fixed.encode(value))
