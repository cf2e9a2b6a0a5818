"""Models whose layers form a DAG (residual connections, branches that join), and the nodes
only such a model needs: Add, Concat and Reshape.

    g = nn.Graph("x")
    g.add("conv1", nn.Conv2d(ctx, 4, 4, 3, padding=1), "x")
    g.add("relu1", nn.ReLU(), "conv1")
    g.add("sum", nn.Add(), "relu1", "x")          # the residual connection
    g.add("out", nn.ReLU(), "sum")                # the last node added is the output

Each node's output is named by the node. Nodes are added in topological order (a node's
inputs must already exist), so the graph cannot have a cycle. Backward runs the nodes in
reverse and adds up the gradients of a value used by several nodes (fan-out). A node's
backward is asked for its input gradient only where something upstream trains (or the
caller asked for the graph input's gradient), as Sequential does.
"""

from __future__ import annotations

import math

import mpc
from nn.module import Module


class Graph(Module):
    """A DAG of modules with one input (or several, named) and one output. Its children
    are its nodes, so parameters and buffers are named "<node>.<name>" ("conv1.weight"),
    train()/eval() reach every node, and optimisers, checkpoints, nn.fit and the .npz and
    ONNX writers take it as they take a Sequential."""

    def __init__(self, *inputs: str):
        self.inputs = list(inputs) or ["x"]
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"Graph: input names repeat: {self.inputs}")
        self.nodes: list[tuple[str, Module, tuple[str, ...]]] = []
        self.output: str | None = None  # None: the last node added
        self._values = None

    def add(self, name: str, module: Module, *inputs: str) -> str:
        """Append node `name` computing module(*inputs); returns `name`."""
        known = set(self.inputs) | {n for n, _, _ in self.nodes}
        if not isinstance(name, str) or not name or name in known:
            raise ValueError(f"Graph.add: node name {name!r} is empty or already used")
        if not isinstance(module, Module):
            raise TypeError(f"Graph.add({name!r}): {type(module).__name__} is not an nn.Module")
        if any(module is m for _, m, _ in self.nodes):
            raise ValueError(f"Graph.add({name!r}): this module object is already node "
                             f"{next(n for n, m, _ in self.nodes if m is module)!r}; a layer "
                             f"keeps its forward's state, so make a second one")
        missing = [i for i in inputs if i not in known]
        if not inputs or missing:
            raise ValueError(f"Graph.add({name!r}): inputs {missing or '(none)'} are not the "
                             f"graph's inputs {self.inputs} or earlier nodes")
        self.nodes.append((name, module, tuple(inputs)))
        return name

    def _output(self) -> str:
        if not self.nodes:
            raise ValueError("Graph: no nodes")
        if self.output is not None and self.output not in {n for n, _, _ in self.nodes}:
            raise ValueError(f"Graph: the output {self.output!r} is not a node "
                             f"({[n for n, _, _ in self.nodes]})")
        return self.output if self.output is not None else self.nodes[-1][0]

    def children(self):
        return [(name, module) for name, module, _ in self.nodes]

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def forward(self, *xs):
        self._values = self._run(xs)
        return self._values[self._output()]

    def named_outputs(self, *xs) -> list[tuple[str, object]]:
        """Every node's output, in order (nn.guard checks each)."""
        values = self._run(xs)
        return [(f"node {name} ({type(m).__name__})", values[name]) for name, m, _ in self.nodes]

    def _run(self, xs) -> dict:
        if len(xs) != len(self.inputs):
            raise ValueError(f"Graph: {len(xs)} input(s) given, the graph takes {self.inputs}")
        values = dict(zip(self.inputs, xs))
        for name, module, inputs in self.nodes:
            try:
                values[name] = module(*[values[i] for i in inputs])
            except (ValueError, TypeError) as exc:
                shapes = ", ".join(f"{i} {tuple(values[i].shape)}" for i in inputs)
                raise type(exc)(f"node {name!r} ({type(module).__name__}) on {shapes}: "
                                f"{exc}") from exc
        return values

    def backward(self, grad, input_grad=True):
        """Gradients flow from the output back through every node that leads to it; a value
        used by several nodes gets the sum of their gradients. Returns the input's gradient
        (a tuple for several inputs; None where not asked for)."""
        needs = dict.fromkeys(self.inputs, input_grad)
        for name, module, inputs in self.nodes:
            needs[name] = bool(module.parameters()) or any(needs[i] for i in inputs)
        grads = {self._output(): grad}
        for name, module, inputs in reversed(self.nodes):
            g = grads.pop(name, None)
            if g is None:
                if module.parameters():
                    raise ValueError(f"Graph: node {name!r} has parameters but does not lead "
                                     f"to the output {self._output()!r}")
                continue
            wanted = [needs[i] for i in inputs]
            if len(inputs) == 1:
                back = [module.backward(g, input_grad=wanted[0])]
            else:
                back = module.backward(g, input_grad=any(wanted))
            for i, gi, w in zip(inputs, back, wanted):
                if w and gi is not None:
                    grads[i] = grads[i] + gi if i in grads else gi
        found = [grads.get(i) for i in self.inputs]
        return found[0] if len(found) == 1 else tuple(found)


