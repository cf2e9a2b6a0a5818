"""nn.to_onnx: reveal a model to one party, which writes it as an ONNX file that
onnxruntime (or PyTorch, or anything else that reads ONNX) runs.

The file is the model's inference graph: Dropout is the identity and BatchNorm uses its
running statistics, as in eval mode. Initializers carry nn's parameter and buffer names
("0.weight", "conv1.bias", "1.running_mean") in ONNX's (and PyTorch's) layouts: a Linear
becomes Gemm with transB=1 and its weight [out, in]. Opset 17, or 20 for a model with a
GELU (ONNX's Gelu op; nn's is a piecewise-linear approximation within 0.0016 of it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import mpc
from nn.graph import Graph
from nn.layers import Sequential
from nn.onnx_plan import _onnx

OPSET, GELU_OPSET = 17, 20


class _Writer:
    """Collects ONNX nodes and the tensors to reveal while walking the model."""

    def __init__(self, opset: int):
        self.nodes, self.secret, self.public = [], [], {}
        self.opset = opset
        self.alone = None  # the node's name when the model is one layer, not a container

    def key(self, name: str, attr: str) -> str:
        """The initializer of a layer's `attr`: named as named_parameters() names it."""
        return attr if name == self.alone else f"{name}.{attr}"

    def tensor(self, name: str, value, transform=None) -> str:
        """An initializer `name` from a SecretTensor (revealed later) or a public array."""
        if isinstance(value, mpc.SecretTensor):
            self.secret.append((name, value, transform))
        else:
            self.public[name] = np.asarray(value)
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        helper = _onnx().helper
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    # ------------------------------------------------------------------ the walk
    def walk(self, module, x: str, path: str) -> str:
        if isinstance(module, Sequential):  # nn.Model and nn.DPModel too
            for i, layer in enumerate(module.layers):
                x = self.walk(layer, x, f"{path}{i}.")
            return x
        if isinstance(module, Graph):
            return self._graph(module, x, path)
        kind = type(module).__name__  # exactly: a subclass may compute something else
        emit = getattr(self, f"_{kind}", None) if type(module).__module__.startswith("nn.") \
            else None
        if emit is None:
            raise ValueError(f"to_onnx: no ONNX mapping for layer {path.rstrip('.') or kind!r}"
                             f" ({kind})")
        if not path:
            self.alone = kind
        return emit(module, x, path.rstrip(".") or kind)

    def _graph(self, graph, x: str, path: str) -> str:
        if len(graph.inputs) != 1:
            raise ValueError(f"to_onnx: graphs with one input only (this one takes "
                             f"{graph.inputs})")
        values = {graph.inputs[0]: x}
        for name, module, inputs in graph.nodes:
            kind = type(module).__name__
            if kind in ("Add", "Concat"):
                attrs = {"axis": module.axis} if kind == "Concat" else {}
                values[name] = self.node(kind, [values[i] for i in inputs], f"{path}{name}",
                                         **attrs)
            else:
                values[name] = self.walk(module, values[inputs[0]], f"{path}{name}.")
        return values[graph._output()]

    # ------------------------------------------------------------------ layers
    def _Linear(self, m, x, name):
        w = self.tensor(self.key(name, "weight"), m.weight.value, np.transpose)  # [out, in]
        b = self.tensor(self.key(name, "bias"), m.bias.value)
        return self.node("Gemm", [x, w, b], name, transB=1)

    def _Conv2d(self, m, x, name):
        w = self.tensor(self.key(name, "weight"), m.weight.value)
        b = self.tensor(self.key(name, "bias"), m.bias.value)
        (kh, kw), (ph, pw) = m.kernel, m.padding
        return self.node("Conv", [x, w, b], name, kernel_shape=[kh, kw],
                         strides=list(m.stride), pads=[ph, pw, ph, pw])

    def _ReLU(self, m, x, name):
        return self.node("Relu", [x], name)

    def _Sigmoid(self, m, x, name):
        return self.node("Sigmoid", [x], name)

    def _Tanh(self, m, x, name):
        return self.node("Tanh", [x], name)

    def _Softmax(self, m, x, name):
        return self.node("Softmax", [x], name, axis=m.axis)

    def _Flatten(self, m, x, name):
        return self.node("Flatten", [x], name, axis=1)

    def _Reshape(self, m, x, name):
        shape = self.tensor(self.key(name, "shape"), np.array(m.shape, dtype=np.int64))
        return self.node("Reshape", [x, shape], name)

    def _AvgPool2d(self, m, x, name):
        return self.node("AveragePool", [x], name, kernel_shape=list(m.kernel),
                         strides=list(m.stride))

    def _LogSoftmax(self, m, x, name):
        return self.node("LogSoftmax", [x], name, axis=m.axis)

    def _GELU(self, m, x, name):
        self.opset = max(self.opset, GELU_OPSET)
        return self.node("Gelu", [x], name)

    def _Dropout(self, m, x, name):
        ratio = self.tensor(self.key(name, "ratio"), np.array(m.p, dtype=np.float32))
        return self.node("Dropout", [x, ratio], name)

    def _BatchNorm1d(self, m, x, name):
        inputs = [x] + [self.tensor(self.key(name, attr), getattr(m, attr).value) for attr in
                        ("weight", "bias", "running_mean", "running_var")]
        return self.node("BatchNormalization", inputs, name, epsilon=m.eps,
                         momentum=1.0 - m.momentum)

    _BatchNorm2d = _BatchNorm1d

    def _LayerNorm(self, m, x, name):
        inputs = [x] + [self.tensor(self.key(name, attr), getattr(m, attr).value) for attr in
                        ("weight", "bias")]
        return self.node("LayerNormalization", inputs, name, epsilon=m.eps,
                         axis=-len(m.normalized_shape))

    def _GlobalAvgPool2d(self, m, x, name):
        pooled = self.node("GlobalAveragePool", [x], name if m.keepdims else f"{name}.pool")
        return pooled if m.keepdims else self.node("Flatten", [pooled], name, axis=1)

    def _Residual(self, m, x, name):
        inner = self.walk(m.module, x, "module." if name == self.alone else f"{name}.module.")
        return self.node("Add", [x, inner], name)

    def _MaxPool2d(self, m, x, name):
        return self.node("MaxPool", [x], name, kernel_shape=list(m.kernel),
                         strides=list(m.stride))


