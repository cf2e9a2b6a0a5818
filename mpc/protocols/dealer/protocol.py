"""The dealer protocol: n >= 2 parties hold additive shares x = x_0 + ... + x_{n-1} mod 2^64
(party i holds x_i, an array of the secret's shape) and get correlated randomness (Beaver
triples, truncation pairs, comparison items) from a provider: the trusted dealer process,
seed-compressed (mpc.protocols.dealer.providers). Semi-honest, secure against any n - 1
colluding parties given an honest dealer.
"""

from __future__ import annotations

import numpy as np

from mpc.protocols.base import Protocol
from mpc.protocols.dealer import arithmetic, bernoulli, compare, opening, truncation
from mpc.protocols.dealer.truncation import TRUNCATIONS
from mpc.ring import DTYPE
from mpc.shapes import cut, product_shape

MUL_CHUNK = 1 << 20  # elements per batch of a large elementwise product (bounds memory)


class DealerProtocol(Protocol):
    """Additive shares and a provider of correlated randomness (see the module docstring)."""

    name = "dealer"
    uses_dealer = True

    def __init__(self, provider):
        self.provider = provider

    @classmethod
    def check_settings(cls, n_parties, truncation="exact") -> None:
        if n_parties < 2:
            raise ValueError(f"the dealer protocol needs at least 2 parties, got {n_parties}")
        if truncation not in TRUNCATIONS:
            raise ValueError(f"unknown truncation {truncation!r}; "
                             f"choose one of {sorted(TRUNCATIONS)}")
        if truncation == "local-probabilistic" and n_parties != 2:
            raise ValueError("local-probabilistic truncation works for 2 parties only")

    def close(self, ctx) -> None:
        self.provider.close()

    # ------------------------------------------------------------ representation
    def shape(self, share):
        return share.shape

    def local(self, fn, *shares):
        return fn(*shares)

    def public(self, ctx, encoded):
        encoded = np.asarray(encoded, dtype=DTYPE)
        return encoded.copy() if ctx.pid == 0 else np.zeros_like(encoded)

    def add_public(self, ctx, share, encoded):
        """Party 0 adds the public value; the others broadcast their share to the result
        shape."""
        if ctx.pid == 0:
            return share + encoded
        shape = np.broadcast_shapes(share.shape, np.shape(encoded))
        return np.broadcast_to(share, shape).copy()

    # ------------------------------------------------------------ input and output
    def input(self, ctx, encoded, owner, shape):
        """The non-owners' shares come from the seeds they share pairwise with the owner,
        so no share is sent: the owner's share is x minus the others'.
        Rounds: 0. Comm: none."""
        nonce = ctx.next_seq()
        if ctx.pid != owner:
            return ctx.pairwise_ring(owner, nonce, shape)
        mine = encoded.copy()
        for peer in ctx.peers:
            mine -= ctx.pairwise_ring(peer, nonce, shape)
        return mine

    def add_private(self, ctx, share, mine):
        """Each party adds its own array to its own share. Rounds: 0. Comm: none."""
        return share + mine

    def open(self, ctx, share, op="open"):
        return opening.open_sum(ctx, share, op)

    def open_to(self, ctx, share, receiver, op="reveal"):
        return opening.open_sum_to(ctx, share, receiver, op)

    @staticmethod
    def owner_shares(prg, number, x, n_parties):
        """Party 0 gets x - sum(others), the others uniform ring elements."""
        rest = prg.ring_tensors(number, [x.shape] * (n_parties - 1))
        first = x.copy()
        for r in rest:
            first -= r
        return [first] + rest

    @staticmethod
    def owner_share_shape(shape):
        return tuple(shape)

    def owner_output(self, share):
        return share

    # ------------------------------------------------------------ protocols
    def product(self, ctx, kind, xs, ys, params, bits):
        """Beaver's product with a triple of the matching shape (mpc.protocols.dealer
        .arithmetic), then the truncation: with the exact one, triple and truncation pair
        are one item (truncation.truncated_product), else the pair is requested first, so
        the dealer makes both meanwhile. Rounds: 1 (+ 1 with bits, or 2 where the
        truncation opens by parts: truncation.split_opening). Comm: (size(x) + size(y))
        ring elements to each peer (+ one truncation opening)."""
        out_shape = product_shape(kind, xs.shape, ys.shape, params)
        if kind == "mul" and xs.shape == ys.shape and xs.size > MUL_CHUNK:
            return self._mul_in_batches(ctx, xs, ys, bits, MUL_CHUNK)
        xs, ys = np.atleast_1d(xs), np.atleast_1d(ys)
        fused = truncation.request_product(ctx, kind, xs.shape, ys.shape, params, bits) \
            if bits else None
        if fused is not None:
            masked = arithmetic.bilinear(ctx, kind, xs, ys, params, fused)
            return truncation.truncated_product(ctx, masked, fused, bits, xs.size + ys.size
                                                ).reshape(out_shape)
        triple = arithmetic.request(ctx, kind, xs.shape, ys.shape, params)
        pair = truncation.request(ctx, out_shape, bits) if bits else None
        out = arithmetic.bilinear(ctx, kind, xs, ys, params, triple).reshape(out_shape)
        return truncation.truncate(ctx, out, pair, bits, xs.size + ys.size) if bits else out

    def _mul_in_batches(self, ctx, xs, ys, bits, chunk: int):
        """x * y of equal shapes in batches of `chunk` elements, one after the other, so
        that no process holds more than two batches' triples and intermediates: 2 rounds
        per batch (3 where the truncation opens by parts), the same bytes. The next
        batch's items are requested first, so the dealer makes them meanwhile."""
        shape, xs, ys = xs.shape, xs.reshape(-1), ys.reshape(-1)
        out = np.empty(xs.size, dtype=DTYPE)

        def items(start):
            size = min(chunk, xs.size - start)
            fused = truncation.request_product(ctx, "mul", (size,), (size,), None, bits) \
                if bits else None
            if fused is not None:
                return fused, None
            return (arithmetic.request(ctx, "mul", (size,), (size,)),
                    truncation.request(ctx, (size,), bits) if bits else None)
        ahead = items(0)
        for start in range(0, xs.size, chunk):
            part = slice(start, start + chunk)
            triple, pair = ahead
            if start + chunk < xs.size:
                ahead = items(start + chunk)
            product = arithmetic.bilinear(ctx, "mul", xs[part], ys[part], None, triple)
            if bits and pair is None:  # fused: product is the truncation's masked input
                out[part] = truncation.truncated_product(ctx, product, triple, bits,
                                                         2 * product.size)
            else:
                out[part] = truncation.truncate(ctx, product, pair, bits, 2 * product.size) \
                    if bits else product
        return out.reshape(shape)

    def products(self, ctx, kind, operands, bits):
        """Every masked operand in one opening, every result in one truncation (with the
        exact one, a fused item per product: truncation.truncated_product).
        Rounds: 2 (3 where the truncation opens by parts). Comm: at most the bytes of the
        products one by one."""
        shapes = [product_shape(kind, xs.shape, ys.shape) for xs, ys in operands]
        operands = [(np.atleast_1d(xs), np.atleast_1d(ys)) for xs, ys in operands]
        operand_size = sum(xs.size + ys.size for xs, ys in operands)
        fused = [truncation.request_product(ctx, kind, xs.shape, ys.shape, None, bits)
                 for xs, ys in operands] if bits and ctx.truncation == "exact" else None
        if fused:  # one fused item per product (truncation.truncated_product), one opening
            masked = arithmetic.bilinear_many(ctx, kind, operands, fused)
            flat = truncation.truncated_product(
                ctx, np.concatenate([p.reshape(-1) for p in masked]), fused, bits,
                operand_size)
            return cut(flat, shapes)
        triples = [arithmetic.request(ctx, kind, xs.shape, ys.shape) for xs, ys in operands]
        total = sum(int(np.prod(shape)) for shape in shapes)
        pair = truncation.request(ctx, (total,), bits) if bits else None
        products = arithmetic.bilinear_many(ctx, kind, operands, triples)
        flat = np.concatenate([p.reshape(-1) for p in products])
        if bits:
            flat = truncation.truncate(ctx, flat, pair, bits, operand_size)
        return cut(flat, shapes)

    def square(self, ctx, xs, bits):
        """With a square pair: half the communication of a multiplication.
        Rounds: 1 (+ 1 or 2 with bits). Comm: size(x) elements to each peer (+ truncation)."""
        ticket = truncation.request(ctx, xs.shape, bits) if bits else None
        out = arithmetic.square(ctx, np.atleast_1d(xs)).reshape(xs.shape)
        return truncation.truncate(ctx, out, ticket, bits, xs.size) if bits else out

    def truncate(self, ctx, xs, bits):
        return truncation.truncate(ctx, xs, bits=bits)

    def less_than_zero(self, ctx, zs, select=False):
        return compare.less_than_zero(ctx, zs, select=select)

    def bernoulli_bits(self, ctx, n, p):
        return bernoulli.bernoulli_bits(ctx, n, p)

