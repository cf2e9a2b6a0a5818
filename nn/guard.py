"""Fixed-point trouble never passes silently: a check that finds values which can only come
from an overflow or a failed truncation, and names the layer.

Every value a layer outputs, and every parameter, should stay below SAFE_LIMIT = 2^15 in
magnitude: then a product of two of them stays below 2^30, inside what the exact truncation
handles (mpc.protocols.truncation). An overflowed or wrongly truncated value is a uniform
ring element, about 2^47 in magnitude, so it is far past the limit with probability
1 - 2^-31. The check is one batched comparison over all checked values and one opening of
a count per layer: the only thing it reveals is how many values of each layer are out of
range (zero in healthy training). The loss is revealed too and must lie in [0, MAX_LOSS].
"""

from __future__ import annotations

import mpc

SAFE_LIMIT = 2.0 ** 15
MAX_LOSS = 1e4  # cross-entropy saturates at 6.93 per term; MSE of in-range values is finite


class FixedPointOverflow(RuntimeError):
    """Training produced values outside the fixed-point range; says where and when."""

    def __init__(self, where: dict[str, int], loss: float, steps: tuple[int, int]):
        self.where, self.loss, self.steps = where, loss, steps
        parts = [f"{name}: {count} value(s) beyond +-{SAFE_LIMIT:g}"
                 for name, count in where.items()]
        if not 0.0 <= loss <= MAX_LOSS:
            parts.append(f"loss = {loss:g}, impossible without overflow")
        first, last = steps
        span = f"step {last}" if first == last else f"steps {first}..{last}"
        super().__init__(f"fixed-point overflow detected after {span} ({'; '.join(parts)}); "
                         f"lower the learning rate or rescale the inputs")


def _named_outputs(model, x) -> list[tuple[str, object]]:
    """Each layer's output (for a model with .layers, else the model's output)."""
    layers = getattr(model, "layers", None)
    if layers is None:
        return [(type(model).__name__, model(x))]
    outputs = []
    for i, layer in enumerate(layers):
        x = layer(x)
        outputs.append((f"layer {i} ({type(layer).__name__})", x))
    return outputs


def check(model, loss, x, y) -> tuple[float, dict[str, int]]:
    """Run the model forward on (x, y), reveal the loss value and the per-layer counts of
    out-of-range outputs and parameters; returns (loss, {name: count > 0})."""
    named = _named_outputs(model, x)
    loss(named[-1][1], y)
    named += [(f"parameter {i}", p.value) for i, p in enumerate(model.parameters())]
    flat = mpc.concatenate([t.reshape(-1) for _, t in named])
    above = mpc.concatenate([flat, -flat]) > SAFE_LIMIT  # both signs in one comparison
    outside = above[:flat.size] + above[flat.size:]
    counts, start = [], 0
    for _, t in named:
        counts.append(outside[start:start + t.size].sum())
        start += t.size
    revealed = mpc.concatenate([loss.value().reshape(1)] +
                               [c.reshape(1) for c in counts]).reveal()
    where = {name: round(c) for (name, _), c in zip(named, revealed[1:]) if round(c) > 0}
    return float(revealed[0]), where
