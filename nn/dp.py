"""DP-SGD on secret shares (Abadi et al., CCS 2016) with TensorFlow Privacy's parameters;
nn.DPModel (nn/keras.py) is the Keras-shaped model that trains with it.

    model = nn.DPModel(nn.Linear(ctx, 30, 1))
    model.compile(optimizer=nn.DPSGD(l2_norm_clip=1.0, noise_multiplier=1.1,
                                     num_microbatches=32, learning_rate=0.15),
                  loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=10, batch_size=32, validation_data=(x_test, y_test))

Each step: the batch is cut into num_microbatches groups; DPModel's backward computes
each group's gradient of its mean loss on shares (a Linear layer with one example per
group leaves the factors x_i, delta_i instead; a Conv2d or a larger group, one batched
product per layer); nn.clip.clip_examples clips each to L2 norm l2_norm_clip on shares
and sums them; every party adds its own discrete Gaussian share of noise (mpc.add_noise,
total std noise_multiplier * l2_norm_clip against any `colluders` parties), and the sum
is divided by num_microbatches, as TF Privacy's DPGradientDescentGaussianOptimizer does.
With sampling="poisson" every row is in every step's computation and a secret
Bernoulli(batch_size / n) bit per row decides whether it counts; the sum is divided by
the expected batch size (DPSGD, nn.privacy).

Two modes. Secret model (default): the noisy gradient stays shared and the update is done
on shares; only what the script reveals at the end (the model, an accuracy) is seen, and
it is DP as post-processing. Fits when the model itself is an asset or will be revealed
once. Public model (public_model=True): the noisy gradient is revealed each step and the
update done in the clear, so every party follows the model as it trains (the initial
weights, a public initialisation, are revealed at the first step). Fits when the model
is meant to be published anyway; the saving is the secret update only, since nn's layers
still multiply by the weights as shares.
"""

from __future__ import annotations

import numpy as np

import mpc
from nn.clip import clip_examples
from nn.layers import Conv2d, Linear
from nn.optim import subtract_flat
from nn.privacy import SAMPLINGS, PrivacyAccountant, sampling_probability, steps_per_epoch
from nn.train import shuffled_batches


