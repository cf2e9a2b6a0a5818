"""Module and Parameter: the whole contract a layer has to meet."""

from __future__ import annotations


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

    def _named(self, kind) -> list[tuple[str, object]]:
        found = [(attr, v) for attr, v in vars(self).items() if isinstance(v, kind)]
        for name, child in self.children():
            found += [(f"{name}.{n}", v) for n, v in child._named(kind)]
        return found

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """(name, parameter) pairs, named by where they live: "weight" in a Linear,
        "2.bias" for the third layer of a Sequential (as PyTorch names them)."""
        return self._named(Parameter)

    def named_buffers(self) -> list[tuple[str, Buffer]]:
        """(name, buffer) pairs, named as named_parameters: "1.running_mean"."""
        return self._named(Buffer)

    def train(self, mode: bool = True) -> "Module":
        """Set training mode (mode=True) or evaluation mode here and in every sub-module."""
        self.training = bool(mode)
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode: Dropout is the identity, BatchNorm uses its running statistics."""
        return self.train(False)

    def named_modules(self) -> list[tuple[str, "Module"]]:
        """(name, module) for this module ("") and every module inside it, named as
        named_parameters() names their parameters' prefixes ("2" in a Sequential)."""
        found = [("", self)]
        for attr, value in vars(self).items():
            if isinstance(value, Module):
                children = [(attr, value)]
            elif isinstance(value, list):
                children = [(str(i), v) for i, v in enumerate(value) if isinstance(v, Module)]
            else:
                children = []
            for prefix, child in children:
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
