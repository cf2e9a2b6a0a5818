"""Beaver multiplication for the bilinear operations: elementwise product, matrix product,
2-D convolution, and squaring with a square pair. Results are at 2f fractional bits; the
caller truncates.

For a bilinear op (x, y) -> x o y and a triple ([a], [b], [c = a o b]):
  1. Open d = x - a and e = y - b together (one round).
  2. [x o y] = [c] + d o [b] + [a] o e + d o e, the public d o e added by party 0 only.
Rounds: 1. Comm per party: (size(x) + size(y)) ring elements to each peer.
References: Beaver, "Efficient Multiparty Protocols Using Circuit Randomization",
CRYPTO 1991; Mohassel and Zhang, "SecureML", S&P 2017, Sec. 4.2 (matrix triples).
"""

from __future__ import annotations

import numpy as np

from mpc import kernels
from mpc.protocols.dealer import kernels as dealer_kernels
from mpc.protocols.dealer import opening
from mpc.protocols.dealer.correlations import ItemSpec
from mpc.ring import DTYPE
from mpc.shapes import cut, product_shape


def _conv_combine(d, e, a, b, c, add_de, stride, padding):
    """c + conv(d, b) + conv(a (+ d), e), the two convolutions as one product per sample,
    summed into c (this party's own fresh share) in place."""
    out = c if c.flags.writeable and c.flags.c_contiguous else c.copy()
    return kernels.conv2d_pair_accumulate(d, b, a + d if add_de else a, e, out, stride, padding)


def request(ctx, kind: str, x_shape, y_shape, params: dict | None = None):
    """Ask the provider for the triple that `bilinear` will need (call early)."""
    spec = ItemSpec(kind, (tuple(x_shape), tuple(y_shape)), params or {})
    return ctx.protocol.provider.request(spec)


def bilinear(ctx, kind: str, xs: np.ndarray, ys: np.ndarray, params: dict | None = None,
             ticket=None):
    """[x o y] for kind in {"mul", "matmul", "conv2d"}; see the module docstring. With a
    ticket for a fused "trunc-product" item (mpc.protocols.dealer.truncation
    .request_product) the result is [x o y + 2^62 + r] instead, the truncation's masked
    input: the item's q takes c's place."""
    ticket = ticket or request(ctx, kind, xs.shape, ys.shape, params)
    return bilinear_many(ctx, kind, [(xs, ys)], [ticket], params)[0]


def bilinear_many(ctx, kind: str, operands, tickets, params: dict | None = None) -> list:
    """[x_i o y_i] for several independent pairs, every d and e in one opening: one round
    whatever the number of pairs (each has its own triple, from `tickets`)."""
    params = params or {}
    frees = [ctx.protocol.provider.take_free(t) for t in tickets]
    sizes = [size for xs, ys in operands for size in (xs.size, ys.size)]
    masked = np.empty(sum(sizes), dtype=DTYPE)  # all openings in one message
    start = 0
    for (xs, ys), (a, b, *_) in zip(operands, frees):
        for value, mask in ((xs, a), (ys, b)):
            np.subtract(value, mask, out=masked[start:start + value.size].reshape(value.shape))
            start += value.size
    shapes = [s for xs, ys in operands for s in (xs.shape, ys.shape)]
    elementwise = kind == "mul" and all(xs.shape == ys.shape for xs, ys in operands) and \
        opening.all_to_all(ctx, masked.size)
    if elementwise:  # d and e summed inside the combining pass, never stored
        peers = opening.exchange_shares(ctx, masked, kind)
        others = peers[0] if len(peers) == 1 else np.sum(peers, axis=0, dtype=DTYPE)
        mine_cut, others_cut = cut(masked, shapes), cut(others, shapes)
    else:
        opened = opening.open_flat(ctx, masked, shapes, kind)
    add_de = ctx.pid == 0
    out = []
    for i, (free, ticket) in enumerate(zip(frees, tickets)):
        a, b = free[:2]
        if ticket.spec.kind == "trunc-product":  # q in c's place: the masked product
            c = free[2].reshape(product_shape(kind, a.shape, b.shape, params))
        else:
            (c,) = ctx.protocol.provider.take_derived(ticket)  # made during the opening
        # c is this party's own fresh array (its stream or the dealer's correction)
        if elementwise:
            out.append(dealer_kernels.beaver_combine_opening(
                mine_cut[2 * i], others_cut[2 * i], mine_cut[2 * i + 1],
                others_cut[2 * i + 1], a, b, c, add_de))
            continue
        d, e = opened[2 * i], opened[2 * i + 1]
        if kind == "mul":
            out.append(dealer_kernels.beaver_combine(d, e, a, b, c, add_de, in_place=True))
        elif kind == "matmul":
            out.append(dealer_kernels.beaver_combine_matmul(d, e, a, b, c, add_de,
                                                            in_place=True))
        else:
            out.append(_conv_combine(d, e, a, b, c, add_de,
                                     tuple(params.get("stride", (1, 1))),
                                     tuple(params.get("padding", (0, 0)))))
    return out


def square(ctx, xs: np.ndarray) -> np.ndarray:
    """[x^2] with a square pair ([a], [a^2]): open d = x - a, then a^2 + 2 d a + d^2.

    Rounds: 1. Comm per party: size(x) ring elements to each peer (half a multiplication).
    """
    a, a2 = ctx.protocol.provider.get(ItemSpec("square", (xs.shape,)))
    d = opening.open_sum(ctx, xs - a, "square")
    out = a2 + np.uint64(2) * d * a
    if ctx.pid == 0:
        out += d * d
    return out
