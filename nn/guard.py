"""Fixed-point trouble never passes silently: a check that finds values which can only come
from an overflow or a failed truncation, and names the layer.

Every value a layer outputs, and every parameter, should stay below SAFE_LIMIT = 2^15 in
magnitude: then a product of two of them stays below 2^30, inside what the exact truncation
handles (mpc.protocols.dealer.truncation). An overflowed or wrongly truncated value is a uniform
ring element, about 2^47 in magnitude, so it is far past the limit with probability
1 - 2^-31. The check is one batched comparison over all checked values and one opening of
a count per layer: the only thing it reveals is how many values of each layer are out of
range (zero in healthy training). Optionally (nn.fit's report_loss) the loss is revealed
too, and a negative one is trouble as well. For a model trained with differential privacy
only the parameters are checked: they are already DP, so the counts cost no privacy,
while layer outputs on training data would.
"""

from __future__ import annotations

import mpc

SAFE_LIMIT = 2.0 ** 15
LOSS_FLOOR = -1e-3  # every loss is >= 0; a few units of rounding below 0 are fine


class FixedPointOverflow(RuntimeError):
    """Training produced values outside the fixed-point range; says where and when."""

    def __init__(self, where: dict[str, int], loss: float | None, steps: tuple[int, int]):
        self.where, self.loss, self.steps = where, loss, steps
        parts = [f"{name}: {count} value(s) beyond +-{SAFE_LIMIT:g}"
                 for name, count in where.items()]
        if loss is not None and loss < LOSS_FLOOR:
            parts.append(f"loss = {loss:g}, impossible without overflow")
        first, last = steps
        span = f"step {last}" if first == last else f"steps {first}..{last}"
        super().__init__(f"fixed-point overflow detected after {span} ({'; '.join(parts)}); "
                         f"lower the learning rate or rescale the inputs")


def _named_outputs(model, x) -> list[tuple[str, object]]:
    """Each layer's output (for a model with .layers or a Graph's named_outputs, else the
    model's output)."""
    if hasattr(model, "named_outputs"):
        return model.named_outputs(x)
    layers = getattr(model, "layers", None)
    if layers is None:
        return [(type(model).__name__, model(x))]
    outputs = []
    for i, layer in enumerate(layers):
        x = layer(x)
        outputs.append((f"layer {i} ({type(layer).__name__})", x))
    return outputs


def trouble(where: dict[str, int], loss: float | None) -> bool:
    return bool(where) or (loss is not None and loss < LOSS_FLOOR)


def check(model, loss, x, y, *, report_loss: bool, outputs: bool = True):
    """Count the out-of-range values of each layer's output on (x, y) (with `outputs`)
    and of each parameter, in one batched comparison; reveal the counts (and, with
    `report_loss`, the loss) in one opening. Returns (loss or None, {name: count > 0})."""
    with x.ctx.operation("guard"):
        named = _named_outputs(model, x) if outputs or report_loss else []
        if report_loss:
            loss(named[-1][1], y)
        if not outputs:
            named = []
        named += [(f"parameter {i}", p.value) for i, p in enumerate(model.parameters())]
        flat = mpc.concatenate([t.reshape(-1) for _, t in named])
        above = mpc.concatenate([flat, -flat]) > SAFE_LIMIT  # both signs in one comparison
        outside = above[:flat.size] + above[flat.size:]
        counts, start = [], 0
        for _, t in named:
            counts.append(outside[start:start + t.size].sum().reshape(1))
            start += t.size
        if report_loss:
            counts.insert(0, loss.value().reshape(1))
        revealed = mpc.concatenate(counts).reveal()
    value = float(revealed[0]) if report_loss else None
    found = revealed[1:] if report_loss else revealed
    where = {name: round(c) for (name, _), c in zip(named, found) if round(c) > 0}
    return value, where
