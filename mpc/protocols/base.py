"""The protocol interface: how a party holds a share, and every step that depends on it.

SecretTensor, the functions and nn/ are written once against this interface; each protocol
(a folder of its own under mpc/protocols/) implements it. A *share* is this party's part of
a secret ring tensor of logical shape S, as one uint64 array whose layout the protocol
decides (additive: shape S; replicated: shape (2, *S)). Everything above the protocol
handles shares only through these methods, so nothing there knows which protocol runs.

Products take `bits`: the fixed-point truncation to apply to the result (None: none), so a
protocol can fuse the truncation into the product where that saves a round.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Protocol(ABC):
    """One party's side of a secret-sharing protocol (a strategy object the Context holds)."""

    name: str
    uses_dealer = False      # whether a dealer process serves this protocol
    needs_encryption = False  # whether a plaintext link must be refused (not only warned of)

    # ------------------------------------------------------------ set-up
    @classmethod
    def check_settings(cls, n_parties: int, truncation: str = "exact") -> None:
        """Refuse settings this protocol cannot honour (party count, truncation method)
        with a ValueError naming the setting; called before anything runs."""

    def check(self, ctx) -> None:
        self.check_settings(ctx.n_parties, ctx.truncation)

    @classmethod
    def max_colluders(cls, n_parties: int) -> int:
        """The largest coalition the protocol keeps secrets from (n - 1 unless said)."""
        return n_parties - 1

    def close(self, ctx) -> None:
        """Release what the protocol holds (a dealer connection)."""

    # ------------------------------------------------------------ representation, local
    @abstractmethod
    def shape(self, share: np.ndarray) -> tuple[int, ...]:
        """The logical shape of the secret that `share` is a share of."""

    @abstractmethod
    def local(self, fn, *shares: np.ndarray) -> np.ndarray:
        """fn applied to the shares' components: for any map that is linear in the secret
        (add, negate, a public scale, reshape, index, sum, im2col ...). fn sees plain
        uint64 arrays of the logical shapes."""

    @abstractmethod
    def public(self, ctx, encoded: np.ndarray) -> np.ndarray:
        """The trivial share of a public ring array (no randomness, no message)."""

    @abstractmethod
    def add_public(self, ctx, share: np.ndarray, encoded: np.ndarray) -> np.ndarray:
        """share + a public ring array (numpy broadcasting between the logical shapes)."""

    # ------------------------------------------------------------ input and output
    @abstractmethod
    def input(self, ctx, encoded: np.ndarray | None, owner: int, shape) -> np.ndarray:
        """A share of party `owner`'s ring array (the others pass None)."""

    @abstractmethod
    def add_private(self, ctx, share: np.ndarray, mine: np.ndarray) -> np.ndarray:
        """A share of x + sum over parties of each party's private ring array `mine` (of
        x's shape): how every party adds its own noise before a reveal."""

    @abstractmethod
    def open(self, ctx, share: np.ndarray, op: str = "open") -> np.ndarray:
        """The secret ring array, revealed to every party."""

    @abstractmethod
    def open_to(self, ctx, share: np.ndarray, receiver: int, op: str = "reveal"):
        """The secret ring array at party `receiver` only (None at the others)."""

    @staticmethod
    @abstractmethod
    def owner_shares(prg, number: int, x: np.ndarray, n_parties: int) -> list[np.ndarray]:
        """What an outside data owner sends each party for its ring array x (mpc.owners),
        from the owner's generator `prg` at stream `number`."""

    @staticmethod
    @abstractmethod
    def owner_share_shape(shape) -> tuple[int, ...]:
        """The shape of what a party receives from an owner for an array of `shape`."""

    @abstractmethod
    def owner_output(self, share: np.ndarray) -> np.ndarray:
        """What a party sends an owner for a result: the owner adds the parties' arrays."""

    # ------------------------------------------------------------ protocols
    @abstractmethod
    def product(self, ctx, kind: str, xs: np.ndarray, ys: np.ndarray, params: dict | None,
                bits: int | None) -> np.ndarray:
        """A share of x o y for kind in {"mul", "matmul", "conv2d"} (logical shapes valid
        for the kind), truncated by `bits` (None: not truncated)."""

    @abstractmethod
    def products(self, ctx, kind: str, operands, bits: int | None) -> list[np.ndarray]:
        """Several independent products in the rounds of one."""

    @abstractmethod
    def square(self, ctx, xs: np.ndarray, bits: int | None) -> np.ndarray:
        """A share of x * x, truncated by `bits`."""

    @abstractmethod
    def truncate(self, ctx, xs: np.ndarray, bits: int) -> np.ndarray:
        """A share of x / 2^bits: floor or floor + 1 for |x| < 2^62 (see each protocol)."""

    def bernoulli_bits(self, ctx, n: int, p: float) -> np.ndarray:
        """Shares of n secret Bernoulli(p) bits (integer 0/1) that no party knows (flat)."""
        raise NotImplementedError(f"the {self.name} protocol has no secret Bernoulli "
                                  "sampling (mpc.bernoulli): use the dealer protocol")

    @abstractmethod
    def less_than_zero(self, ctx, zs: np.ndarray, select: bool = False):
        """Shares of [z < 0] as integer 0/1 (and of z * [z < 0] with `select`, else None)
        for a flat secret z."""

    def hinge_sums(self, ctx, zs: np.ndarray, weights: np.ndarray, bits: int,
                   label: str) -> np.ndarray:
        """Shares of sum_k weights_k min(z[..., k], 0) / 2^bits (floor or floor + 1) for a
        secret z of shape (..., K) and public integer weights (K,) uint64, of shape (...):
        one comparison with select (booked under `label`), the local weighted sum and
        one truncation. A protocol may do it in fewer rounds (the replicated one)."""
        shape = self.shape(zs)
        with ctx.operation(label):
            _, below = self.less_than_zero(ctx, self.local(lambda c: c.reshape(-1), zs),
                                           select=True)
        weighted = self.local(lambda c: np.sum(c.reshape(shape) * weights, axis=-1,
                                               dtype=np.uint64), below)
        with ctx.operation(label):
            return self.truncate(ctx, weighted, bits)
