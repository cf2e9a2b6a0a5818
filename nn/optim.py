"""Optimisers: SGD with momentum and weight decay, on secret parameters."""

from __future__ import annotations


class SGD:
    """v <- momentum v + g (+ weight_decay w); w <- w - lr v."""

    def __init__(self, parameters, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.parameters = list(parameters)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self._velocity = [None] * len(self.parameters)

    def zero_grad(self) -> None:
        for p in self.parameters:
            p.grad = None

    def step(self) -> None:
        for i, p in enumerate(self.parameters):
            g = p.grad
            if self.weight_decay:
                g = g + p.value * self.weight_decay
            if self.momentum:
                g = g if self._velocity[i] is None else self._velocity[i] * self.momentum + g
                self._velocity[i] = g
            p.value = p.value - g * self.lr
