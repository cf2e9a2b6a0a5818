"""DP-SGD on secret shares (Abadi et al., CCS 2016) with TensorFlow Privacy's parameters,
and a Keras-shaped model for it.

    model = nn.DPModel(nn.Linear(ctx, 30, 1))
    model.compile(optimizer=nn.DPSGD(l2_norm_clip=1.0, noise_multiplier=1.1,
                                     num_microbatches=32, learning_rate=0.15),
                  loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=10, batch_size=32, validation_data=(x_test, y_test))

Each step: the batch is cut into num_microbatches groups; DPModel's backward computes
each group's gradient of its mean loss on shares (one batched matrix product per Linear
layer); nn.clip clips each to L2 norm l2_norm_clip on shares; the clipped gradients are
summed, every party adds its own discrete Gaussian share of noise (mpc.add_noise, total
std noise_multiplier * l2_norm_clip against any `colluders` parties), and the sum is
divided by num_microbatches, as TF Privacy's DPGradientDescentGaussianOptimizer does.

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
from nn.clip import clip_microbatches
from nn.layers import Linear, Sequential
from nn.losses import BCEWithLogitsLoss, MSELoss, SoftmaxCrossEntropyLoss
from nn.optim import subtract_flat
from nn.privacy import PrivacyAccountant, steps_per_epoch
from nn.train import accuracy, fit

LOSSES = {"binary_crossentropy": BCEWithLogitsLoss, "categorical_crossentropy":
          SoftmaxCrossEntropyLoss, "mse": MSELoss}


class DPSGD:
    """DP-SGD with momentum: v <- momentum v + (sum_j clip(g_j) + noise) / m;
    w <- w - learning_rate v. Parameters' grads must carry the microbatch axis first,
    [m, *shape], as nn.DPModel's backward leaves them.

    Args (TF Privacy's first three): l2_norm_clip, noise_multiplier, num_microbatches
    (None: one per example); learning_rate, momentum; public_model (see the module);
    colluders (mpc.add_noise; default n - 1); delta and accountant ("rdp" or "pld") for
    the privacy reported by metrics(), accounted as nn.fit draws batches ("public-shuffle":
    nn.privacy). After a resume from a checkpoint a public model counts the interrupted
    epoch as spent, since its noisy gradients may have been revealed before the crash.
    """

    def __init__(self, l2_norm_clip: float, noise_multiplier: float,
                 num_microbatches: int | None = None, learning_rate: float = 0.15,
                 momentum: float = 0.0, *, parameters=None, public_model: bool = False,
                 colluders: int | None = None, delta: float = 1e-5,
                 accountant: str = "rdp"):
        if not l2_norm_clip > 0 or not noise_multiplier >= 0:
            raise ValueError(f"need l2_norm_clip > 0 and noise_multiplier >= 0, got "
                             f"{l2_norm_clip}, {noise_multiplier}")
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
                                             sampling="public-shuffle",
                                             accountant=self.accountant)

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
        grads = [p.grad for p in self.parameters]
        for p, g in zip(self.parameters, grads):
            if g is None or g.shape[1:] != p.value.shape:
                raise ValueError("DPSGD needs per-microbatch gradients [m, *shape] "
                                 f"(train an nn.DPModel); got {None if g is None else g.shape}"
                                 f" for a parameter of shape {p.value.shape}")
        m = grads[0].shape[0]
        clipped = clip_microbatches(grads, self.l2_norm_clip)
        total = mpc.concatenate([c.sum(axis=0).reshape(-1) for c in clipped])
        std = self.noise_multiplier * self.l2_norm_clip
        if self.public_model:
            self._public_step(total.reveal(noise=std, colluders=self.colluders) / m)
        else:
            noisy = mpc.add_noise(total, std, self.colluders) if std else total
            self._secret_step(noisy / m if m > 1 else noisy)
        if self.privacy is not None:
            self.privacy.step()

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


class DPModel(Sequential):
    """A Sequential model trained Keras-style: compile(optimizer, loss, metrics), then
    fit(x, y, epochs, batch_size, validation_data) on shares (nn.fit underneath).

    With a DPSGD optimiser its backward leaves per-microbatch gradients [m, *shape] in
    each parameter (Linear layers; layers without parameters pass the gradient through
    as usual); with another optimiser it is a plain Sequential.
    """

    def __init__(self, *layers):
        super().__init__(*layers)
        self.num_microbatches = None
        self.optimizer = self.loss = None
        self.metric_names: list[str] = []
        self._per_microbatch = False
        self._inputs = []

    def compile(self, optimizer, loss, metrics=()) -> None:
        """loss: a loss object or "binary_crossentropy" (on logits),
        "categorical_crossentropy" (on logits), "mse"; metrics: ["accuracy"] or none."""
        unknown = set(metrics) - {"accuracy"}
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; only 'accuracy' is supported")
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)}")
            loss = LOSSES[loss]()
        self._per_microbatch = isinstance(optimizer, DPSGD)
        if self._per_microbatch:
            optimizer.parameters = self.parameters()
        elif [id(p) for p in optimizer.parameters] != [id(p) for p in self.parameters()]:
            raise ValueError("a non-DP optimiser must be built on model.parameters()")
        self.num_microbatches = getattr(optimizer, "num_microbatches", None)
        self.optimizer, self.loss, self.metric_names = optimizer, loss, list(metrics)

    def fit(self, x, y, *, epochs: int, batch_size: int, validation_data=None, seed: int = 0,
            **fit_options) -> list[dict]:
        """Train with nn.fit; each epoch's record also has val_accuracy (if asked for and
        validation data given: only the count of correct predictions is revealed) and,
        from DPSGD.metrics(), the epsilon and delta spent so far.

        With DPSGD, nn.fit's overflow guard checks the parameters only (already DP, so
        free of privacy cost), never the layers' outputs on training data."""
        if self.optimizer is None:
            raise RuntimeError("call compile(optimizer, loss) before fit")

        def evaluate(model) -> dict:
            if validation_data is None or "accuracy" not in self.metric_names:
                return {}
            return {"val_accuracy": accuracy(model, *validation_data)}

        return fit(self, self.loss, self.optimizer, x, y, epochs=epochs, batch_size=batch_size,
                   seed=seed, evaluate=evaluate, **fit_options)

    def forward(self, x):
        self._inputs = []
        for layer in self.layers:
            self._inputs.append(x)
            x = layer(x)
        return x

    def backward(self, grad, input_grad=True):
        if not self._per_microbatch:
            return super().backward(grad, input_grad=input_grad)
        rows = grad.shape[0]
        m = _groups(rows, self.num_microbatches or rows)
        grad = grad * m  # the gradient of each microbatch's mean loss (integer: exact)
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            if isinstance(layer, Linear):
                g = grad.reshape(m, rows // m, -1)
                x = self._inputs[i].reshape(m, rows // m, -1)
                layer.weight.grad = x.transpose(0, 2, 1) @ g  # [m, in, out] in one product
                layer.bias.grad = g.sum(axis=1)
                grad = grad @ layer.weight.value.T if input_grad or i > 0 else None
            elif layer.parameters():
                raise TypeError(f"per-microbatch gradients are implemented for Linear layers "
                                f"only, not {type(layer).__name__}")
            else:
                grad = layer.backward(grad)
        return grad


def _groups(rows: int, wanted: int) -> int:
    """Microbatches for a batch of `rows`: the largest divisor of rows <= wanted (a short
    last batch gets fewer; each example is still in exactly one clipped microbatch, so the
    privacy is unchanged, but that step's noise is larger relative to its gradient: pick a
    batch size that divides the data set, as the demo does)."""
    return max(d for d in range(1, min(rows, wanted) + 1) if rows % d == 0)
