"""Optimisers on secret parameters: SGD (momentum, weight decay) and Adam.

Both expose their state uniformly for checkpoints: `state()` returns a dict whose values
are SecretTensors (this party's shares), public ints, or None (not created yet), and
`load_state(d)` puts such a dict back.
"""

from __future__ import annotations

import mpc


class SGD:
    """v <- momentum v + g (+ weight_decay w); w <- w - lr v.

    All parameters are updated as one flat vector, so every product by a public scalar is
    one truncation for the whole model. Rounds per step: 1, and 1 more each for momentum
    and weight decay, whatever the number of parameter tensors."""

    def __init__(self, parameters, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.parameters = list(parameters)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self._velocity = None

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
        subtract_flat(self.parameters, g * self.lr)

    def state(self) -> dict:
        """The flat momentum buffer `velocity` (None before the first step)."""
        return {"velocity": self._velocity}

    def load_state(self, state: dict) -> None:
        self._velocity = state.get("velocity")


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

    def __init__(self, parameters, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, scale_bits: int = 8):
        self.parameters = list(parameters)
        self.lr, self.betas, self.eps = lr, betas, eps
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
        if self.weight_decay:
            g = g + _flat([p.value for p in self.parameters]) * (
                self.weight_decay * 2 ** self.scale_bits)
        self._m, self._v = self._moments(g)
        floor = self.eps ** 2 * 4 ** self.scale_bits
        subtract_flat(self.parameters, (self._m * mpc.inv_sqrt(self._v + floor)) * self.lr)

    def state(self) -> dict:
        """The step count and the flat scaled moments `m`, `v` (None before the first step)."""
        return {"step": self._step, "m": self._m, "v": self._v}

    def load_state(self, state: dict) -> None:
        self._step, self._m, self._v = int(state["step"]), state["m"], state["v"]
