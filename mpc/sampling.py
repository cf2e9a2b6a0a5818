"""Secret random samples: Bernoulli bits nobody knows (the protocol's bernoulli_bits), for
sampling that must stay hidden from every party, the dealer and the result's recipient
(DP-SGD's Poisson subsampling, nn.dp)."""

from __future__ import annotations

import math

import numpy as np

from mpc.protocols.dealer import bernoulli as _bernoulli
from mpc.tensor import SecretTensor

exact_probability = _bernoulli.exact_probability  # p as both protocols sample it


def bernoulli(ctx, shape, p: float, value: float = 1.0) -> SecretTensor:
    """[value * b] of `shape` in fixed point, b = 1 with probability exact_probability(p)
    independently per element, known to no party and not to the dealer (`value` scales
    exactly, with no truncation: dropout's keep mask is bernoulli(ctx, s, 0.9, 1 / 0.9)).
    Rounds: 7. Comm: 31.625 bytes per element to each peer (dealer protocol:
    mpc.protocols.dealer.bernoulli); 23.625 bytes per element from each party
    (replicated: mpc.protocols.replicated.bernoulli).
    Example:
        mask = mpc.bernoulli(ctx, (1000,), 0.05)   # a secret Poisson sample of 1000 rows
    """
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"bernoulli: negative dimension in shape {shape}")
    with ctx.operation("bernoulli"):
        bits = ctx.protocol.bernoulli_bits(ctx, math.prod(shape), p)
    scale = ctx.fixed.encode(value)
    return SecretTensor(ctx, ctx.protocol.local(lambda b: b.reshape(shape) * scale, bits))
