"""DP-SGD on secret shares (Abadi et al., CCS 2016) with TensorFlow Privacy's parameters;
nn.DPModel (nn/keras.py) is the Keras-shaped model that trains with it.

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
from nn.optim import subtract_flat
from nn.privacy import PrivacyAccountant, steps_per_epoch


class DPSGD:
    """DP-SGD with momentum: v <- momentum v + (sum_j clip(g_j) + noise) / m;
    w <- w - learning_rate v. Parameters' grads must carry the microbatch axis first,
    [m, *shape], as nn.DPModel's backward leaves them.

    Args (TF Privacy's first three): l2_norm_clip, noise_multiplier, num_microbatches
    (None: one per example); learning_rate, momentum; public_model (see the module);
    colluders (mpc.add_noise; default the protocol's threat model: n - 1, or 1 with three
    replicated servers); delta and accountant ("rdp" or "pld") for the privacy reported by
    metrics(), accounted as nn.fit draws batches ("public-shuffle": nn.privacy). After a
    resume from a checkpoint a public model counts the interrupted epoch as spent, since
    its noisy gradients may have been revealed before the crash.
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
