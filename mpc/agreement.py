"""Checking that every party holds the same public value (a model's weights, a setting),
without sending the value: parties that read their own copies of a file can disagree."""

from __future__ import annotations

import hashlib

import numpy as np


def check_same(ctx, what: str, *values) -> None:
    """Refuse (ValueError naming the parties) unless every party passed equal `values`
    (numpy arrays, bytes or str; compared by SHA-256 of dtype, shape and bytes).

    1. Each party hashes its values; 2. every party sends its 32-byte digest to every other
    and compares them all, so every party raises the same error.
    Rounds: 1. Comm: 32 bytes to each peer.
    Example:
        mpc.check_same(ctx, "the model's weights", *arrays)
    """
    digest = hashlib.sha256()
    for value in values:
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, bytes):
            digest.update(b"b%d:" % len(value) + value)
            continue
        array = np.ascontiguousarray(value)
        digest.update(f"a{array.dtype.str}{array.shape}:".encode() + array.tobytes())
    mine = np.frombuffer(digest.digest(), dtype=np.uint8)
    with ctx.operation("check-same"):
        got = ctx.transport.exchange(ctx.next_seq(), "check-same", {p: mine for p in ctx.peers},
                                     {p: (np.uint8, (32,)) for p in ctx.peers})
    got[ctx.pid] = mine
    groups: dict[bytes, list[int]] = {}
    for p in range(ctx.n_parties):
        groups.setdefault(got[p].tobytes(), []).append(p)
    if len(groups) > 1:
        parts = "; ".join("parties " + ", ".join(map(str, g)) if len(g) > 1 else f"party {g[0]}"
                          for g in sorted(groups.values()))
        raise ValueError(f"{what} differ between the parties ({parts} hold different "
                         f"copies): every party must pass the same")