def _unbroadcast(grad, shape: tuple[int, ...]):
    """The gradient of an operand of `shape` that was broadcast to grad's shape."""
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, d in enumerate(shape)
                                       if d == 1 and grad.shape[extra + i] != 1)
    return (grad.sum(axis=axes) if axes else grad).reshape(shape)


class Add(Module):
    """x_1 + x_2 + ... (numpy broadcasting), a residual connection; local, 0 rounds.
    Backward hands each operand the gradient, summed over the axes it was broadcast on."""

    def __call__(self, *xs):
        return self.forward(*xs)

    def forward(self, *xs):
        if len(xs) < 2:
            raise ValueError(f"Add takes at least 2 inputs, got {len(xs)}")
        self._shapes = [tuple(x.shape) for x in xs]
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total

    def backward(self, grad, input_grad=True):
        return [_unbroadcast(grad, s) if s != tuple(grad.shape) else grad for s in self._shapes]


class Concat(Module):
    """Join inputs along `axis` (1: channels of [N, C, H, W]); local, 0 rounds. Backward
    slices the gradient back into the inputs' parts."""

    def __init__(self, axis: int = 1):
        self.axis = axis

    def __call__(self, *xs):
        return self.forward(*xs)

    def forward(self, *xs):
        self._sizes = [x.shape[self.axis] for x in xs]
        return mpc.concatenate(list(xs), axis=self.axis)

    def backward(self, grad, input_grad=True):
        parts, start = [], 0
        for size in self._sizes:
            index = [slice(None)] * grad.ndim
            index[self.axis] = slice(start, start + size)
            parts.append(grad[tuple(index)])
            start += size
        return parts


class Reshape(Module):
    """x.reshape(shape) with ONNX's rules: 0 keeps the input's size on that axis, -1 is
    inferred (once). Local, 0 rounds; backward reshapes the gradient back."""

    def __init__(self, shape):
        self.shape = tuple(int(d) for d in shape)
        if self.shape.count(-1) > 1 or any(d < -1 for d in self.shape):
            raise ValueError(f"Reshape: shape {self.shape} may hold one -1 and no other "
                             f"negative size")

    def resolve(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        out = [input_shape[i] if d == 0 else d for i, d in enumerate(self.shape)]
        if -1 in out:
            known = math.prod(d for d in out if d != -1)
            out[out.index(-1)] = math.prod(input_shape) // known if known else 0
        if math.prod(out) != math.prod(input_shape):
            raise ValueError(f"Reshape: cannot reshape {tuple(input_shape)} into "
                             f"{self.shape}")
        return tuple(out)

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(self.resolve(tuple(x.shape)))

    def backward(self, grad, input_grad=True):
        return grad.reshape(self._shape)
