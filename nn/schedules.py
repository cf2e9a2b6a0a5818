"""Learning-rate schedules: the rate as a function of the step count, Keras-style
(keras.optimizers.schedules), given to an optimiser as its learning rate:

    opt = nn.Adam(model.parameters(), lr=nn.CosineDecay(0.01, decay_steps=1000))
    opt = nn.SGD(model.parameters(), lr=lambda step: 0.1 / (1 + step / 100))

The optimiser asks for schedule(step) at each step (step = steps taken before, from 0).
The rate is public, and every optimiser already multiplies by it as a public scalar in
one truncation per step, so a rate that changes every step costs nothing extra: the same
rounds and bytes as a constant one (tests/test_schedules.py counts them). Each rate is
encoded to a multiple of 2^-16 (relative error 2^-17 / rate); a rate below 2^-17 is 0.
"""

from __future__ import annotations

import math


def _positive(name: str, value, integer: bool = False):
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not value > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


class Schedule:
    """A learning rate per step: __call__(step) -> float."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError


class StepDecay(Schedule):
    """initial * gamma^(step // step_size), as torch.optim.lr_scheduler.StepLR counted in
    steps. Example: nn.StepDecay(0.1, step_size=100, gamma=0.5)"""

    def __init__(self, initial_learning_rate: float, step_size: int, gamma: float = 0.1):
        self.initial = _positive("initial_learning_rate", initial_learning_rate)
        self.step_size = _positive("step_size", step_size, integer=True)
        self.gamma = _positive("gamma", gamma)

    def __call__(self, step: int) -> float:
        return self.initial * self.gamma ** (step // self.step_size)


class ExponentialDecay(Schedule):
    """initial * decay_rate^(step / decay_steps) (the exponent floored with `staircase`),
    as keras.optimizers.schedules.ExponentialDecay.
    Example: nn.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.9)"""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False):
        self.initial = _positive("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive("decay_steps", decay_steps, integer=True)
        self.decay_rate = _positive("decay_rate", decay_rate)
        self.staircase = staircase

    def __call__(self, step: int) -> float:
        exponent = step / self.decay_steps
        return self.initial * self.decay_rate ** (math.floor(exponent) if self.staircase
                                                  else exponent)


class CosineDecay(Schedule):
    """initial * ((1 - alpha) (1 + cos(pi min(step, decay_steps) / decay_steps)) / 2 +
    alpha), as keras.optimizers.schedules.CosineDecay (without warm-up).
    Example: nn.CosineDecay(0.05, decay_steps=500, alpha=0.01)"""

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0):
        self.initial = _positive("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _positive("decay_steps", decay_steps, integer=True)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.alpha = alpha

    def __call__(self, step: int) -> float:
        done = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * done))
        return self.initial * ((1 - self.alpha) * cosine + self.alpha)


def checked_rate(lr, name: str = "lr"):
    """A learning rate argument: a positive number, or a schedule (an nn.Schedule or any
    function of the step count); ValueError naming `name` otherwise."""
    return lr if callable(lr) else _positive(name, lr)


def rate_at(lr, step: int) -> float:
    """The rate for `step` (0-based): lr itself, or the schedule's value there (ValueError
    if a schedule gives anything but a finite number >= 0)."""
    if not callable(lr):
        return lr
    value = lr(step)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value < 0:
        raise ValueError(f"the learning-rate schedule {lr!r} gave {value!r} at step {step}; "
                         f"it must give a finite number >= 0")
    return float(value)
