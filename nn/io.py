"""Plain models in and out: start from (or evaluate privately) weights in an ordinary .npz,
and reveal a trained model to an .npz that plain numpy code can use.

Names are Module.named_parameters()'s and named_buffers()'s ("weight", "2.bias",
"1.running_mean"), as PyTorch's state_dict names them, and so are the layouts: a Linear's
weight is [out, in] in the file (y = x @ W.T + b, as torch.nn.Linear; nn.Linear keeps W.T
internally), a Conv2d's [out, in, kh, kw]. Files
written here carry the key "__format__" = "mpc-dl/2" saying so. A file without it (a
PyTorch state_dict saved by numpy, or an .npz written before the marker, with Linear
weights [in, out]) loads only with its layout named: layout="torch" or layout="in_out".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import mpc
from nn.layers import Linear

FORMAT_KEY, FORMAT = "__format__", "mpc-dl/2"
LAYOUTS = ("torch", "in_out")


def save_npz(model, path, *, to: int | None = 0) -> dict[str, np.ndarray] | None:
    """Reveal every parameter and buffer to party `to` (default 0; None: every party),
    which writes them to `path` (party 0 when all see them) in PyTorch's layout with the
    format marker; returns the arrays where revealed, else None. Rounds: 1."""
    named = model.named_parameters() + model.named_buffers()
    if not named:
        raise ValueError("the model has no parameters to save")
    ctx = named[0][1].value.ctx
    flat = mpc.concatenate([p.value.reshape(-1) for _, p in named])
    values = flat.reveal() if to is None else flat.reveal_to(to)
    if values is None:
        return None
    arrays, start, transposed = {}, 0, _linear_weights(model)
    for name, p in named:
        value = values[start:start + p.value.size].reshape(p.value.shape)
        arrays[name] = value.T if name in transposed else value
        start += p.value.size
    if ctx.pid == (to or 0):
        np.savez(Path(path), **arrays, **{FORMAT_KEY: np.array(FORMAT)})
    return arrays


def load_npz(model, source, *, owner: int | None = None, layout: str | None = None) -> None:
    """Set the model's parameters from an .npz path or a dict of arrays, in PyTorch's
    layout (a Linear's weight [out, in]) when the source says so by its format marker
    (save_npz writes it) or `layout="torch"`; `layout="in_out"` reads the files written
    before the marker (Linear weights [in, out]). A source without the marker, for a model
    with a Linear layer, is refused unless `layout` is given: a square weight fits both
    ways, and guessing would load it transposed without a word.

    With `owner=None` the weights are public: every party passes the same source (a
    seeded or published start). With `owner=k` only party k has them (the others pass
    None) and they are secret-shared: a plain model evaluated privately, its owner's
    weights never seen. Names and shapes must match the model's (ValueError naming each
    difference). Rounds: 0 (public), 1 (owner: one mpc.share of all the weights)."""
    named = model.named_parameters() + model.named_buffers()
    if owner is None or _pid(named) == owner:
        arrays, flipped = _in_our_layout(_read(source), _linear_weights(model), layout)
        problems = [f"{n}: missing" for n, _ in named if n not in arrays]
        problems += [_misfit(n, arrays[n].shape, p.value.shape, n in flipped)
                     for n, p in named if n in arrays and arrays[n].shape != p.value.shape]
        problems += [f"{n}: not a parameter of the model" for n in arrays
                     if n not in dict(named)]
        if problems:
            raise ValueError("weights do not fit the model: " + "; ".join(problems))
    ctx = named[0][1].value.ctx
    if owner is None:
        for name, p in named:
            p.value = mpc.share_public(ctx, arrays[name])
        return
    sizes = [p.value.size for _, p in named]  # one flat vector: one share, 1 round
    mine = np.concatenate([arrays[n].reshape(-1) for n, _ in named]) if ctx.pid == owner \
        else None
    flat, start = mpc.share(ctx, mine, owner, shape=(sum(sizes),)), 0
    for (_, p), size in zip(named, sizes):
        p.value = flat[start:start + size].reshape(p.value.shape)
        start += size


def _misfit(name: str, theirs: tuple, ours: tuple, flipped: bool) -> str:
    if flipped:  # say it in the file's layout
        return (f"{name}: shape {theirs[::-1]} ([out, in]), the model has "
                f"{tuple(ours)[::-1]}")
    return f"{name}: shape {theirs}, the model has {tuple(ours)}"


def _pid(named) -> int:
    return named[0][1].value.ctx.pid


def _linear_weights(model) -> set[str]:
    """Names of the Linear weights among the model's parameters (stored [in, out])."""
    return {f"{prefix}.weight" if prefix else "weight" for prefix, m in model.named_modules()
            if isinstance(m, Linear)}


def _in_our_layout(arrays: dict, linear_weights: set[str],
                   layout: str | None) -> tuple[dict, set[str]]:
    """The arrays with Linear weights as nn.Linear holds them ([in, out]), and the names
    of those transposed. PyTorch's BatchNorm step counters are dropped (not weights)."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {LAYOUTS}")
    marker = arrays.pop(FORMAT_KEY, None)
    if marker is not None:
        if str(marker) != FORMAT:
            raise ValueError(f"the weights' format is {str(marker)!r}; this version reads "
                             f"{FORMAT!r}")
        if layout == "in_out":
            raise ValueError(f"layout='in_out' contradicts the file's marker {FORMAT!r} "
                             f"(PyTorch's layout)")
        layout = "torch"
    elif layout is None and linear_weights & set(arrays):
        raise ValueError("the weights carry no format marker, so the layout of the Linear "
                         "weights is unknown: pass layout='torch' ([out, in], PyTorch's "
                         "state_dict and save_npz's files) or layout='in_out' ([in, out], "
                         "files saved before the marker)")
    arrays = {k: v for k, v in arrays.items() if not k.endswith("num_batches_tracked")}
    flipped = {k for k, v in arrays.items() if layout == "torch" and k in linear_weights
               and v.ndim == 2}
    return {k: v.T if k in flipped else v for k, v in arrays.items()}, flipped


def _read(source) -> dict:
    if isinstance(source, dict):
        return {k: v if k == FORMAT_KEY else np.asarray(v, dtype=np.float64)
                for k, v in source.items()}
    with np.load(source) as data:
        return {k: data[k] if k == FORMAT_KEY else data[k].astype(np.float64)
                for k in data.files}
