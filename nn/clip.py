"""Per-microbatch L2 clipping on shares, for DP-SGD: the sum over microbatches of
g_j * min(1, C / ||g_j||), computed without revealing any g_j, its norm or which
microbatches a secret mask kept, and with every microbatch's contribution of norm at most
C even after fixed-point error, whatever the gradients (so the sensitivity DP-SGD's noise
is calibrated to holds exactly).

A Linear layer with one example per microbatch is clipped from its factors (the layer's
input x_i and output gradient delta_i), without forming x_i delta_i^T; other gradients
(Conv2d, microbatches of several examples) come formed, [m, D]. Both kinds share one
norm, one inv_sqrt and one rescaling (clip_examples); ghost_plan has the constants and
the error analysis.
"""

from __future__ import annotations

import math

import numpy as np

import mpc

ULP = 2.0 ** -16
INV_SQRT_REL_ERR = 5e-5  # plus 4 units (mpc.inv_sqrt's docstring)


# ------------------------------------------------ per-example clipping, gradients unformed
def _linear_sizes(shapes, bound: float):
    """For layers of (in, out) sizes and input bound A: the largest per-layer a = |x|^2 + 1
    and d = |delta|^2 / C^2, and s_max / C^2 = sum a d (the squared norm's ceiling)."""
    a_max = [fan_in * bound * bound + 1 for fan_in, _ in shapes]
    return a_max, sum(a * fan_out for a, (_, fan_out) in zip(a_max, shapes))


