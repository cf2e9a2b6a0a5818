"""Reading an ONNX model in the clear: `plan(model)` checks every node and returns a
public description (nodes, their layer kinds and settings, every weight's shape) and the
weights, as arrays in nn's layouts under nn's parameter names. Anything nn cannot run is
refused here, all of it in one OnnxImportError naming each node's op type and name, before
any party shares anything (nn.onnx_import then builds and shares).

Parameter names follow the weights' initializer names where they end in ".weight" (so a
PyTorch export keeps its state_dict names: "conv1.weight"), else the ONNX node's name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


OPS = ("Add", "AveragePool", "BatchNormalization", "Concat", "Constant", "Conv", "Dropout",
       "Flatten", "Gelu", "Gemm", "GlobalAveragePool", "Identity", "LayerNormalization",
       "LogSoftmax", "MatMul", "MaxPool", "Relu", "Reshape", "Sigmoid", "Softmax", "Tanh")
HINTS = {"Erf": "; a GELU exported below opset 20 is written with Erf: export with opset "
                "20 or later, which has Gelu",
         "Shape": "; the shape is computed at run time: export with static shapes, or use "
                  "Flatten"}


class OnnxImportError(ValueError):
    """An ONNX model (or part of one) that nn cannot run; the message names every node."""


class _Upstream(Exception):
    """A node's input comes from a node already refused (reported there, not again)."""


REFUSED = "\0refused"  # the alias of a refused node's outputs


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX import and export need the onnx package: "
                          "pip install 'mpc-dl[onnx]'") from None
    return onnx


