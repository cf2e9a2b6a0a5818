"""Checkpoints: each party writes its own shares of the parameters and optimiser state,
atomically, and the parties resume together from the newest epoch all of them have.

A party's file `party<ID>-epoch<E>.npz` holds only its shares (useless alone) and the
optimiser's `state()` (shares and public counters). The last two epochs are kept, since a
crash can fall between two parties' writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import mpc

KEEP = 2
SECRET, PUBLIC = "optim-secret-", "optim-public-"  # key prefixes of the optimiser's state


def _file(directory: Path, pid: int, epoch: int) -> Path:
    return directory / f"party{pid}-epoch{epoch}.npz"


def save(directory, ctx, parameters, optimizer, epoch: int) -> Path:
    """Write this party's shares after `epoch` (write to a temporary file, then rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"param{i}": p.value.share for i, p in enumerate(parameters)}
    for name, value in optimizer.state().items():
        if isinstance(value, mpc.SecretTensor):
            arrays[f"{SECRET}{name}"] = value.share
        elif value is not None:
            arrays[f"{PUBLIC}{name}"] = np.asarray(value)
    path = _file(directory, ctx.pid, epoch)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, path)
    for old in _epochs(directory, ctx.pid)[:-KEEP]:
        _file(directory, ctx.pid, old).unlink(missing_ok=True)
    return path


def _epochs(directory: Path, pid: int) -> list[int]:
    found = [int(p.stem.split("epoch")[1]) for p in directory.glob(f"party{pid}-epoch*.npz")
             if not p.name.endswith(".tmp.npz")]
    return sorted(found)


def _optimizer_state(ctx, saved, names) -> dict:
    """The optimiser's state dict from a checkpoint: shares as SecretTensors, public values
    as numbers, and None for every name that was not saved (not created yet)."""
    state = dict.fromkeys(names)
    for key in saved.files:
        if key.startswith(SECRET):
            state[key[len(SECRET):]] = mpc.SecretTensor(ctx, saved[key])
        elif key.startswith(PUBLIC):
            state[key[len(PUBLIC):]] = saved[key].item()
    return state


def resume(directory, ctx, parameters, optimizer) -> int:
    """Load the newest epoch every party has and return it (0 when there is none).
    One small exchange per party: each announces the epochs it holds."""
    directory = Path(directory)
    mine = _epochs(directory, ctx.pid) if directory.exists() else []
    common = set(mine)
    for owner in range(ctx.n_parties):
        theirs = ctx.broadcast(owner, np.array(mine, dtype=np.int64) if owner == ctx.pid
                               else None, np.int64, "checkpoint-epochs")
        common &= set(int(e) for e in theirs)
    if not common:
        return 0
    epoch = max(common)
    with np.load(_file(directory, ctx.pid, epoch)) as saved:
        for i, p in enumerate(parameters):
            p.value = mpc.SecretTensor(ctx, saved[f"param{i}"])
        optimizer.load_state(_optimizer_state(ctx, saved, optimizer.state()))
    return epoch
