"""Turning a party's private input into shares, and shares back into values."""

from __future__ import annotations

import numpy as np

from mpc.tensor import SecretTensor, ShapeError, concatenate


def share(ctx, value, owner: int = 0, shape=None) -> SecretTensor:
    """[x] from `value`, held by party `owner` (the others pass None).

    The protocol's input step makes the shares (see its `input`: the dealer protocol sends
    nothing, the others' shares coming from pairwise seeds; the replicated one sends one
    ring element per element to each other party). If the non-owners do not know the shape
    they may omit it; the owner then broadcasts it (one small round). The owner's value is
    encoded as fixed point (ValueError for NaN, inf or out of range).

    Rounds: the protocol's input (+ 1, a few bytes, without `shape`).
    Example:
        x = mpc.share(ctx, np.ones(3) if ctx.pid == 0 else None, owner=0, shape=(3,))
    """
    if not 0 <= owner < ctx.n_parties:
        raise ValueError(f"owner {owner} is not a party (0..{ctx.n_parties - 1})")
    encoded = ctx.fixed.encode(value) if ctx.pid == owner else None
    with ctx.operation("share"):
        if shape is None:
            dims = encoded.shape if encoded is not None else None
            shape = tuple(int(d) for d in ctx.broadcast(owner, np.array(dims, dtype=np.int64)
                                                        if dims is not None else None,
                                                        np.int64, "share-shape"))
        shape = tuple(shape)
        if encoded is not None and encoded.shape != shape:
            raise ValueError(f"share: party {owner}'s value has shape {encoded.shape}, "
                             f"the declared shape is {shape}")
        return SecretTensor(ctx, ctx.protocol.input(ctx, encoded, owner, shape))


def share_rows(ctx, my_rows) -> SecretTensor:
    """[rows of party 0; rows of party 1; ...]: each party passes its own rows (a 2-D or
    higher array, or None for none) and all get the union, secret-shared, in party order
    (horizontal partitioning: each hospital has its own patients). Row counts need not be
    known in advance (each owner announces its shape).

    Rounds: n (one shape announcement per party) + the protocol's inputs.
    Example:
        x = mpc.share_rows(ctx, np.load(f"hospital{ctx.pid}.npy"))
    """
    return _share_blocks(ctx, my_rows, 0, "share_rows")


def share_columns(ctx, my_columns) -> SecretTensor:
    """[columns of party 0 | columns of party 1 | ...] (vertical partitioning: each party
    holds some features of the same records, in the same row order). Each party passes its
    own [rows, k] array (or None); row counts must agree (ShapeError otherwise).

    Rounds: n + the protocol's inputs.
    Example:
        x = mpc.share_columns(ctx, lab_results if ctx.pid == 0 else demographics)
    """
    return _share_blocks(ctx, my_columns, 1, "share_columns")


def _share_blocks(ctx, mine, axis: int, name: str) -> SecretTensor:
    """Each party's block, shared in party order and joined along `axis`."""
    blocks, owners = [], []
    for owner in range(ctx.n_parties):
        block = mine if ctx.pid == owner else None
        if block is not None and np.ndim(block) <= axis:
            raise ShapeError(f"{name}: party {owner}'s block has shape {np.shape(block)}; "
                             f"it needs an axis {axis} to join along")
        if block is not None and np.shape(block)[axis] == 0:
            block = None
        with ctx.operation("share"):
            present = ctx.broadcast(owner, np.array([block is not None], np.int64)
                                    if ctx.pid == owner else None, np.int64, "share-blocks")
        if present[0]:
            blocks.append(share(ctx, block, owner=owner))
            owners.append(owner)
    if not blocks:
        raise ValueError(f"{name}: no party contributed anything")
    for owner, block in zip(owners, blocks):
        if np.delete(block.shape, axis).tolist() != np.delete(blocks[0].shape, axis).tolist():
            raise ShapeError(f"{name}: party {owner}'s block has shape {block.shape}, party "
                             f"{owners[0]}'s {blocks[0].shape}: only axis {axis} may differ")
    return blocks[0] if len(blocks) == 1 else concatenate(blocks, axis=axis)


def share_public(ctx, value) -> SecretTensor:
    """A public value as a (trivial) sharing: no randomness, no message."""
    return SecretTensor(ctx, ctx.protocol.public(ctx, ctx.fixed.encode(value)))


def reveal(x: SecretTensor, to: int | None = None, *, noise: float | None = None,
           colluders: int | None = None):
    """Open [x] to every party (float64), or only to party `to` (None elsewhere); with
    `noise`, open x + discrete Gaussian noise instead (see mpc.noise.add_noise).
    Example:
        mpc.reveal(x.sum(), noise=2.0)    # each party adds std 2.0: safe against n-1 colluders
    """
    if to is None:
        return x.reveal(noise=noise, colluders=colluders)
    return x.reveal_to(to, noise=noise, colluders=colluders)