def load_model(source):
    """An onnx.ModelProto from a path, bytes or a ModelProto; clear errors otherwise."""
    onnx = _onnx()
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(source))
        except Exception as exc:  # protobuf's DecodeError and friends
            raise OnnxImportError(f"these bytes are not an ONNX model ({exc})") from None
    if not isinstance(source, (str, Path)):
        raise TypeError(f"from_onnx: expected a path, bytes or an onnx.ModelProto, got "
                        f"{type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"from_onnx: no ONNX file at {str(path)!r}")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise OnnxImportError(f"{str(path)!r} is not an ONNX model ({exc})") from None


def _attrs(node) -> dict:
    onnx = _onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _label(node, index: int) -> str:
    if node.name:
        return f"{node.op_type} node {node.name!r}"
    return f"{node.op_type} node #{index} (unnamed, output {node.output[0]!r})"


class _Planner:
    """Walks the ONNX graph in its (topological) order and writes the plan."""

    def __init__(self, model):
        onnx = _onnx()
        self.onnx = onnx
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          1)
        self.consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self.problems: list[str] = []
        self.nodes: list[dict] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.alias: dict[str, str] = {}  # ONNX value -> our value (graph input or a node)
        self.made_by: dict[str, dict] = {}  # our value -> its plan node
        self.uses: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                self.uses[name] = self.uses.get(name, 0) + 1
        for out in graph.output:
            self.uses[out.name] = self.uses.get(out.name, 0) + 1
        self.ranks = self._ranks(model)
        data_inputs = [i.name for i in graph.input if i.name not in self.consts]
        outputs = [o.name for o in graph.output]
        if len(data_inputs) != 1 or len(outputs) != 1:
            raise OnnxImportError(f"the graph has inputs {data_inputs} and outputs {outputs}:"
                                  f" nn runs graphs with one data input and one output")
        self.input, self.output = data_inputs[0], outputs[0]
        self.alias[self.input] = self.input
        self.taken = {self.input}

    def _ranks(self, model) -> dict[str, int]:
        """Each value's rank where ONNX's shape inference knows it."""
        try:
            inferred = self.onnx.shape_inference.infer_shapes(model).graph
        except Exception:  # inference is a help for checks, not a requirement
            inferred = model.graph
        ranks = {}
        for info in list(inferred.input) + list(inferred.value_info) + list(inferred.output):
            t = info.type.tensor_type
            if t.HasField("shape"):
                ranks[info.name] = len(t.shape.dim)
        return ranks

    # ------------------------------------------------------------------ helpers
    def _unique(self, want: str) -> str:
        name, k = want, 1
        while name in self.taken:
            k += 1
            name = f"{want}_{k}"
        self.taken.add(name)
        return name

    def _value(self, node, i: int) -> str:
        """Our name for the computed value at input i of node (ValueError if constant)."""
        name = node.input[i]
        if name in self.consts:
            raise ValueError(f"input {i} ({name!r}) is a constant; nn runs this op on a "
                             f"computed tensor only")
        if name not in self.alias:
            raise ValueError(f"input {name!r} is not computed by a node we run")
        if self.alias[name] == REFUSED:
            raise _Upstream
        return self.alias[name]

    def _const(self, node, i: int, what: str) -> np.ndarray | None:
        if i >= len(node.input) or node.input[i] == "":
            return None
        name = node.input[i]
        if name not in self.consts:
            source = "a graph input" if name == self.input else "computed at run time"
            raise ValueError(f"{what}, {name!r}, is {source}; nn needs a constant there (an "
                             f"initializer or a Constant node)")
        return np.asarray(self.consts[name])

    def _emit(self, node, kind: str, inputs: list[str], args: dict | None = None,
              tensors: dict[str, np.ndarray] | None = None, prefer: str | None = None) -> dict:
        name = self._unique(prefer or node.name or f"{node.op_type}_{len(self.nodes)}")
        entry = {"name": name, "kind": kind, "args": args or {}, "inputs": inputs,
                 "tensors": {}}
        for attr, array in (tensors or {}).items():
            key = f"{name}.{attr}"
            self.arrays[key] = np.asarray(array, dtype=np.float64)
            entry["tensors"][attr] = [key, list(self.arrays[key].shape)]
        self.nodes.append(entry)
        self.made_by[name] = entry
        self.alias[node.output[0]] = name
        return entry

    def _weight_prefix(self, node, i: int) -> str | None:
        """'conv1' when input i is the initializer 'conv1.weight' (a PyTorch export)."""
        name = node.input[i] if i < len(node.input) else ""
        return name[:-len(".weight")] if name.endswith(".weight") and len(name) > 7 else None

    @staticmethod
    def _check(attrs: dict, allowed: dict) -> None:
        """Refuse attribute values other than the ones in `allowed` (name -> test, text)."""
        for key, (ok, text) in allowed.items():
            if key in attrs and not ok(attrs[key]):
                value = attrs[key]
                value = value.decode() if isinstance(value, bytes) else value
                raise ValueError(f"{key}={value!r} is not supported ({text})")

    # ------------------------------------------------------------------ the walk
    def run(self, graph) -> dict:
        for index, node in enumerate(graph.node):
            try:
                self._node(node)
            except (ValueError, _Upstream) as exc:
                if isinstance(exc, ValueError):
                    self.problems.append(f"{_label(node, index)}: {exc}")
                self.alias.update({out: REFUSED for out in node.output})
        if not self.problems and self.output not in self.alias:
            self.problems.append(f"the graph's output {self.output!r} is not computed")
        elif not self.problems and self.alias[self.output] == self.input:
            self.problems.append("the graph's output is its input: nothing to compute")
        if self.problems:
            raise OnnxImportError(f"cannot run {len(self.problems)} part(s) of this ONNX "
                                  f"model:\n  " + "\n  ".join(self.problems) +
                                  f"\n(nn runs {', '.join(OPS)})")
        return {"input": self.input, "output": self.alias[self.output], "nodes": self.nodes}

    def _node(self, node) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"operators of domain {node.domain!r} are not supported")
        handler = getattr(self, f"_op_{node.op_type}", None)
        if handler is None:
            raise ValueError(f"operator not supported{HINTS.get(node.op_type, '')}")
        for extra in node.output[1:]:
            if extra and self.uses.get(extra):
                raise ValueError(f"its output {extra!r} is used; nn computes only the first "
                                 f"output of a node")
        handler(node, _attrs(node))

    # ------------------------------------------------------------------ operators
    def _op_Constant(self, node, attrs):
        if "value" not in attrs:
            raise ValueError(f"only a tensor 'value' is supported (got {sorted(attrs)})")
        self.consts[node.output[0]] = self.onnx.numpy_helper.to_array(attrs["value"])

    def _op_Identity(self, node, attrs):
        if node.input[0] in self.consts:
            self.consts[node.output[0]] = self.consts[node.input[0]]
        else:
            self.alias[node.output[0]] = self._value(node, 0)

    def _simple(kind):
        def handler(self, node, attrs):
            self._emit(node, kind, [self._value(node, 0)])
        return handler

    _op_Relu, _op_Sigmoid, _op_Tanh = _simple("ReLU"), _simple("Sigmoid"), _simple("Tanh")
    del _simple

    def _op_Gemm(self, node, attrs):
        self._check(attrs, {"transA": (lambda v: v == 0, "A must not be transposed")})
        x = self._value(node, 0)
        b = self._const(node, 1, "B, the weight")
        if b.ndim != 2:
            raise ValueError(f"B has shape {b.shape}; a 2-D weight is needed")
        weight = (b.T if attrs.get("transB", 0) else b) * attrs.get("alpha", 1.0)
        c = self._const(node, 2, "C, the bias")
        bias = np.zeros(weight.shape[1]) if c is None else \
            self._bias_vector(c * attrs.get("beta", 1.0), weight.shape[1], "C")
        self._linear(node, x, weight, bias)

    def _op_MatMul(self, node, attrs):
        x = self._value(node, 0)
        w = self._const(node, 1, "the second operand (the weight)")
        if w.ndim != 2:
            raise ValueError(f"the weight has shape {w.shape}; a 2-D weight is needed")
        self._linear(node, x, w, np.zeros(w.shape[1]))

    def _linear(self, node, x, weight, bias):
        if self.ranks.get(node.input[0], 2) != 2:
            raise ValueError(f"the input has rank {self.ranks[node.input[0]]}; nn's Linear "
                             f"takes [batch, features]")
        self._emit(node, "Linear", [x], {"in_features": weight.shape[0],
                                         "out_features": weight.shape[1]},
                   {"weight": weight, "bias": bias}, self._weight_prefix(node, 1))

    @staticmethod
    def _bias_vector(c: np.ndarray, out: int, what: str) -> np.ndarray:
        if c.size == 1:
            return np.full(out, float(c.reshape(-1)[0]))
        if c.size == out and c.shape[-1] == out:
            return c.reshape(out)
        raise ValueError(f"{what} has shape {c.shape}; a bias of {out} values is needed")

    def _op_Add(self, node, attrs):
        consts = [i for i in (0, 1) if node.input[i] in self.consts]
        if not consts:
            self._emit(node, "Add", [self._value(node, 0), self._value(node, 1)])
            return
        if len(consts) == 2:
            raise ValueError("both operands are constants (fold them before exporting)")
        x = self._value(node, 1 - consts[0])
        c = np.asarray(self.consts[node.input[consts[0]]], dtype=np.float64)
        layer = self.made_by.get(x)
        if layer is None or layer["kind"] not in ("Linear", "Conv2d") or self.uses.get(
                node.input[1 - consts[0]], 0) != 1:
            raise ValueError("adding a constant is supported only as the bias of the single "
                             "MatMul, Gemm or Conv before it")
        bias_key = layer["tensors"]["bias"][0]
        out = self.arrays[bias_key].size
        if layer["kind"] == "Conv2d" and c.size != 1:
            # ONNX broadcasts from the last axis: only [C, 1, 1] or [1, C, 1, 1] add per
            # channel ([C] or [1, C] would add along the image's width)
            if c.ndim not in (3, 4) or c.shape[-3:] != (out, 1, 1):
                raise ValueError(f"the constant has shape {c.shape}; after a Conv a bias per "
                                 f"channel [{out}, 1, 1] (or a scalar) is needed")
            c = c.reshape(out)
        self.arrays[bias_key] = self.arrays[bias_key] + self._bias_vector(c, out, "the constant")
        self.alias[node.output[0]] = x

    def _op_Conv(self, node, attrs):
        w = self._const(node, 1, "the weight")
        if w.ndim != 4:
            raise ValueError(f"the weight has shape {w.shape}; nn runs 2-D convolutions only")
        self._check(attrs, {
            "group": (lambda v: v == 1, "grouped convolutions are not; only group=1"),
            "dilations": (lambda v: all(d == 1 for d in v), "only 1"),
            "auto_pad": (lambda v: v in (b"NOTSET", b"VALID"), "only explicit pads"),
            "kernel_shape": (lambda v: list(v) == list(w.shape[2:]),
                             f"it must match the weight's {list(w.shape[2:])}")})
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if attrs.get("auto_pad") == b"VALID":
            pads = [0, 0, 0, 0]
        if pads[:2] != pads[2:]:
            raise ValueError(f"pads={pads} are not symmetric (begin and end must be equal)")
        b = self._const(node, 2, "the bias")
        bias = np.zeros(w.shape[0]) if b is None else self._bias_vector(b, w.shape[0], "B")
        self._emit(node, "Conv2d", [self._value(node, 0)],
                   {"in_channels": w.shape[1], "out_channels": w.shape[0],
                    "kernel_size": list(w.shape[2:]),
                    "stride": list(attrs.get("strides", [1, 1])), "padding": pads[:2]},
                   {"weight": w, "bias": bias}, self._weight_prefix(node, 1))

    def _pool(self, node, attrs, kind):
        kernel = list(attrs.get("kernel_shape", []))
        if len(kernel) != 2:
            raise ValueError(f"kernel_shape={kernel}: nn pools over 2-D windows only")
        self._check(attrs, {
            "pads": (lambda v: not any(v), "nn pools without padding"),
            "dilations": (lambda v: all(d == 1 for d in v), "only 1"),
            "ceil_mode": (lambda v: v == 0, "only floor"),
            "auto_pad": (lambda v: v in (b"NOTSET", b"VALID"), "only explicit pads"),
            "storage_order": (lambda v: v == 0, "only row major")})
        self._emit(node, kind, [self._value(node, 0)],
                   {"kernel_size": kernel, "stride": list(attrs.get("strides", [1, 1]))})

    def _op_MaxPool(self, node, attrs):
        self._pool(node, attrs, "MaxPool2d")

    def _op_AveragePool(self, node, attrs):
        self._pool(node, attrs, "AvgPool2d")

    def _op_GlobalAveragePool(self, node, attrs):
        rank = self.ranks.get(node.input[0], 4)
        if rank != 4:
            raise ValueError(f"the input has rank {rank}; nn pools [N, C, H, W]")
        self._emit(node, "GlobalAvgPool2d", [self._value(node, 0)])

    def _op_Flatten(self, node, attrs):
        self._check(attrs, {"axis": (lambda v: v == 1, "only axis=1: [batch, features]")})
        self._emit(node, "Flatten", [self._value(node, 0)])

    def _op_Reshape(self, node, attrs):
        self._check(attrs, {"allowzero": (lambda v: v == 0, "only 0")})
        x = self._value(node, 0)
        shape = self._const(node, 1, "the target shape")
        self._emit(node, "Reshape", [x], {"shape": [int(d) for d in shape.reshape(-1)]})

    def _op_Softmax(self, node, attrs):
        axis = attrs.get("axis", -1 if self.opset >= 13 else 1)
        rank = self.ranks.get(node.input[0])
        if self.opset < 13 and axis not in (-1, (rank or 0) - 1):
            raise ValueError(f"before opset 13 Softmax flattens from axis {axis}; nn "
                             f"supports it on the last axis only (input rank {rank})")
        self._emit(node, "Softmax", [self._value(node, 0)], {"axis": int(axis)})

    def _op_LogSoftmax(self, node, attrs):
        axis = attrs.get("axis", -1 if self.opset >= 13 else 1)
        rank = self.ranks.get(node.input[0])
        if self.opset < 13 and axis not in (-1, (rank or 0) - 1):
            raise ValueError(f"before opset 13 LogSoftmax flattens from axis {axis}; nn "
                             f"supports it on the last axis only (input rank {rank})")
        self._emit(node, "LogSoftmax", [self._value(node, 0)], {"axis": int(axis)})

    def _op_Gelu(self, node, attrs):
        self._check(attrs, {"approximate": (lambda v: v in (b"none", b"tanh"),
                                            "'none' or 'tanh'")})
        self._emit(node, "GELU", [self._value(node, 0)])

    def _op_LayerNormalization(self, node, attrs):
        self._check(attrs, {"stash_type": (lambda v: v == 1, "only float32 statistics")})
        scale = self._const(node, 1, "Scale")
        bias = self._const(node, 2, "B")
        axis, rank = int(attrs.get("axis", -1)), self.ranks.get(node.input[0])
        if (rank is not None and axis % rank != rank - scale.ndim) or \
                (rank is None and axis != -scale.ndim):
            raise ValueError(f"axis={axis} with a Scale of shape {scale.shape}: nn normalises "
                             f"the last dimensions, the Scale's shape")
        self._emit(node, "LayerNorm", [self._value(node, 0)],
                   {"normalized_shape": list(scale.shape),
                    "eps": float(attrs.get("epsilon", 1e-5))},
                   {"weight": scale, "bias": np.zeros(scale.shape) if bias is None else bias},
                   self._weight_prefix(node, 1))

    def _op_Concat(self, node, attrs):
        self._emit(node, "Concat", [self._value(node, i) for i in range(len(node.input))],
                   {"axis": int(attrs["axis"])})

    def _op_Dropout(self, node, attrs):
        ratio = self._const(node, 1, "ratio") if len(node.input) > 1 else None
        mode = self._const(node, 2, "training_mode") if len(node.input) > 2 else None
        if mode is not None and bool(mode):
            raise ValueError("training_mode is true; nn imports inference graphs (call "
                             "model.train() to train with dropout)")
        p = float(ratio) if ratio is not None else float(attrs.get("ratio", 0.5))
        self._emit(node, "Dropout", [self._value(node, 0)], {"p": p})

    def _op_BatchNormalization(self, node, attrs):
        self._check(attrs, {"training_mode": (lambda v: v == 0, "only inference graphs"),
                            "spatial": (lambda v: v == 1, "only 1")})
        rank = self.ranks.get(node.input[0])
        if rank not in (2, 3, 4):
            raise ValueError(f"the input's rank is {rank if rank else 'unknown'}; nn "
                             f"normalises [N, C], [N, C, L] or [N, C, H, W] (give the "
                             f"graph's input a shape)")
        scale, bias, mean, var = (self._const(node, i, what) for i, what in
                                  enumerate(["scale", "B", "mean", "var"], start=1))
        self._emit(node, "BatchNorm2d" if rank == 4 else "BatchNorm1d", [self._value(node, 0)],
                   {"num_features": int(scale.size), "eps": float(attrs.get("epsilon", 1e-5)),
                    "momentum": 1.0 - float(attrs.get("momentum", 0.9))},
                   {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var},
                   self._weight_prefix(node, 1))


def plan(source) -> tuple[dict, dict[str, np.ndarray]]:
    """(description, weights) of an ONNX model, read in the clear; OnnxImportError naming
    every node (op type and name) that nn cannot run. The description is public: node
    names, layer kinds and settings, inputs, and each weight's name and shape. The weights
    are named as the Graph will name its parameters, in nn's layouts (a Linear's [in, out])."""
    model = load_model(source)
    planner = _Planner(model)
    return planner.run(model.graph), planner.arrays
