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


def clip_microbatches(grads, l2_norm_clip: float, mask=None):
    """Each [m, ...] secret gradient with its microbatch axis first, clipped jointly:
    microbatch j's gradient across all tensors has L2 norm <= l2_norm_clip afterwards
    (and is zero where the secret 0/1 `mask` [m] is 0: one product more).
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
    if mask is not None:
        factor = factor * mask.reshape(m, 1)
    clipped = flat * factor.broadcast_to(flat.shape)
    bounds = np.cumsum([int(np.prod(g.shape[1:])) for g in grads])
    starts = np.concatenate([[0], bounds[:-1]])
    return [clipped[:, int(s):int(e)].reshape(g.shape)
            for g, s, e in zip(grads, starts, bounds)]


# ------------------------------------------------ per-example clipping of Linear layers
def _linear_sizes(shapes, bound: float):
    """For layers of (in, out) sizes and input bound A: the largest per-layer a = |x|^2 + 1
    and d = |delta|^2 / C^2, and s_max / C^2 = sum a d (the squared norm's ceiling)."""
    a_max = [fan_in * bound * bound + 1 for fan_in, _ in shapes]
    return a_max, sum(a * fan_out for a, (_, fan_out) in zip(a_max, shapes))


def ghost_plan(shapes, l2_norm_clip: float, activation_bound: float) -> dict:
    """The public constants of clip_linear_examples for Linear layers of (in, out) sizes,
    and the clip C' it aims at so that every clipped example's norm (its share of the
    summed gradient, rounding included) is <= C for any input.

    With u = 2^-16, a_l <= in_l A^2 + 1 and |delta| <= C per coordinate (after the
    clamps), s = sum_l a_l d_l <= s_max. e: the largest with 4^e s_max <= 2^29 (the
    precision given to d); j: the exponent with Y = 4^-j s in (4^-5, 4^-4] at s = C^2
    (inv_sqrt's domain is [4^-5, 4^8), refused unless Y stays below 4^7 up to s_max).
    Errors (each truncation < 1 u): s' = 4^e s (1 +- u) +- u (sum a_max + 2 L); then
    y = 4^-(e+j) s' (+- 1.01 u if scaled down, in steps of 2^-8), i.e.
    y = Y (1 +- u) +- H; z = inv_sqrt(y) <=
    (1 + 5e-5) / sqrt(y) + 4 u; w = min(1, c z) with c <= C' 2^-j (encoded rounding down)
    is <= c z + 2 u (the product and the mask). An example's contribution x (w delta + r)
    with |r| < u per coordinate has norm <= w sqrt(s) + u sqrt(sum a_max out); the single
    rounding of the summed weight gradient adds u sqrt(sum in out) under the coupling
    that shares the truncation's mask (floor(S + U) moves by floor or ceil of a shift).
    For s <= (C - extras)^2 the norm is <= sqrt(s); above, it is <= C' br(s) + 2 u sqrt(s)
    with br(s) = (1 + 5e-5) / sqrt(1 - u - H / Y) + 4 u sqrt(Y), largest at one end of
    [(C - extras)^2, s_max]: C' is chosen so that this is <= C - extras.
    """
    c = float(l2_norm_clip)
    a_max, ratio = _linear_sizes(shapes, activation_bound)
    s_max = ratio * c * c
    if s_max > 2.0 ** 29:
        raise ValueError(f"l2_norm_clip {c} with activation_bound {activation_bound} is too "
                         f"large for fixed point with these layers ({shapes}): the squared "
                         f"norm could reach {s_max:.3g} > 2^29; lower either")
    j = math.ceil(math.log(c * c, 4) + 4 - 1e-12)  # C^2 4^-j in (4^-5, 4^-4]
    if ratio * c * c * 4.0 ** -j >= 4.0 ** 7:
        raise ValueError(f"activation_bound {activation_bound} is too large for these layers "
                         f"({shapes}): the norms would span more than inv_sqrt's domain")
    e = int(math.floor(math.log(2.0 ** 29 / s_max, 4)))
    k = e + j  # y = s' 4^-k
    h = ULP * (sum(a_max) + 2 * len(shapes)) * 4.0 ** -k + (1.01 * ULP if k > 0 else 0.0)
    extras = ULP * (math.sqrt(sum(a * o for a, (_, o) in zip(a_max, shapes)))
                    + math.sqrt(sum(i * o for i, o in shapes)))
    low = c - extras

    def bracket(s):
        big_y = s * 4.0 ** -j
        return (1 + INV_SQRT_REL_ERR) / math.sqrt(1 - ULP - h / big_y) + 4 * ULP * math.sqrt(big_y)

    target = (low - 2 * ULP * math.sqrt(s_max)) / max(bracket(low * low), bracket(s_max))
    if target < c / 2:
        raise ValueError(f"l2_norm_clip {c} is too small for fixed point with these layers")
    factor = math.floor(target * 2.0 ** -j * 2 ** 16) / 2 ** 16  # round down: c <= C' 2^-j
    return {"e": e, "k": k, "factor": factor, "target": target, "bound": activation_bound}


def clip_linear_examples(pairs, l2_norm_clip: float, activation_bound: float, mask=None):
    """The sum over examples of each example's gradient clipped to L2 norm l2_norm_clip
    (jointly over every layer), for Linear layers given as (x [N, in], delta [N, out]):
    example i's gradient is x_i delta_i^T for the weight and delta_i for the bias, and
    its squared norm is sum_l (|x_il|^2 + 1) |delta_il|^2, so the [N, in, out] per-example
    gradients are never formed (Goodfellow 2015; Lee and Kifer, PETS 2021). With `mask`
    ([N] secret 0/1), example i counts only if mask_i = 1, still without revealing which.
    Returns [sum dW, sum db] for each layer, in order. Example:
        dw, db = clip_linear_examples([(x, delta)], 1.0, 8.0)
    Steps (ghost_plan has the constants and the error analysis):
    1. clamp x to [-A, A] (A = activation_bound) and delta to [-C, C] per coordinate,
       every layer in one comparison (a no-op for ordinary values; it bounds every norm
       below whatever the input). The clamped values are the ones used throughout.
    2. a_l = |x_l|^2 + 1 and d'_l = |2^e delta_l|^2, every layer in one batched product;
       s' = sum_l a_l d'_l (one product).
    3. w = min(1, c inv_sqrt(4^-k s')) (times the mask), so w sqrt(s) <= C.
    4. sum_i w_i x_i delta_i^T = x^T (w delta) for every layer in one product, and
       sum_i w_i delta_i locally.
    Rounds: 8 + 2 + 2 (+ ceil(2k / 8) if k > 0) + 49 + 1 + 8 (+ 2 with a mask) + 2 + 2 =
    about 78, whatever N and the sizes.
    Comm per party per peer, N examples, layers (in_l, out_l): 47.6 bytes x 2 N
    sum (in_l + out_l) for the clamps, 8 bytes x (N sum (in_l + out_l) + 2 N L) for the
    norms, about 1,100 bytes x N for inv_sqrt and the min, 8 bytes x (3 N sum out_l +
    sum (in_l N + N out_l + in_l out_l)) for the sums: linear in N (in + out), where
    forming the gradients is N in out.
    """
    c = float(l2_norm_clip)
    sizes = [(x.shape[1], d.shape[1]) for x, d in pairs]
    plan = ghost_plan(sizes, c, activation_bound)
    n, layers = pairs[0][0].shape[0], len(pairs)
    xs, ds = _clamped(pairs, activation_bound, c)
    scaled = [d * (1 << plan["e"]) for d in ds]  # integer: exact
    norms = mpc.matmul_many([(x.reshape(n, 1, -1), x.reshape(n, -1, 1)) for x in xs]
                            + [(d.reshape(n, 1, -1), d.reshape(n, -1, 1)) for d in scaled])
    a = mpc.concatenate([t.reshape(n, 1) for t in norms[:layers]], axis=1) + 1.0
    d2 = mpc.concatenate([t.reshape(n, 1) for t in norms[layers:]], axis=1)
    s = (a.reshape(n, 1, layers) @ d2.reshape(n, layers, 1)).reshape(n, 1)
    k = plan["k"]
    y = _shift_down(s, 2 * k) if k > 0 else s * (1 << (-2 * k))
    factor = mpc.inv_sqrt(y) * plan["factor"]
    factor = factor - (factor - 1.0).relu()
    if mask is not None:
        factor = factor * mask.reshape(n, 1)
    width = sum(o for _, o in sizes)
    joint = mpc.concatenate(ds, axis=1) * factor.broadcast_to((n, width))
    weighted = _split_columns(joint, [o for _, o in sizes])
    sums = mpc.matmul_many([(x.T, w) for x, w in zip(xs, weighted)])
    out = []
    for dw, w in zip(sums, weighted):
        out += [dw, w.sum(axis=0)]
    return out


def _shift_down(t, bits: int):
    """t * 2^-bits by public factors of at least 2^-8 (each encodes exactly in 16 bits):
    ceil(bits / 8) rounds, error < 1.01 units."""
    while bits > 0:
        step = min(bits, 8)
        t, bits = t * 2.0 ** -step, bits - step
    return t


def _split_columns(t, widths):
    out, start = [], 0
    for width in widths:
        out.append(t[:, start:start + width])
        start += width
    return out


def _clamped(pairs, bound_x: float, bound_d: float):
    """Step 1: every x to [-bound_x, bound_x] and every delta to [-bound_d, bound_d], in
    one comparison."""
    parts = [x for x, _ in pairs] + [d for _, d in pairs]
    joint = mpc.concatenate([t.reshape(-1) for t in parts])
    nx = sum(x.size for x, _ in pairs)
    upper = np.concatenate([np.full(nx, bound_x), np.full(joint.size - nx, bound_d)])
    over = mpc.stack([joint - upper, -joint - upper]).relu()
    joint = joint - over[0] + over[1]
    out, start = [], 0
    for t in parts:
        out.append(joint[start:start + t.size].reshape(t.shape))
        start += t.size
    return out[:len(pairs)], out[len(pairs):]
