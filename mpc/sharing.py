"""Turning a party's private input into shares, and shares back into values."""

from __future__ import annotations

import numpy as np

from net import ProtocolError

from mpc.tensor import SecretTensor, ShapeError, concatenate


def share(ctx, value, owner: int = 0, shape=None) -> SecretTensor:
    """[x] from `value`, held by party `owner` (the others pass None; their value is
    ignored).

    1. The owner encodes its value as fixed point (ValueError for NaN, inf or out of
       range, TypeError for what is not real numbers) before anything is sent.
    2. Every party sends every other the shape it holds (the owner: its value's), the
       shape it declares (`shape`, which the non-owners may omit) and the owner it names
       (all must name the same: a party that passes owner=ctx.pid by mistake is refused,
       not left holding a sharing of nothing), so every party checks
       the same thing and raises the same ShapeError, naming both parties and both
       shapes, if a declared shape differs from the owner's: never garbage from parties
       that disagree, and nobody left waiting.
    3. The protocol's input step makes the shares (see its `input`: the dealer protocol
       sends nothing, the others' shares coming from pairwise seeds; the replicated one
       sends one ring element per element to each other party).

    Rounds: 1 (a few bytes: 8 (4 + dimensions held + dimensions declared) to each peer)
    + the protocol's input.
    Example:
        x = mpc.share(ctx, np.ones(3) if ctx.pid == 0 else None, owner=0, shape=(3,))
    """
    if not 0 <= owner < ctx.n_parties:
        raise ValueError(f"owner {owner} is not a party (0..{ctx.n_parties - 1})")
    encoded = ctx.fixed.encode(value) if ctx.pid == owner else None
    declared = None if shape is None else tuple(int(d) for d in np.atleast_1d(shape))
    with ctx.operation("share"):
        held, said, named = _announce(ctx, "share-shape", [
            None if encoded is None else encoded.shape, declared, (owner,)])
        for p in range(ctx.n_parties):
            if named[p] != (owner,):
                raise ShapeError(f"share: party {ctx.pid} shares party {owner}'s value, but "
                                 f"party {p} names party {named[p][0]} as its owner")
        value_shape = held[owner]
        for p in [owner] + [q for q in range(ctx.n_parties) if q != owner]:
            if said[p] is not None and said[p] != value_shape:
                whose = "it" if p == owner else f"party {p}"
                raise ShapeError(f"share: party {owner}'s value has shape {value_shape}, "
                                 f"but {whose} declared shape {said[p]}")
        return SecretTensor(ctx, ctx.protocol.input(ctx, encoded, owner, value_shape))


def _announce(ctx, op: str, shapes: list) -> list[list]:
    """Every party's list of shapes (each a tuple or None) to every party, in one round:
    returns, for each position in `shapes`, the list of every party's entry there."""
    words = []
    for s in shapes:
        words += [-1] if s is None else [len(s), *s]
    mine = np.array(words, dtype=np.int64)
    got = ctx.transport.exchange(ctx.next_seq(), op, {p: mine for p in ctx.peers},
                                 {p: (np.int64, None) for p in ctx.peers})
    got[ctx.pid] = mine
    parsed = [_parse_shapes(got[p], len(shapes), p, op) for p in range(ctx.n_parties)]
    return [[parsed[p][i] for p in range(ctx.n_parties)] for i in range(len(shapes))]


def _parse_shapes(words: np.ndarray, count: int, frm: int, op: str) -> list:
    out, i = [], 0
    try:
        for _ in range(count):
            ndim = int(words[i])
            dims = tuple(int(d) for d in words[i + 1:i + 1 + max(ndim, 0)])
            if ndim < -1 or len(dims) != max(ndim, 0) or any(d < 0 for d in dims):
                raise ValueError
            out.append(None if ndim == -1 else dims)
            i += 1 + max(ndim, 0)
        if i != words.size:
            raise ValueError
    except (ValueError, IndexError):
        raise ProtocolError(f"party {frm} sent a malformed {op!r} message: "
                            f"{words.tolist()}") from None
    return out


def share_rows(ctx, my_rows) -> SecretTensor:
    """[rows of party 0; rows of party 1; ...]: each party passes its own rows (a 2-D or
    higher array, or None for none) and all get the union, secret-shared, in party order
    (horizontal partitioning: each hospital has its own patients). Row counts need not be
    known in advance: every party announces its block's shape to every other in one
    round, and all check them alike (ShapeError naming both parties if they do not fit).

    Rounds: 1 + the protocol's inputs. Comm: 8 (1 + dimensions) bytes to each peer, then
    the protocol's inputs.
    Example:
        x = mpc.share_rows(ctx, np.load(f"hospital{ctx.pid}.npy"))
    """
    return _share_blocks(ctx, my_rows, 0, "share_rows")


def share_columns(ctx, my_columns) -> SecretTensor:
    """[columns of party 0 | columns of party 1 | ...] (vertical partitioning: each party
    holds some features of the same records, in the same row order). Each party passes its
    own [rows, k] array (or None); row counts must agree (ShapeError otherwise).

    Rounds: 1 + the protocol's inputs. Comm: 8 (1 + dimensions) bytes to each peer, then
    the protocol's inputs.
    Example:
        x = mpc.share_columns(ctx, lab_results if ctx.pid == 0 else demographics)
    """
    return _share_blocks(ctx, my_columns, 1, "share_columns")


def _share_blocks(ctx, mine, axis: int, name: str) -> SecretTensor:
    """Each party's block, shared in party order and joined along `axis`."""
    encoded = None if mine is None else ctx.fixed.encode(mine)
    with ctx.operation("share"):
        (shapes,) = _announce(ctx, "share-blocks",
                              [None if encoded is None else encoded.shape])
    owners = [p for p, s in enumerate(shapes) if s is not None and (len(s) <= axis or s[axis])]
    for p in owners:
        if len(shapes[p]) <= axis:
            raise ShapeError(f"{name}: party {p}'s block has shape {shapes[p]}; "
                             f"it needs an axis {axis} to join along")
    if not owners:
        raise ValueError(f"{name}: no party contributed anything")
    first = shapes[owners[0]]
    for p in owners[1:]:
        if np.delete(shapes[p], axis).tolist() != np.delete(first, axis).tolist():
            raise ShapeError(f"{name}: party {p}'s block has shape {shapes[p]}, party "
                             f"{owners[0]}'s {first}: only axis {axis} may differ")
    with ctx.operation("share"):
        blocks = [SecretTensor(ctx, ctx.protocol.input(ctx, encoded if p == ctx.pid else None,
                                                       p, shapes[p]))
                  for p in owners]
    return blocks[0] if len(blocks) == 1 else concatenate(blocks, axis=axis)


def share_public(ctx, value) -> SecretTensor:
    """A public value as a (trivial) sharing: no randomness, no message. Every party must
    pass the same value (nothing checks that they agree: for a value only one party
    knows, use `share`). Rounds: 0. Comm: none."""
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
