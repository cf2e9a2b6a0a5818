"""Module and Parameter: the whole contract a layer has to meet."""

from __future__ import annotations


class Parameter:
    """A trainable secret tensor and its gradient (None until a backward pass)."""

    def __init__(self, value):
        self.value = value
        self.grad = None


class Module:
    """forward(x) -> y and backward(grad_y) -> grad_x; parameters() lists what trains.
    backward(grad, input_grad=False) may skip grad_x (and return None) where the input is
    data: nn.fit asks so, which saves the first layer's input-gradient product."""

    def parameters(self) -> list[Parameter]:
        return []

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """(name, parameter) pairs, named by where they live: "weight" in a Linear,
        "2.bias" for the third layer of a Sequential (as PyTorch names them)."""
        found = []
        for attr, value in vars(self).items():
            if isinstance(value, Parameter):
                found.append((attr, value))
            elif isinstance(value, Module):
                found += [(f"{attr}.{n}", p) for n, p in value.named_parameters()]
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        found += [(f"{i}.{n}", p) for n, p in item.named_parameters()]
        return found

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
