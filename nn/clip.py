"""Per-microbatch L2 clipping on shares, for DP-SGD: g_j * min(1, C / ||g_j||), computed
without revealing any g_j or its norm, and with a result whose norm is at most C even
after fixed-point error, whatever the gradients (so the sensitivity DP-SGD's noise is
calibrated to holds exactly).

Steps, for microbatch gradients stacked as [m, D] (D = all parameters):
1. clamp every coordinate to [-C, C] (one batched comparison). A no-op for gradients of
   norm <= C; it bounds ||g_j|| by C sqrt(D), which keeps the squared norm inside the
   ring's safe range and inv_sqrt's domain even for adversarially large gradients.
2. s_j = g_j . g_j by one batched matrix product (one truncation per microbatch, not
   per coordinate), scaled by the public 4^-k that brings C^2 D below 4^8.
3. factor_j = min(1, C' 2^-k inv_sqrt(s_j)) (one ReLU), with C' slightly below C by the
   worst-case fixed-point error (`effective_clip`); below inv_sqrt's domain the factor
   saturates at >= 1, which is the right answer there.
4. g_j * factor_j.
Rounds: 8 + 2 + 1 (if k > 0) + 49 + 1 + 8 + 2 = about 71, whatever m and D.
"""

from __future__ import annotations

import math

import numpy as np

import mpc

ULP = 2.0 ** -16
INV_SQRT_TOP = 4.0 ** 8  # mpc.inv_sqrt's domain is [4^-5, 4^8)
INV_SQRT_REL_ERR = 5e-5  # plus 4 units (mpc.inv_sqrt's docstring)


def _scale_exponent(clip: float, size: int) -> int:
    """The k of step 2: C^2 D 4^-k < 4^8."""
    return max(0, math.ceil(math.log(clip * clip * size / INV_SQRT_TOP, 4) + 1e-12))


def effective_clip(clip: float, size: int) -> float:
    """C' of step 3: the clip to aim at so that the clipped norm stays <= C.

    Bound on the result's norm for any input (units ULP = 2^-16, k from step 2):
    C' (1 + 5e-5 + 2e-6) (1 + 4^(k+1) ULP / C^2) + ULP sqrt(D) (C (4 C 2^-k + 1) + 1):
    inv_sqrt's relative and absolute error, the truncations of s and of the factor, and
    one unit per coordinate in the last product, with ||g|| <= C sqrt(D) after step 1.
    """
    k = _scale_exponent(clip, size)
    absolute = ULP * math.sqrt(size) * (clip * (4 * clip * 2.0 ** -k + 1) + 1)
    relative = (1 + INV_SQRT_REL_ERR + 2e-6) * (1 + 4.0 ** (k + 1) * ULP / clip ** 2)
    target = (clip - absolute) / relative
    if target < clip / 2:
        raise ValueError(f"l2_norm_clip {clip} is too small for fixed point with {size} "
                         f"parameters (its error would exceed half of it)")
    return target


def clip_microbatches(grads, l2_norm_clip: float):
    """Each [m, ...] secret gradient with its microbatch axis first, clipped jointly:
    microbatch j's gradient across all tensors has L2 norm <= l2_norm_clip afterwards.
    Example:
        clipped = clip_microbatches([w_grads, b_grads], 1.0)   # [m, in, out], [m, out]
    """
    m = grads[0].shape[0]
    if any(g.shape[0] != m for g in grads):
        raise ValueError(f"microbatch axes differ: {[g.shape for g in grads]}")
    flat = mpc.concatenate([g.reshape(m, -1) for g in grads], axis=1)  # [m, D]
    size = flat.shape[1]
    c = float(l2_norm_clip)
    if not 0 < c * c * size < 2.0 ** 30:
        raise ValueError(f"need 0 < l2_norm_clip^2 * parameters < 2^30 (the squared norm's "
                         f"fixed-point range), got {c}^2 * {size}")
    k = _scale_exponent(c, size)
    over = mpc.stack([flat - c, -flat - c]).relu()  # both sides in one comparison
    flat = flat - over[0] + over[1]
    sq = flat.reshape(m, 1, size) @ flat.reshape(m, size, 1)
    if k:
        sq = sq * (4.0 ** -k)
    factor = mpc.inv_sqrt(sq.reshape(m, 1)) * (effective_clip(c, size) * 2.0 ** -k)
    factor = factor - (factor - 1.0).relu()
    clipped = flat * factor.broadcast_to(flat.shape)
    bounds = np.cumsum([int(np.prod(g.shape[1:])) for g in grads])
    starts = np.concatenate([[0], bounds[:-1]])
    return [clipped[:, int(s):int(e)].reshape(g.shape)
            for g, s, e in zip(grads, starts, bounds)]
