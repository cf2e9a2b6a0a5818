"""The replicated protocol: exactly 3 parties, 2-out-of-3 replicated shares over Z_2^64,
semi-honest with an honest majority (at most one party corrupt), no dealer. Party i holds
(x_i, x_{i+1}) as one uint64 array of shape (2, *S). Correlated randomness comes from the
pairwise seeds, or from one of the three playing the helper for the other two (each party
for a third of the elements of a call). Any two parties' shares together reveal x, so every
link must be encrypted (the launcher refuses a plaintext one).

Costs per element, f = 16 (rounds: the most any party waits; bytes: sent by each party):
  input: 1 round; the owner sends 8 bytes to one party (the other derives both its
    components). The first input of a run adds a round of set-up: 32 bytes a party for
    the common seed (booked under "setup").
  add_private (every party's input at once, for DP noise): 1 round; 8 bytes each.
  reveal: 1 round; 8 bytes each (to one peer). reveal to one party: 8 bytes from one.
  x * y, x @ y, conv2d, x^2 truncated: 2 rounds (the truncation fused in); 13.46 bytes per
    output element a party (40.375 in all: each party the helper for a third of the
    elements); from 2^16 output elements 3 rounds and 10.125 bytes a party
    (mpc.protocols.replicated.truncation: one receiver opens).
  the same without truncation: 1 round; 8 bytes each.
  truncation alone (x * public): 2 rounds; 10 bytes each.
  comparison ([x < 0], x < y, sign): 7 rounds a batch of 2^20; 23.625 bytes each; below
    2^12 elements 4 rounds and 86.92 bytes each.
  ReLU (the bit and x [x < 0] at once): 7 rounds; 31.625 bytes each; below 2^12 elements
    4 rounds and 156.25 bytes each (mpc.protocols.replicated.compare).
  sum_k w_k min(z_k, 0) truncated (hinge_sums, mpc.sigmoid_piecewise): the comparison
    with select without its reshare, then a fused truncation: 5 rounds below 2^12
    comparisons (8 from), the comparison's bytes less its reshare's.
  Bernoulli bits: 7 rounds; 23.625 bytes each (mpc.protocols.replicated.bernoulli).
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
        """sharing.input_share: 1 round, 8 bytes per element from the owner to one party."""
        return sharing.input_share(ctx, encoded, owner, shape)

    def add_private(self, ctx, share, mine):
        """Every party's array input in one round (sharing.input_all) and added: 8 bytes per
        element each."""
        return share + sharing.input_all(ctx, np.asarray(mine, dtype=DTYPE))

    def open(self, ctx, share, op="open"):
        """sharing.open_all: 1 round, 8 bytes per element each."""
        return sharing.open_all(ctx, share, op)

    def open_to(self, ctx, share, receiver, op="reveal"):
        """sharing.open_to: 1 round, 8 bytes per element from one party."""
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
        truncation (bits = 16: 2 rounds, 13.46 bytes per output element a party; from 2^16
        outputs 3 rounds, 10.125), else a reshare (1 round, 8 bytes each); the inner
        dimension costs nothing on the wire."""
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
        """Local x_i^2 + 2 x_i x_{i+1}, then as a product: the cost of one product (2 rounds
        and 13.46 bytes per element a party truncated, or 3 and 10.125 from 2^16 elements;
        1 round and 8 bytes not)."""
        return self._finish(ctx, arithmetic.local_square(xs), bits, "square")

    def _finish(self, ctx, part, bits, op):
        part = np.asarray(part, dtype=DTYPE)
        if bits:
            return truncation.truncate_product(ctx, part, bits, op)
        return sharing.reshare(ctx, part, op)

    def truncate(self, ctx, xs, bits):
        """truncation.truncate: 2 rounds, 10 bytes per element each (bits = 16)."""
        return truncation.truncate(ctx, xs, bits)

    def less_than_zero(self, ctx, zs, select=False):
        """compare.less_than_zero: 7 rounds a batch, 23.625 bytes per element each (31.625
        with `select`, ReLU's x [x < 0]); below 2^12 elements 4 rounds, 86.92 (156.25)."""
        from mpc.protocols.replicated import compare
        return compare.less_than_zero(ctx, zs, select=select)

    def hinge_sums(self, ctx, zs, weights, bits, label):
        """The comparison without its reshare (compare.less_than_zero, additive: 3 rounds
        below 2^12 elements, 6 from), the weighted sum of the additive parts and a fused
        truncation of it (truncation.truncate_product: 2 rounds): a round fewer than the
        comparison and a truncation apart, and no reshare's bytes."""
        from mpc.protocols.replicated import compare
        shape = zs.shape[1:]
        with ctx.operation(label):
            _, parts = compare.less_than_zero(ctx, zs.reshape(2, -1), select=True,
                                              additive=True)
            with np.errstate(over="ignore"):
                weighted = np.sum(parts.reshape(shape) * weights, axis=-1, dtype=DTYPE)
            return truncation.truncate_product(ctx, weighted, bits, "hinges")

    def bernoulli_bits(self, ctx, n, p):
        """bernoulli.bernoulli_bits: 7 rounds a batch, 23.625 bytes per bit each."""
        from mpc.protocols.replicated import bernoulli
        return bernoulli.bernoulli_bits(ctx, n, p)
