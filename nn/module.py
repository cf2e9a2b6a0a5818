"""Module and Parameter: the whole contract a layer has to meet."""

from __future__ import annotations

from contextlib import contextmanager


class Parameter:
    """A trainable secret tensor and its gradient (None until a backward pass)."""

    def __init__(self, value):
        self.value = value
        self.grad = None


class Buffer:
    """A secret tensor a layer keeps but does not train (BatchNorm's running statistics):
    saved in checkpoints and exported with the parameters, never given to an optimiser."""

    def __init__(self, value):
        self.value = value


class Module:
    """forward(x) -> y and backward(grad_y) -> grad_x; parameters() lists what trains.
    backward(grad, input_grad=False) may skip grad_x (and return None) where the input is
    data: nn.fit asks so, which saves the first layer's input-gradient product.

    `training` (True from the start) says which behaviour layers such as Dropout and
    BatchNorm have; train() and eval() set it here and in every sub-module, as in
    PyTorch."""

    training = True

    def parameters(self) -> list[Parameter]:
        return []

    def buffers(self) -> list[Buffer]:
        return [b for _, b in self.named_buffers()]

    def children(self) -> list[tuple[str, "Module"]]:
        """(name, module) for each direct sub-module: attributes, and items of lists
        (named by their index, as Sequential's layers)."""
        found = []
        for attr, value in vars(self).items():
            if isinstance(value, Module):
                found.append((attr, value))
            elif isinstance(value, list):
                found += [(str(i), v) for i, v in enumerate(value) if isinstance(v, Module)]
        return found

    def _own(self, kind, prefix: str) -> list[tuple[str, object]]:
        return [(f"{prefix}.{attr}" if prefix else attr, v) for attr, v in vars(self).items()
                if isinstance(v, kind)]

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """(name, parameter) pairs, named by where they live: "weight" in a Linear,
        "2.bias" for the third layer of a Sequential (as PyTorch names them)."""
        return [item for prefix, m in self.named_modules() for item in m._own(Parameter, prefix)]

    def named_buffers(self) -> list[tuple[str, Buffer]]:
        """(name, buffer) pairs, named as named_parameters: "1.running_mean"."""
        return [item for prefix, m in self.named_modules() for item in m._own(Buffer, prefix)]

    def modules(self) -> list["Module"]:
        """This module and every module inside it (named_modules without the names)."""
        return [m for _, m in self.named_modules()]

    def train(self, mode: bool = True) -> "Module":
        """Set training mode (mode=True) or evaluation mode here and in every module inside
        (every module named_modules lists, so a Graph's nodes too)."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode: Dropout is the identity, BatchNorm uses its running statistics."""
        return self.train(False)

    def named_modules(self) -> list[tuple[str, "Module"]]:
        """(name, module) for this module ("") and every module inside it, named as
        named_parameters() names their parameters' prefixes ("2" in a Sequential)."""
        found = [("", self)]
        for prefix, child in self.children():
            found += [(f"{prefix}.{n}" if n else prefix, m) for n, m in child.named_modules()]
        return found

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad, input_grad=True):
        raise NotImplementedError


@contextmanager
def evaluating(model: Module):
    """Run a block with the model in evaluation mode, then put every sub-module's mode
    back as it was (nn.fit's guard and evaluation, nn.Model.evaluate and predict)."""
    modes = [(m, m.training) for m in model.modules()] if isinstance(model, Module) else []
    if modes:
        model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