def ghost_plan(shapes, l2_norm_clip: float, activation_bound: float) -> dict:
    """The public constants of clip_examples for parts of (in, out) sizes (in = 0 for a
    formed gradient of D = out entries), and the clip C' it aims at so that every clipped
    microbatch's norm (its share of the summed gradient, rounding included) is <= C for
    any input.

    With u = 2^-16, a_l <= in_l A^2 + 1 and |delta| <= C per coordinate (after the
    clamps), s = sum_l a_l d_l <= s_max. e: the largest with 4^e s_max <= 2^29 (the
    precision given to d); j: the exponent with Y = 4^-j s in (4^-5, 4^-4] at s = C^2
    (inv_sqrt's domain is [4^-5, 4^8), refused unless Y stays below 4^7 up to s_max).
    Errors (each truncation < 1 u): s' = 4^e s (1 +- u) +- u (sum a_max + 2 L); then
    y = 4^-(e+j) s' (+- 1.01 u if scaled down, in steps of 2^-8), i.e.
    y = Y (1 +- u) +- H; z = inv_sqrt(y) <=
    (1 + 5e-5) / sqrt(y) + 4 u; w = min(1, c z) with c <= C' 2^-j (encoded rounding down)
    is <= c z + u (the product; the mask's product is exact: b w is 0 or w 2^f before its
    truncation, and an exact multiple of 2^f truncates exactly). An example's contribution
    x (w delta + r)
    with |r| < u per coordinate has norm <= w sqrt(s) + u sqrt(sum a_max out); the single
    rounding of the summed weight gradient adds u sqrt(sum in out) under the coupling
    that shares the truncation's mask (floor(S + U) moves by floor or ceil of a shift).
    For s <= (C - extras)^2 the norm is <= sqrt(s); above, it is <= C' br(s) + u sqrt(s)
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

    target = (low - ULP * math.sqrt(s_max)) / max(bracket(low * low), bracket(s_max))
    if target < c / 2:
        raise ValueError(f"l2_norm_clip {c} is too small for fixed point with these layers")
    factor = math.floor(target * 2.0 ** -j * 2 ** 16) / 2 ** 16  # round down: c <= C' 2^-j
    return {"e": e, "k": k, "factor": factor, "target": target, "bound": activation_bound}


def clip_examples(parts, l2_norm_clip: float, activation_bound: float = 8.0, mask=None):
    """The sum over microbatches of each one's gradient clipped to L2 norm l2_norm_clip
    (jointly over every part), with the secret 0/1 `mask` [N] (if given) deciding which
    count, without revealing which. Each part is either
    - (x [N, in], delta [N, out]): a Linear layer with one example per microbatch, whose
      gradient x_i delta_i^T (weight) and delta_i (bias) is never formed: its squared
      norm is (|x_i|^2 + 1) |delta_i|^2 and the clipped sum is x^T (w delta) (Goodfellow
      2015; Lee and Kifer, PETS 2021); it gives [sum dW, sum db];
    - (None, g [N, D]): gradients formed per microbatch (Conv2d, larger microbatches),
      treated as a layer with a = 1; it gives [sum g].
    Example:
        dw, db, dconv = clip_examples([(x, delta), (None, conv_grads)], 1.0)
    Steps (ghost_plan has the constants and the error analysis):
    1. clamp every x to [-A, A] (A = activation_bound) and every delta and g to [-C, C]
       per coordinate, in one comparison (a no-op for ordinary values; it bounds every
       norm whatever the input). The clamped values are the ones used throughout.
    2. a = |x|^2 + 1 and d' = |2^e delta|^2 per part, in one batched product;
       s' = sum_parts a d' (one product).
    3. w = min(1, c inv_sqrt(4^-k s')) (times the mask), so that w sqrt(s) <= C.
    4. x^T (w delta) for every Linear part in one product; the sums of w delta and w g
       over the microbatches locally.
    Rounds: 8 + 2 + 2 (+ ceil(2k / 8) if k > 0) + 49 + 1 + 8 (+ 2 with a mask) + 2 + 2 =
    about 78, whatever N and the sizes.
    Comm per party per peer, N microbatches, parts of (in, out) sizes (in = 0 for formed
    gradients, out = D): 47.6 bytes x 2 N sum (in + out) for the clamps, 8 bytes x
    (N sum (in + out) + 2 N parts) for the norms, about 1,100 bytes x N for inv_sqrt and
    the min, 8 bytes x (3 N sum out + sum (in N + N out + in out)) for the products:
    N (in + out) for a Linear layer where forming its gradients is N in out.
    """
    c = float(l2_norm_clip)
    ctx = parts[0][1].ctx
    if ctx.truncation != "exact":
        raise ValueError(f"the clipping bound needs exact truncation, not {ctx.truncation!r} "
                         f"(which can fail by 2^48 and break the sensitivity)")
    sizes = [(0 if x is None else x.shape[1], g.shape[1]) for x, g in parts]
    plan = ghost_plan(sizes, c, activation_bound)
    n = parts[0][1].shape[0]
    xs, gs = _clamped(parts, activation_bound, c)
    scaled = [g * (1 << plan["e"]) for g in gs]  # integer: exact
    linear = [i for i, x in enumerate(xs) if x is not None]
    norms = mpc.matmul_many([(xs[i].reshape(n, 1, -1), xs[i].reshape(n, -1, 1)) for i in linear]
                            + [(g.reshape(n, 1, -1), g.reshape(n, -1, 1)) for g in scaled])
    d2 = norms[len(linear):]
    s = None
    if linear:
        a = mpc.concatenate([norms[slot].reshape(n, 1) for slot in range(len(linear))],
                            axis=1) + 1.0
        d = mpc.concatenate([d2[i].reshape(n, 1) for i in linear], axis=1)
        s = (a.reshape(n, 1, len(linear)) @ d.reshape(n, len(linear), 1)).reshape(n, 1)
    for i in range(len(parts)):
        if xs[i] is None:  # a = 1: the formed gradient's squared norm as it is
            s = d2[i].reshape(n, 1) if s is None else s + d2[i].reshape(n, 1)
    k = plan["k"]
    y = _shift_down(s, 2 * k) if k > 0 else s * (1 << (-2 * k))
    factor = mpc.inv_sqrt(y) * plan["factor"]
    factor = factor - (factor - 1.0).relu()
    if mask is not None:
        factor = factor * mask.reshape(n, 1)
    width = sum(o for _, o in sizes)
    joint = mpc.concatenate(gs, axis=1) * factor.broadcast_to((n, width))
    weighted = _split_columns(joint, [o for _, o in sizes])
    products = iter(mpc.matmul_many([(xs[i].T, weighted[i]) for i in linear])) \
        if linear else iter(())
    out = []
    for x, w in zip(xs, weighted):
        out += ([next(products)] if x is not None else []) + [w.sum(axis=0)]
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


def _clamped(parts, bound_x: float, bound_g: float):
    """Step 1: every x to [-bound_x, bound_x] and every delta or g to [-bound_g, bound_g],
    in one comparison."""
    xs = [x for x, _ in parts if x is not None]
    flat = [t.reshape(-1) for t in xs] + [g.reshape(-1) for _, g in parts]
    joint = mpc.concatenate(flat)
    nx = sum(t.size for t in xs)
    upper = np.concatenate([np.full(nx, bound_x), np.full(joint.size - nx, bound_g)])
    over = mpc.stack([joint - upper, -joint - upper]).relu()
    joint = joint - over[0] + over[1]
    pieces, start = [], 0
    for t in flat:
        pieces.append(joint[start:start + t.size])
        start += t.size
    clamped_x = iter(pieces[:len(xs)])
    out_x = [None if x is None else next(clamped_x).reshape(x.shape) for x, _ in parts]
    out_g = [p.reshape(g.shape) for p, (_, g) in zip(pieces[len(xs):], parts)]
    return out_x, out_g
