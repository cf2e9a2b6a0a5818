"""What a checkpoint records of the run that wrote it, so that a later run resumes only
from a checkpoint of the same model trained the same way.

A record is a flat dict of public, JSON-able values: the model's structure (its layers'
types and settings, each parameter's name and shape), the optimiser and loss with their
hyper-parameters, the batch size, the seed, how batches are drawn, the data's shapes, the
number of parties and the fixed-point format (and the buffers' shapes: BatchNorm's running
statistics); and the number of epochs, the one setting a resumed run may change (training
on for longer).
"""

from __future__ import annotations

import json

from nn.module import Module
from nn.schedules import Schedule

MAY_CHANGE = ("epochs",)


def run_record(model, loss, optimizer, x, y, **settings) -> dict:
    """The record of training `model` on (x, y) with `loss`, `optimizer` and the named
    `settings` (epochs, batch_size, seed, sampling ...)."""
    ctx = x.ctx
    record = {"model": _structure(model)}
    for name, p in model.named_parameters():
        record[f"parameter {name}"] = list(p.value.shape)
    for name, b in model.named_buffers() if hasattr(model, "named_buffers") else []:
        record[f"buffer {name}"] = list(b.value.shape)
    record.update(_described("optimizer", optimizer))
    record.update(_described("loss", loss))
    record.update(settings)
    record.update({"data": f"x {tuple(x.shape)}, y {tuple(y.shape)}",
                   "parties": ctx.n_parties, "frac_bits": ctx.fixed.frac_bits,
                   "truncation": ctx.truncation})
    return json.loads(json.dumps(record))  # as it will read back: tuples become lists


def differences(saved: dict, now: dict) -> list[str]:
    """One line per entry that differs, "what: <saved> in the checkpoint, <now> now",
    leaving out MAY_CHANGE."""
    keys = list(saved) + [k for k in now if k not in saved]
    return [f"{key}: {_shown(saved, key)} in the checkpoint, {_shown(now, key)} now"
            for key in keys if key not in MAY_CHANGE and saved.get(key, ...) != now.get(key, ...)]


def _shown(record: dict, key: str) -> str:
    if key not in record:
        return "none"
    value = record[key]
    return str(tuple(value)) if isinstance(value, list) else str(value)


NOT_SETTINGS = ("training",)  # a module's mode, which fit sets itself


def _settings(obj) -> dict:
    """An object's public settings: its attributes that are plain values."""
    return {k: v for k, v in vars(obj).items()
            if not k.startswith("_") and k not in NOT_SETTINGS and _plain(v)}


def _plain(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _described(what: str, obj) -> dict:
    """{"optimizer": "SGD", "optimizer lr": 0.1, ...}; a learning-rate schedule as
    "CosineDecay(initial=0.1, ...)"."""
    found = {what: type(obj).__name__}
    for key, value in _settings(obj).items():
        if not (isinstance(value, list) and not value):  # e.g. an empty list of names
            found[f"{what} {key}"] = value
    for key, value in vars(obj).items():
        if isinstance(value, Schedule):
            shown = ", ".join(f"{k}={v!r}" for k, v in _settings(value).items())
            found[f"{what} {key}"] = f"{type(value).__name__}({shown})"
    return found


def _structure(module: Module) -> str:
    """"Sequential(Linear, ReLU, Conv2d(kernel=(3, 3), stride=(1, 1), padding=(0, 0)))"."""
    parts = [f"{k}={v!r}" for k, v in _settings(module).items() if not isinstance(v, list)]
    parts += [_structure(child) for _, child in module.children()]
    name = type(module).__name__
    return f"{name}({', '.join(parts)})" if parts else name
