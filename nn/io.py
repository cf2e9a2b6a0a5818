"""Plain models in and out: start from (or evaluate privately) weights in an ordinary .npz,
and reveal a trained model to an .npz that plain numpy code can use.

Names are Module.named_parameters()'s ("weight", "2.bias"); a Linear's weight is
[in, out] (y = x @ weight + bias), a Conv2d's [out, in, kh, kw].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import mpc


def save_npz(model, path, *, to: int | None = 0) -> dict[str, np.ndarray] | None:
    """Reveal every parameter to party `to` (default 0; None: every party), which writes
    them to `path` (party 0 when all see them); returns the arrays where revealed, else
    None. Rounds: 1."""
    named = model.named_parameters()
    if not named:
        raise ValueError("the model has no parameters to save")
    ctx = named[0][1].value.ctx
    flat = mpc.concatenate([p.value.reshape(-1) for _, p in named])
    values = flat.reveal() if to is None else flat.reveal_to(to)
    if values is None:
        return None
    arrays, start = {}, 0
    for name, p in named:
        arrays[name] = values[start:start + p.value.size].reshape(p.value.shape)
        start += p.value.size
    if ctx.pid == (to or 0):
        np.savez(Path(path), **arrays)
    return arrays


def load_npz(model, source, *, owner: int | None = None) -> None:
    """Set the model's parameters from an .npz path or a dict of arrays.

    With `owner=None` the weights are public: every party passes the same source (a
    seeded or published start). With `owner=k` only party k has them (the others pass
    None) and they are secret-shared: a plain model evaluated privately, its owner's
    weights never seen. Names and shapes must match the model's (ValueError naming each
    difference). Rounds: 0."""
    named = model.named_parameters()
    if owner is None or _pid(named) == owner:
        arrays = _read(source)
        problems = [f"{n}: missing" for n, _ in named if n not in arrays]
        problems += [f"{n}: shape {arrays[n].shape}, the model has {tuple(p.value.shape)}"
                     for n, p in named if n in arrays and arrays[n].shape != p.value.shape]
        problems += [f"{n}: not a parameter of the model" for n in arrays
                     if n not in dict(named)]
        if problems:
            raise ValueError("weights do not fit the model: " + "; ".join(problems))
    for name, p in named:
        ctx = p.value.ctx
        if owner is None:
            p.value = mpc.share_public(ctx, arrays[name])
        else:
            mine = arrays[name] if ctx.pid == owner else None
            p.value = mpc.share(ctx, mine, owner, shape=p.value.shape)


def _pid(named) -> int:
    return named[0][1].value.ctx.pid


def _read(source) -> dict[str, np.ndarray]:
    if isinstance(source, dict):
        return {k: np.asarray(v, dtype=np.float64) for k, v in source.items()}
    with np.load(source) as data:
        return {k: data[k].astype(np.float64) for k in data.files}
