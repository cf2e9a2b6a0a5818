"""Optimisers on secret parameters: SGD (momentum, weight decay), Adam and AdamW.

Each takes its parameters first (or none, to be bound later by nn.Model.compile) and a
learning rate `lr` that is a number or a schedule (nn.schedules: a function of the step
count, at no cost on the wire). All expose their state uniformly for checkpoints:
`state()` returns a dict whose values are SecretTensors (this party's shares), public
ints, or None (not created yet), and `load_state(d)` puts such a dict back.
"""

from __future__ import annotations

import mpc
from nn.schedules import checked_rate, rate_at


def _checked_parameters(parameters) -> list:
    if parameters is None:
        return []
    if not isinstance(parameters, (list, tuple)) and not hasattr(parameters, "__iter__"):
        raise TypeError(f"parameters must be a list of nn.Parameter (model.parameters()), "
                        f"got {type(parameters).__name__}")
    return list(parameters)


class SGD:
    """v <- momentum v + g (+ weight_decay w); w <- w - lr v.

    All parameters are updated as one flat vector, so every product by a public scalar is
    one truncation for the whole model. Rounds per step: 1, and 1 more each for momentum
    and weight decay, whatever the number of parameter tensors. Example:
    `opt = nn.SGD(model.parameters(), lr=0.1, momentum=0.9)`."""

    def __init__(self, parameters=None, lr=0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        self.parameters = _checked_parameters(parameters)
        self.lr = checked_rate(lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.momentum, self.weight_decay = momentum, weight_decay
        self._velocity, self._step = None, 0

    def zero_grad(self) -> None:
        for p in self.parameters:
            p.grad = None

    def step(self) -> None:
        g = _flat([p.grad for p in self.parameters])
        if self.weight_decay:
            g = g + _flat([p.value for p in self.parameters]) * self.weight_decay
        if self.momentum:
            g = g if self._velocity is None else self._velocity * self.momentum + g
            self._velocity = g
        subtract_flat(self.parameters, g * rate_at(self.lr, self._step))
        self._step += 1

    def state(self) -> dict:
        """The flat momentum buffer `velocity` (None before the first step) and the step
        count (for a schedule)."""
        return {"velocity": self._velocity, "step": self._step}

    def load_state(self, state: dict) -> None:
        self._velocity = state.get("velocity")
        self._step = int(state.get("step") or 0)


def _flat(tensors):
    """The tensors as one flat shared vector (local)."""
    return mpc.concatenate([t.reshape(-1) for t in tensors])


def subtract_flat(parameters, delta) -> None:
    """w <- w - delta for each parameter, from its slice of the flat `delta` (local)."""
    start = 0
    for p in parameters:
        p.value = p.value - delta[start:start + p.value.size].reshape(p.value.shape)
        start += p.value.size


class Adam:
    """Adam (Kingma and Ba, ICLR 2015, Algorithm 1) with L2 weight decay added to the
    gradient, as torch.optim.Adam does, on secret parameters.

    Fixed point with 16 fractional bits cannot hold Adam's numbers as they are: a gradient
    of 1e-3 squares to 1e-6, below the resolution 1.5e-5, and eps = 1e-8 encodes to 0. So:

    1. Every gradient is scaled by the public 2^k (k = `scale_bits`, default 8) before it
       enters the moments: an integer product, exact and free. The state is m' = 2^k m_hat
       and v' = 4^k v_hat, where m_hat and v_hat are Adam's bias-corrected moments.
    2. The moments are kept bias-corrected: m_hat_t = m_hat_{t-1} + c_t (g - m_hat_{t-1})
       with c_t = (1 - b1) / (1 - b1^t), and the same for v_hat with g^2 and b2. This is
       Adam's recurrence divided by the public (1 - b^t), so the values stay at the scale of
       g and g^2 from the first step on (Adam's raw v_1 is 1000 times smaller than g^2).
       c_t is encoded as a multiple of 2^-16 (relative error 2^-17 / c_t, 0.8% once c_t
       reaches 1 - b2 = 1e-3); since the old value keeps weight exactly 1 - c_t, this
       reweights the average slightly but never biases its scale.
    3. The step is w <- w - lr m' inv_sqrt(v' + 4^k eps^2), i.e. lr m_hat / sqrt(v_hat +
       eps^2): eps sits inside the square root (negligible for eps = 1e-8 either way), and
       mpc.inv_sqrt's domain clips the denominator to [2^-(5+k), 2^(8-k)] (for k = 8,
       [1.2e-4, 1]). Below the floor steps shrink in proportion to the gradient, like
       Adam with eps = 2^-(5+k); root-mean-square gradients above 2^(8-k) give steps larger
       than lr. Gradients must stay below 2^(15-k) in magnitude (the square's range).

    Error per step and element against float64 Adam with the same clip
    (nn.plain.Adam(floor=2^-(5+k))), with r = m_hat / sqrt(v_hat) and units of 2^-16:
    lr |r| (3e-5 + 2^k sqrt(v_hat) units) from inv_sqrt (one unit of its output), plus
    lr |r| (t units) / (2 v') from v' (its truncations add about a unit a step, forgotten
    at rate b2: t counts at most 1 / (1 - b2) steps), plus lr's rounding to a multiple of
    2^-16 (relative 2^-17 / lr) and about 2 units. tests/test_optim.py measured at most
    1e-3 lr + 2 units a step (gradients of 1e-3 to 0.1, lr 0.01 to 1, 2 and 3 parties) and
    asserts 2e-3 lr + 2 units.

    All parameters are updated as one flat vector, so a step costs the same rounds
    whatever the model: 2 (square) + 1 (both moments, one batched product by public
    reals; not on the first step) + 49 (inv_sqrt) + 2 (m' times it) + 1 (times lr) = 55, and
    56 with weight decay.
    Example: `opt = nn.Adam(model.parameters(), lr=0.01)`, then as SGD in nn.fit.
    """

    _coupled_decay = True  # weight decay added to the gradient (AdamW: to the step)

    def __init__(self, parameters=None, lr=0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, scale_bits: int = 8):
        self.parameters = _checked_parameters(parameters)
        self.lr = checked_rate(lr)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if not eps >= 0 or not weight_decay >= 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got {eps!r}, "
                             f"{weight_decay!r}")
        self.betas, self.eps = tuple(betas), eps
        self.weight_decay, self.scale_bits = weight_decay, scale_bits
        self._step, self._m, self._v = 0, None, None

    def zero_grad(self) -> None:
        for p in self.parameters:
            p.grad = None

    def _moments(self, g):
        """Advance m' and v' by one step from the scaled flat gradient g (3 rounds)."""
        t, (b1, b2) = self._step, self.betas
        c1, c2 = (1 - b1) / (1 - b1 ** t), (1 - b2) / (1 - b2 ** t)
        square = g.square()
        if self._m is None:  # c1 = c2 = 1 at t = 1: the moments are g and g^2
            return g, square
        both = mpc.stack([g - self._m, square - self._v]) * [[c1], [c2]]
        return self._m + both[0], self._v + both[1]

    def step(self) -> None:
        self._step += 1
        g = _flat([p.grad for p in self.parameters]) * (1 << self.scale_bits)
        if self.weight_decay and self._coupled_decay:
            g = g + _flat([p.value for p in self.parameters]) * (
                self.weight_decay * 2 ** self.scale_bits)
        self._m, self._v = self._moments(g)
        floor = self.eps ** 2 * 4 ** self.scale_bits
        self._apply(self._m * mpc.inv_sqrt(self._v + floor), rate_at(self.lr, self._step - 1))

    def _apply(self, direction, lr: float) -> None:
        """w <- w - lr direction (1 round)."""
        subtract_flat(self.parameters, direction * lr)

    def state(self) -> dict:
        """The step count and the flat scaled moments `m`, `v` (None before the first step)."""
        return {"step": self._step, "m": self._m, "v": self._v}

    def load_state(self, state: dict) -> None:
        self._step, self._m, self._v = int(state["step"]), state["m"], state["v"]


class AdamW(Adam):
    """AdamW (Loshchilov and Hutter, ICLR 2019, Algorithm 2): Adam with decoupled weight
    decay, w <- w - lr (m_hat / sqrt(v_hat + eps^2) + weight_decay w), as
    torch.optim.AdamW (default weight_decay 0.01). Everything else, the fixed-point
    scaling and its error, is Adam's; the decay's product by the public lr * weight_decay
    shares the step's one truncation with the update (both rows of one product by public
    reals), so a step costs Adam's 55 rounds, one fewer than Adam with L2 weight decay.
    Example: `opt = nn.AdamW(model.parameters(), lr=0.001, weight_decay=0.01)`."""

    _coupled_decay = False

    def __init__(self, parameters=None, lr=0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, *, scale_bits: int = 8):
        super().__init__(parameters, lr, betas, eps, weight_decay, scale_bits=scale_bits)

    def _apply(self, direction, lr: float) -> None:
        if not self.weight_decay:
            return super()._apply(direction, lr)
        weights = _flat([p.value for p in self.parameters])
        both = mpc.stack([direction, weights]) * [[lr], [lr * self.weight_decay]]
        subtract_flat(self.parameters, both[0] + both[1])
