"""Checkpoints: each party writes its own shares of the parameters and optimiser state,
atomically, and the parties resume together from the newest epoch all of them have.

A party's file `party<ID>-epoch<E>.npz` holds only its shares (useless alone), the
optimiser's `state()` (shares and public counters), and, in the clear, the record of the
run that wrote it (nn.run_record: model structure and training settings) and the history
of the epochs so far. A run resumes only from a checkpoint whose record matches its own,
and says so; a mismatch is refused naming what differs. The last two epochs are kept,
since a crash can fall between two parties' writes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

import mpc
from nn.run_record import differences

KEEP = 2
SECRET, PUBLIC = "optim-secret-", "optim-public-"  # key prefixes of the optimiser's state
RUN, HISTORY = "run-record", "history"              # keys of the JSON texts


class CheckpointMismatch(ValueError):
    """The checkpoint folder holds another model or a run with other settings."""


def _file(directory: Path, pid: int, epoch: int) -> Path:
    return directory / f"party{pid}-epoch{epoch}.npz"


def save(directory, ctx, parameters, optimizer, epoch: int, run: dict | None = None,
         history: list[dict] = ()) -> Path:
    """Write this party's shares after `epoch` with the `run` record and the `history` of
    epochs 1 to `epoch` (to a temporary file, then renamed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"param{i}": p.value.share for i, p in enumerate(parameters)}
    if run is not None:
        arrays[RUN] = np.array(json.dumps(run))
    arrays[HISTORY] = np.array(json.dumps(list(history), default=_plain))
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


def _plain(value):
    """numpy scalars in a history record as Python numbers."""
    return value.item() if hasattr(value, "item") else str(value)


def resume(directory, ctx, parameters, optimizer, run: dict | None = None) -> tuple[int, list]:
    """Load the newest epoch every party has; return it (0 when there is none) and the
    history of the epochs up to it. With `run` (this run's record), refuse a checkpoint
    written by another model or with other settings (CheckpointMismatch, naming what
    differs), and say on stderr where training resumes, or that it has finished.
    One small exchange per party: each announces the epochs it holds."""
    directory = Path(directory)
    mine = _epochs(directory, ctx.pid) if directory.exists() else []
    held = {}
    for owner in range(ctx.n_parties):
        theirs = ctx.broadcast(owner, np.array(mine, dtype=np.int64) if owner == ctx.pid
                               else None, np.int64, "checkpoint-epochs")
        held[owner] = [int(e) for e in theirs]
    common = set.intersection(*(set(e) for e in held.values()))
    epoch = max(common, default=None)
    if run is not None and mine:  # this party's newest file if none is common
        checked = mine[-1] if epoch is None else epoch
        path = _file(directory, ctx.pid, checked)
        with np.load(path) as saved:
            _check(path, checked, json.loads(saved[RUN].item()) if RUN in saved else None,
                   run)
    if epoch is None:
        if any(e > 0 for epochs in held.values() for e in epochs):
            shown = "; ".join(f"party {p}: {', '.join(map(str, e)) or 'none'}"
                              for p, e in held.items())
            raise CheckpointMismatch(
                f"checkpoint {directory}: the parties hold no epoch in common ({shown}), so "
                f"they cannot resume together: give each party its files back, or empty "
                f"the folder at every party to start afresh")
        return 0, []  # nothing, or only the first save of a run cut short: start afresh
    with np.load(_file(directory, ctx.pid, epoch)) as saved:
        recorded = json.loads(saved[RUN].item()) if RUN in saved else None
        history = json.loads(saved[HISTORY].item()) if HISTORY in saved else []
        for i, p in enumerate(parameters):
            p.value = mpc.SecretTensor(ctx, saved[f"param{i}"])
        optimizer.load_state(_optimizer_state(ctx, saved, optimizer.state()))
    if run is not None and epoch > 0:
        _announce(ctx, directory, epoch, recorded["epochs"], run["epochs"])
    return epoch, history[:epoch]


def _announce(ctx, directory: Path, epoch: int, saved_epochs: int, epochs: int) -> None:
    """One line on stderr: where training resumes, or that it has finished."""
    changed = f"epochs changed from {saved_epochs} to {epochs}; " \
        if saved_epochs != epochs else ""
    what = f"resuming from epoch {epoch} of {epochs}" if epoch < epochs else \
        f"training finished (epoch {epoch} of {epochs}): nothing to train, returning its history"
    print(f"party {ctx.pid}: checkpoint {directory}: {changed}{what}", file=sys.stderr,
          flush=True)


def _check(path: Path, epoch: int, saved: dict | None, run: dict) -> None:
    """Refuse to resume from `path` unless its record matches this run's."""
    folder = path.parent
    if saved is None:
        raise CheckpointMismatch(
            f"checkpoint {path} holds no record of the model and settings that wrote it "
            f"(an older version wrote it), so nothing says it fits this run: delete "
            f"{folder} or choose another checkpoint_dir")
    found = differences(saved, run)
    if epoch > run["epochs"]:
        found.append(f"epochs: the checkpoint is at epoch {epoch}, this run stops at "
                     f"{run['epochs']}")
    if found:
        listed = "".join(f"\n  {line}" for line in found)
        raise CheckpointMismatch(
            f"checkpoint {path} (epoch {epoch}) was written by another model or with other "
            f"settings, so this run cannot resume from it:{listed}\n"
            f"Run with the checkpoint's model and settings, or choose another "
            f"checkpoint_dir (or delete {folder}) to start afresh.")
