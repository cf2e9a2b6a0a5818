"""The replicated protocol: exactly 3 parties, 2-out-of-3 replicated shares over Z_2^64,
semi-honest with an honest majority (at most one party corrupt), no dealer. Party i holds
(x_i, x_{i+1}) as one uint64 array of shape (2, *S). Correlated randomness comes from the
pairwise seeds, or from one of the three playing the helper for the other two, the role
rotating from call to call. Any two parties' shares together reveal x, so every link must
be encrypted (the launcher refuses a plaintext one).

Costs per element, f = 16 (rounds: the most any party waits; bytes sent, by role):
  input: 1 round; the owner sends 8 bytes to each other party.
  reveal: 1 round; 8 bytes each (to one peer). reveal to one party: 8 bytes from one.
  x * y, x @ y, conv2d, x^2 truncated: 2 rounds (the truncation fused in); the helper 26
    bytes per output element, the other two 16 each.
  the same without truncation: 1 round; 8 bytes each.
  truncation alone: 2 rounds; helper 10, the others 16 (mpc.protocols.replicated.truncation).
  comparison: mpc.protocols.replicated.compare.
References: Araki, Furukawa, Lindell, Nof and Ohara, CCS 2016; Mohassel and Rindal, "ABY3",
CCS 2018.
"""

from __future__ import annotations

import numpy as np

from mpc.protocols.base import Protocol
from mpc.protocols.replicated import arithmetic, sharing, truncation
from mpc.ring import DTYPE
from mpc.shapes import product_shape


class ReplicatedProtocol(Protocol):
    """Replicated shares of three parties (see the module docstring)."""

    name = "replicated"

    def __init__(self):
        self._helped = 0  # truncations so far: the k-th has helper k mod 3
        self._common = None  # the three parties' common seed, agreed on first use

    def common_seed(self, ctx):
        """The Prg of the seed all three parties hold (sharing.agree_common_seed)."""
        if self._common is None:
            self._common = sharing.agree_common_seed(ctx)
        return self._common

    def next_helper(self) -> int:
        """The helper of the next helper-assisted step: each party in turn."""
        self._helped += 1
        return self._helped % 3

    needs_encryption = True  # any two parties' shares, so any two links' traffic, reveal x

    @classmethod
    def max_colluders(cls, n_parties: int) -> int:
        """One: any two parties hold all three components of every secret."""
        return 1

    @classmethod
    def check_settings(cls, n_parties, truncation="exact") -> None:
        if n_parties != 3:
            raise ValueError(f"the replicated protocol runs with exactly 3 parties, "
                             f"not {n_parties}")
        if truncation != "exact":
            raise ValueError(f"the replicated protocol has only the exact truncation, not "
                             f"{truncation!r}")

    # ------------------------------------------------------------ representation
    def shape(self, share):
        return share.shape[1:]

    def local(self, fn, *shares):
        return np.stack([fn(*[s[k, ...] for s in shares]) for k in (0, 1)])

    def _holds_first(self, ctx) -> tuple[bool, bool]:
        """Whether this party's components [0], [1] are x_0 (where public values go)."""
        return ctx.pid == 0, ctx.pid == 2

    def public(self, ctx, encoded):
        encoded = np.asarray(encoded, dtype=DTYPE)
        zero = np.zeros_like(encoded)
        return np.stack([encoded if held else zero for held in self._holds_first(ctx)])

    def add_public(self, ctx, share, encoded):
        """Added to the component x_0 (held by parties 0 and 2); local."""
        encoded = np.asarray(encoded, dtype=DTYPE)
        shape = np.broadcast_shapes(share.shape[1:], encoded.shape)
        return np.stack([share[k] + encoded if held else np.broadcast_to(share[k], shape).copy()
                         for k, held in enumerate(self._holds_first(ctx))])

    # ------------------------------------------------------------ input and output
    def input(self, ctx, encoded, owner, shape):
        return sharing.input_share(ctx, encoded, owner, shape)

    def add_private(self, ctx, share, mine):
        """Every party's array input in one round (sharing.input_all) and added."""
        return share + sharing.input_all(ctx, np.asarray(mine, dtype=DTYPE))

    def open(self, ctx, share, op="open"):
        return sharing.open_all(ctx, share, op)

    def open_to(self, ctx, share, receiver, op="reveal"):
        return sharing.open_to(ctx, share, receiver, op)

    @staticmethod
    def owner_shares(prg, number, x, n_parties):
        """x = x_0 + x_1 + x_2 with x_0, x_1 uniform; party p gets (x_p, x_{p+1})."""
        x0, x1 = prg.ring_tensors(number, [x.shape] * 2)
        comps = [x0, x1, x - x0 - x1]
        return [np.stack([comps[p], comps[(p + 1) % 3]]) for p in range(3)]

    @staticmethod
    def owner_share_shape(shape):
        return (2,) + tuple(shape)

    def owner_output(self, share):
        """x_i: the three parties' x_i add up to x."""
        return share[0, ...]

    # ------------------------------------------------------------ protocols
    def product(self, ctx, kind, xs, ys, params, bits):
        """Local terms (mpc.protocols.replicated.arithmetic), then with `bits` the fused
        truncation (2 rounds), else a reshare (1 round, 1 element a party)."""
        product_shape(kind, xs.shape[1:], ys.shape[1:], params)
        return self._finish(ctx, arithmetic.local_product(kind, xs, ys, params), bits, kind)

    def products(self, ctx, kind, operands, bits):
        """Every product's local terms, then one fused truncation (or reshare) of them all:
        the rounds of one product."""
        parts = [arithmetic.local_product(kind, xs, ys) for xs, ys in operands]
        flat = self._finish(ctx, np.concatenate([p.reshape(-1) for p in parts]), bits, kind)
        out, start = [], 0
        for p in parts:
            out.append(flat[:, start:start + p.size].reshape((2,) + p.shape))
            start += p.size
        return out

    def square(self, ctx, xs, bits):
        """Local x_i^2 + 2 x_i x_{i+1}, then as a product: the cost of one product."""
        return self._finish(ctx, arithmetic.local_square(xs), bits, "square")

    def _finish(self, ctx, part, bits, op):
        part = np.asarray(part, dtype=DTYPE)
        if bits:
            return truncation.truncate_product(ctx, part, bits, op)
        return sharing.reshare(ctx, part, op)

    def truncate(self, ctx, xs, bits):
        return truncation.truncate(ctx, xs, bits)

    def less_than_zero(self, ctx, zs, select=False):
        from mpc.protocols.replicated import compare
        return compare.less_than_zero(ctx, zs, select=select)

    def bernoulli_bits(self, ctx, n, p):
        from mpc.protocols.replicated import bernoulli
        return bernoulli.bernoulli_bits(ctx, n, p)