def to_onnx(model, path, *, input_shape, to: int = 0, opset: int = OPSET):
    """Reveal the model to party `to` only, which writes it to `path` as ONNX (opset
    `opset`, at least 20 with a GELU) with the input "input" of shape [N, *input_shape]
    (N free), as the model computes in eval mode; returns the
    onnx.ModelProto there and None on the other parties. A layer with no ONNX mapping is
    refused (ValueError naming it) before anything is revealed, and so is an input_shape
    the layers do not fit (ONNX's shape inference runs on the structure first). Rounds: 1.
    Example:
        nn.to_onnx(model, "model.onnx", input_shape=(1, 8, 8), to=0)
    """
    named = model.named_parameters()
    if not named:
        raise ValueError("to_onnx: the model has no parameters")
    ctx = named[0][1].value.ctx
    if not 0 <= to < ctx.n_parties:
        raise ValueError(f"to_onnx: to={to} is not a party (0..{ctx.n_parties - 1})")
    shape = [int(d) for d in input_shape]
    if any(d <= 0 for d in shape):
        raise ValueError(f"to_onnx: input_shape {tuple(input_shape)} needs positive sizes "
                         f"(without the batch axis)")
    if ctx.pid == to and not Path(path).parent.is_dir():
        raise FileNotFoundError(f"to_onnx: no directory {str(Path(path).parent)!r} to write "
                                f"{Path(path).name!r} in")
    writer = _Writer(opset)
    output = writer.walk(model, "input", "")
    placeholders = {name: np.zeros(t.shape) for name, t, transform in writer.secret}
    for name, t, transform in writer.secret:
        if transform is not None:
            placeholders[name] = transform(placeholders[name])
    _checked(writer, {**writer.public, **placeholders}, output, shape)  # before revealing
    flat = mpc.concatenate([t.reshape(-1) for _, t, _ in writer.secret])
    values = flat.reveal_to(to)
    if values is None:
        return None
    arrays, start = dict(writer.public), 0
    for name, t, transform in writer.secret:
        part = values[start:start + t.size].reshape(t.shape)
        arrays[name] = transform(part) if transform is not None else part
        start += t.size
    proto = _checked(writer, arrays, output, shape)
    _onnx().save(proto, str(path))
    return proto


def _checked(writer: _Writer, arrays: dict, output: str, shape: list[int]):
    """The ModelProto, checked by ONNX's checker and shape inference (ValueError when the
    layers do not fit an input of `shape`)."""
    onnx = _onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    inits = [numpy_helper.from_array(a if a.dtype == np.int64 else a.astype(np.float32), n)
             for n, a in arrays.items()]
    graph = helper.make_graph(
        writer.nodes, "mpc-dl",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)],
        initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", writer.opset)],
                              producer_name="mpc-dl")
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx's InferenceError, ValidationError
        raise ValueError(f"to_onnx: the model does not fit inputs of shape [N, "
                         f"{', '.join(map(str, shape))}] (input_shape leaves out the batch "
                         f"axis): {str(exc).strip()}") from None
    return proto