class DPSGD:
    """DP-SGD with momentum: v <- momentum v + (sum_j clip(g_j) + noise) / m;
    w <- w - learning_rate v. Parameters' grads must carry the microbatch axis first,
    [m, *shape], as nn.DPModel's backward leaves them.

    Args (TF Privacy's first three): l2_norm_clip, noise_multiplier, num_microbatches
    (None: one per example); learning_rate, momentum; public_model (see the module);
    colluders (mpc.add_noise; default the protocol's threat model: n - 1, or 1 with three
    replicated servers); delta and accountant ("rdp" or "pld") for the privacy reported by
    metrics(). After a resume from a checkpoint a public model
    counts the interrupted epoch as spent, since its noisy gradients may have been
    revealed before the crash.

    sampling: "public-shuffle" (default): nn.fit's batches, a public seeded shuffle,
    accounted without amplification. "poisson": every step runs on every row, and a
    secret Bernoulli(q) bit per row (mpc.bernoulli, q = batch_size / n) decides whether
    its clipped gradient counts; the sum is divided by the expected batch size. Nobody
    (no party, not the dealer, not whoever gets the model) learns which rows a step used,
    so dp-accounting's Poisson-subsampled Gaussian is the mechanism run (nn.privacy
    derives it). One gradient per example (num_microbatches None); a step costs a pass
    over all n rows, and e epochs are ceil(e n / batch_size) steps (TF Privacy's count),
    so an epoch costs about n / batch_size passes over the data.

    activation_bound (A, default 8): with one example per microbatch, Linear layers'
    per-example gradients are clipped without being formed (nn.clip.clip_examples),
    which bounds each layer's input coordinates by A and the output gradient's by
    l2_norm_clip for the gradient (a no-op for ordinary values; it keeps the fixed-point
    norms in range whatever the input).
    """

    def __init__(self, l2_norm_clip: float, noise_multiplier: float,
                 num_microbatches: int | None = None, learning_rate: float = 0.15,
                 momentum: float = 0.0, *, parameters=None, public_model: bool = False,
                 colluders: int | None = None, delta: float = 1e-5,
                 accountant: str = "rdp", sampling: str = "public-shuffle",
                 activation_bound: float = 8.0):
        if not l2_norm_clip > 0 or not noise_multiplier >= 0:
            raise ValueError(f"need l2_norm_clip > 0 and noise_multiplier >= 0, got "
                             f"{l2_norm_clip}, {noise_multiplier}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if sampling == "poisson" and num_microbatches is not None:
            raise ValueError(f"sampling='poisson' clips each example's gradient: "
                             f"num_microbatches must be None, got {num_microbatches!r}")
        if not activation_bound > 0:
            raise ValueError(f"activation_bound must be > 0, got {activation_bound!r}")
        self.sampling, self.activation_bound = sampling, float(activation_bound)
        self.l2_norm_clip, self.noise_multiplier = l2_norm_clip, noise_multiplier
        self.num_microbatches = num_microbatches
        self.learning_rate, self.momentum = learning_rate, momentum
        self.parameters = list(parameters) if parameters is not None else []
        self.public_model, self.colluders = public_model, colluders
        self.delta, self.accountant = delta, accountant
        self.privacy: PrivacyAccountant | None = None
        self._velocity = None
        self._weights = None  # public model: the weights in the clear

    def track(self, n: int, batch_size: int) -> None:
        """Account for training on n rows in batches of batch_size (nn.fit calls it); a
        second fit on the same data keeps adding to the privacy already spent."""
        same = self.privacy is not None and \
            (self.privacy.n, self.privacy.batch_size) == (n, batch_size)
        if not same:
            self.privacy = PrivacyAccountant(n, batch_size, self.noise_multiplier, self.delta,
                                             sampling=self.sampling,
                                             accountant=self.accountant)

    def batch_plan(self, n: int, batch_size: int, rng, epochs: int) -> list:
        """Each epoch's row selections for nn.fit: its public shuffle, or with Poisson
        sampling every row at each step, ceil(e n / batch_size) steps in the first e
        epochs (TF Privacy's count: compute_dp_sgd_privacy's epsilon for e epochs is the
        one reported after e); the secret mask drawn in step() does the sampling."""
        if self.sampling != "poisson":
            return [shuffled_batches(n, batch_size, rng) for _ in range(epochs)]
        ends = [-(-e * n // batch_size) for e in range(epochs + 1)]
        return [[slice(None)] * (ends[e + 1] - ends[e]) for e in range(epochs)]

    def metrics(self) -> dict:
        """{"epsilon", "delta"} spent so far (empty until track())."""
        return self.privacy.metrics() if self.privacy is not None else {}

    def zero_grad(self) -> None:
        for p in self.parameters:
            p.grad = None

    def state(self) -> dict:
        """For nn.checkpoint: the momentum buffer (as shares; a public model's as a public
        sharing) and the number of steps accounted."""
        velocity = self._velocity
        if self.public_model and velocity is not None:
            velocity = mpc.share_public(self.parameters[0].value.ctx, velocity)
        return {"velocity": velocity,
                "steps": None if self.privacy is None else self.privacy.steps}

    def load_state(self, state: dict) -> None:
        velocity = state.get("velocity")
        if self.public_model:
            velocity = None if velocity is None else velocity.reveal()
            self._weights = None  # re-read from the restored (public) parameters
        self._velocity = velocity
        if self.privacy is not None and state.get("steps") is not None:
            steps = int(state["steps"])
            if self.public_model:  # the interrupted epoch's noisy gradients may be out
                steps += steps_per_epoch(self.privacy.n, self.privacy.batch_size)
            self.privacy.steps = steps

    def step(self) -> None:
        parts, places = self._parts()
        m = parts[0][1].shape[0]
        clipped = clip_examples(parts, self.l2_norm_clip, self.activation_bound, self._mask(m))
        summed = [clipped[i] for i in places]
        total = mpc.concatenate([c.reshape(-1) for c in summed])
        std = self.noise_multiplier * self.l2_norm_clip
        divisor = self.privacy.batch_size if self.sampling == "poisson" else m
        if self.public_model:
            self._public_step(total.reveal(noise=std, colluders=self.colluders) / divisor)
        else:
            noisy = mpc.add_noise(total, std, self.colluders) if std else total
            self._secret_step(noisy / divisor if divisor > 1 else noisy)
        if self.privacy is not None:
            self.privacy.step()

    def _parts(self):
        """The parameters' gradients as nn.clip.clip_examples parts (a Linear layer's
        factors once for its two parameters, other gradients formed and flattened), and
        where each parameter's summed gradient lands in its output."""
        parts, places, seen, offset = [], [], {}, 0
        for p in self.parameters:
            g = p.grad
            if isinstance(g, LinearFactors):  # outputs [sum dW, sum db]
                if id(g) not in seen:
                    seen[id(g)], offset = offset, offset + 2
                    parts.append(g.pair)
                places.append(seen[id(g)] + (0 if p is g.weight else 1))
                continue
            if g is None or g.shape[1:] != p.value.shape:
                got = "none" if g is None else f"a gradient of shape {g.shape}"
                raise ValueError(f"DPSGD needs per-microbatch gradients [m, *shape] for a "
                                 f"parameter of shape {p.value.shape} (train an nn.DPModel); "
                                 f"got {got}")
            places.append(offset)  # output [sum g]
            offset += 1
            parts.append((None, g.reshape(g.shape[0], -1)))
        rows = {part[1].shape[0] for part in parts}
        if len(rows) > 1:
            raise ValueError(f"microbatch axes differ: {sorted(rows)}")
        return parts, places

    def _mask(self, rows: int):
        """Poisson sampling: a secret Bernoulli(q) bit per example (None otherwise)."""
        if self.sampling != "poisson":
            return None
        if self.privacy is None:
            raise RuntimeError("sampling='poisson' needs the data size: train with nn.fit "
                               "or DPModel.fit (they call track(n, batch_size))")
        if rows != self.privacy.n:
            raise ValueError(f"sampling='poisson' runs every step on all {self.privacy.n} "
                             f"rows, got gradients for {rows}")
        q = sampling_probability(self.privacy.n, self.privacy.batch_size)
        return mpc.bernoulli(self.parameters[0].value.ctx, (rows,), q)

    def _secret_step(self, grad) -> None:
        if self.momentum and self._velocity is not None:
            grad = self._velocity * self.momentum + grad
        self._velocity = grad
        subtract_flat(self.parameters, grad * self.learning_rate)

    def _public_step(self, grad: np.ndarray) -> None:
        if self._weights is None:
            self._weights = mpc.concatenate([p.value.reshape(-1)
                                             for p in self.parameters]).reveal()
        if self.momentum and self._velocity is not None:
            grad = self._velocity * self.momentum + grad
        self._velocity = grad
        self._weights = self._weights - self.learning_rate * grad
        self._assign(mpc.share_public(self.parameters[0].value.ctx, self._weights))

    def _assign(self, flat) -> None:
        start = 0
        for p in self.parameters:
            size = int(np.prod(p.value.shape))
            p.value = flat[start:start + size].reshape(p.value.shape)
            start += size


PER_MICROBATCH_LAYERS = (Linear, Conv2d)  # parameterised layers with per-microbatch grads


def check_per_microbatch_layers(layers) -> None:
    """Refuse a parameterised layer per_microbatch_backward cannot handle (call before
    any data is shared)."""
    for layer in layers:
        if layer.parameters() and not isinstance(layer, PER_MICROBATCH_LAYERS):
            raise TypeError(f"per-microbatch gradients are implemented for Linear and "
                            f"Conv2d layers, not {type(layer).__name__}")


def per_microbatch_backward(layers, inputs, grad, num_microbatches, input_grad=True):
    """Backward through a chain of `layers` (whose forward inputs were `inputs`) leaving
    in each parameter's grad what nn.DPSGD clips: LinearFactors for a Linear layer with
    one example per microbatch, else the per-microbatch gradients [m, *shape] (m: the
    largest divisor of the batch <= num_microbatches, or one per example). `grad` is the
    loss gradient of the batch mean, or each row's own (RowGradients: exact)."""
    rows = grad.shape[0]
    m = _groups(rows, num_microbatches or rows)
    if isinstance(grad, RowGradients):
        grad = grad.tensor if m == rows else grad.tensor / (rows // m)
    else:  # the batch mean's: times rows / microbatch (integer: exact)
        grad = grad * m
    for i in reversed(range(len(layers))):
        layer = layers[i]
        needed = input_grad or i > 0
        if isinstance(layer, Linear):
            grad = _linear_microbatches(layer, inputs[i], grad, m, needed)
        elif isinstance(layer, Conv2d):
            grad = _conv_microbatches(layer, grad, m, needed)
        elif layer.parameters():
            check_per_microbatch_layers([layer])
        else:
            grad = layer.backward(grad)
    return grad


class LinearFactors:
    """A Linear layer's per-example gradients as the pair (x [N, in], delta [N, out])
    they are outer products of (x_i delta_i^T for the weight, delta_i for the bias),
    left unformed for nn.clip.clip_examples; both parameters' grad."""

    def __init__(self, layer, x, delta):
        self.weight, self.pair = layer.weight, (x, delta)


def _linear_microbatches(layer, x, grad, m: int, input_grad: bool):
    """Per-microbatch gradients of a Linear layer: the factors for one example per
    microbatch, else one batched product [m, in, out]; returns the input's gradient."""
    rows = grad.shape[0]
    g, xs = grad.reshape(rows, -1), x.reshape(rows, -1)
    if m == rows:
        layer.weight.grad = layer.bias.grad = LinearFactors(layer, xs, g)
        return g @ layer.weight.value.T if input_grad else None
    gm, xm = g.reshape(m, rows // m, -1), xs.reshape(m, rows // m, -1)
    if not input_grad:
        layer.weight.grad = xm.transpose(0, 2, 1) @ gm
        layer.bias.grad = gm.sum(axis=1)
        return None
    layer.weight.grad, out = mpc.matmul_many([(xm.transpose(0, 2, 1), gm),
                                              (g, layer.weight.value.T)])
    layer.bias.grad = gm.sum(axis=1)
    return out


def _conv_microbatches(layer, grad, m: int, input_grad: bool):
    """Per-microbatch gradients of a Conv2d layer: each image's weight gradient
    g_n @ cols_n^T (one batched product, with the input's gradient in the same rounds),
    summed within its microbatch: [m, O, C, kh, kw] and [m, O]."""
    rows, o = grad.shape[:2]
    g = grad.reshape(rows, o, -1)
    w_shape = layer.weight.value.shape
    cols_t = layer._cols.transpose(0, 2, 1)
    if input_grad:
        w2 = layer.weight.value.reshape(o, -1)
        per_image, spread = mpc.matmul_many([(g, cols_t), (w2.T, g)])
    else:
        per_image, spread = g @ cols_t, None
    layer.weight.grad = per_image.reshape(m, rows // m, -1).sum(axis=1).reshape(m, *w_shape)
    layer.bias.grad = g.sum(axis=2).reshape(m, rows // m, o).sum(axis=1)
    if spread is None:
        return None
    return spread.col2im(layer._shape, layer.kernel, layer.stride, layer.padding)


class RowGradients:
    """Marks a loss gradient as each row's own (not the batch mean's)."""

    def __init__(self, tensor):
        self.tensor, self.shape = tensor, tensor.shape


class RowLoss:
    """A loss whose backward() gives each row's own gradient (exact: no division by the
    batch and multiplication back), for per-microbatch gradients."""

    def __init__(self, loss):
        self._loss = loss

    def __call__(self, pred, target):
        self._rows = pred.shape[0]
        return self._loss(pred, target)

    def backward(self):
        if hasattr(self._loss, "row_gradients"):
            return RowGradients(self._loss.row_gradients())
        return RowGradients(self._loss.backward() * self._rows)

    def value(self):
        return self._loss.value()


def _groups(rows: int, wanted: int) -> int:
    """Microbatches for a batch of `rows`: the largest divisor of rows <= wanted (a short
    last batch gets fewer; each example is still in exactly one clipped microbatch, so the
    privacy is unchanged, but that step's noise is larger relative to its gradient: pick a
    batch size that divides the data set, as the demo does)."""
    return max(d for d in range(1, min(rows, wanted) + 1) if rows % d == 0)
