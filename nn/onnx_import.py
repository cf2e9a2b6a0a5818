"""nn.from_onnx: an ONNX graph (what torch.onnx.export, tf2onnx and skl2onnx write) becomes
an nn.Graph with its weights, for private training or private inference.

nn.onnx_plan reads and checks the model in the clear (only where the model is); here the
layers are built on every party and the weights shared: public (every party reads the
same file), secret-shared by the owner party (only it reads the file; the others receive
the public description, never a weight), or by an owner who is not a party (it shares
onnx_to_npz's file with `mpc share`; the parties open the description, never a weight).
"""

from __future__ import annotations

import json
import math

import numpy as np

import mpc
from nn.graph import Graph
from nn.module import Buffer, Parameter
from nn.onnx_plan import OnnxImportError, plan

DESCRIPTION = "__description__"  # onnx_to_npz's array of the description's JSON bytes


NEEDS_CTX = ("Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "Dropout", "LayerNorm")


def _layer(ctx, kind: str, args: dict):
    import nn  # the package's layers, also those added after this module
    cls = getattr(nn, kind)
    args = dict(args)
    if kind in ("Linear", "Conv2d"):
        positional = [args.pop(k) for k in ("in_features", "out_features")] if kind == "Linear" \
            else [args.pop(k) for k in ("in_channels", "out_channels", "kernel_size")]
        return cls(ctx, *positional, **args)
    return cls(ctx, **args) if kind in NEEDS_CTX else cls(**args)


def _set(module, attr: str, value) -> None:
    held = getattr(module, attr)
    if isinstance(held, (Parameter, Buffer)):
        held.value = value
    else:
        setattr(module, attr, value)


def from_onnx(source, ctx, *, owner: int | str | None = None):
    """An nn.Graph running the ONNX model `source` (a path, bytes or an onnx.ModelProto),
    in eval mode (Dropout off, BatchNorm on its running statistics; .train() to train).

    owner=None: the weights are public; every party passes the same model. owner=k: only
    party k passes it (the others pass None; nothing else they pass is read) and
    secret-shares its weights, so a model's owner can run it on others' data without
    showing it: the others learn the architecture (layer kinds, settings and weight
    shapes), never a weight. A model nn cannot run is refused (OnnxImportError naming each
    node) on every party before anything is shared. owner="name": an owner who is not a
    party shared onnx_to_npz's file with `mpc share --owner name` (every party passes
    None); the parties open the description (public) and take the weights' shares.
    Rounds: 1 (public: the parties compare digests of their copies, mpc.check_same), 2
    (owner party: the description, then one share of all the weights), 1 (outside owner:
    the description's opening).
    Example:
        model = nn.from_onnx("cnn.onnx" if ctx.pid == 0 else None, ctx, owner=0)
    """
    if owner is None:
        description, arrays = plan(source)
        mpc.check_same(ctx, "from_onnx(owner=None): the models", json.dumps(
            description, sort_keys=True), *(arrays[k] for k in sorted(arrays)))
        return _build(ctx, description, lambda key: mpc.share_public(ctx, arrays[key]))
    if isinstance(owner, str):
        return _from_outside(ctx, owner)
    if not 0 <= owner < ctx.n_parties:
        raise ValueError(f"from_onnx: owner {owner} is not a party (0..{ctx.n_parties - 1})")
    description, arrays = _from_owner(ctx, source, owner)
    shapes = [(key, tuple(shape)) for entry in description["nodes"]
              for key, shape in entry["tensors"].values()]
    sizes = [math.prod(shape) for _, shape in shapes]  # one flat vector: one share, 1 round
    mine = np.concatenate([arrays[key].reshape(-1) for key, _ in shapes] or [np.zeros(0)]) \
        if ctx.pid == owner else None
    flat, tensors, start = mpc.share(ctx, mine, owner, shape=(sum(sizes),)), {}, 0
    for (key, shape), size in zip(shapes, sizes):
        tensors[key] = flat[start:start + size].reshape(shape)
        start += size
    return _build(ctx, description, tensors.__getitem__)


def onnx_to_npz(source, path) -> None:
    """For a model's owner who is not a computing party: check the model (refused as
    plan refuses it, before anything leaves) and write `path`, an .npz of its weights and
    its public description, for `mpc share --owner NAME path`; the parties then call
    nn.from_onnx(None, ctx, owner="NAME").
    Example:
        nn.onnx_to_npz("cnn.onnx", "cnn_for_sharing.npz")
    """
    description, arrays = plan(source)
    codes = np.frombuffer(json.dumps(description).encode(), dtype=np.uint8)
    np.savez(path, **{DESCRIPTION: codes.astype(np.float64)}, **arrays)


def _from_outside(ctx, owner: str):
    """The description opened among the parties, the weights as the owner shared them."""
    with ctx.operation("onnx-plan"):
        codes = mpc.input_from(ctx, owner, DESCRIPTION).reveal()  # public by design
    try:
        description = json.loads(bytes(np.rint(codes).astype(np.uint8)).decode())
        shapes = {key: tuple(shape) for entry in description["nodes"]
                  for key, shape in entry["tensors"].values()}
    except (ValueError, KeyError, TypeError) as exc:
        raise OnnxImportError(f"owner {owner}'s {DESCRIPTION!r} is not a model description "
                              f"(share the file nn.onnx_to_npz writes): {exc}") from None
    weights = {key: mpc.input_from(ctx, owner, key) for key in shapes}
    wrong = [f"{key}: {w.shape}, the description says {shapes[key]}"
             for key, w in weights.items() if tuple(w.shape) != shapes[key]]
    if wrong:
        raise OnnxImportError(f"owner {owner}'s weights do not fit its description: "
                              + "; ".join(wrong))
    return _build(ctx, description, weights.__getitem__)


def _from_owner(ctx, source, owner: int):
    """The owner plans and sends the description (or its refusal) to every party."""
    arrays, message = None, None
    if ctx.pid == owner:
        try:
            if source is None:
                raise ValueError(f"party {owner} is the model's owner and passed None")
            description, arrays = plan(source)
            message = {"ok": description}
        except (ValueError, FileNotFoundError, TypeError) as exc:  # OnnxImportError too
            message = {"error": f"{type(exc).__name__}: {exc}"}
    payload = np.frombuffer(json.dumps(message).encode(), dtype=np.uint8) \
        if ctx.pid == owner else None
    with ctx.operation("onnx-plan"):
        received = json.loads(bytes(ctx.broadcast(owner, payload, np.uint8, "onnx-plan"))
                              .decode())
    if "error" in received:
        raise OnnxImportError(f"party {owner}'s model: {received['error']}")
    return received["ok"], arrays


def _build(ctx, description: dict, tensor):
    """The Graph of `description`, each weight from tensor(its name)."""
    graph = Graph(description["input"])
    for entry in description["nodes"]:
        module = _layer(ctx, entry["kind"], entry["args"])
        for attr, (key, _) in entry["tensors"].items():
            _set(module, attr, tensor(key))
        graph.add(entry["name"], module, *entry["inputs"])
    graph.output = description["output"]
    return graph.eval()
