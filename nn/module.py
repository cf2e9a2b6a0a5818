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

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad, input_grad=True):
        raise NotImplementedError
