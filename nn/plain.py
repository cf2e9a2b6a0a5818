"""Plain float64 references for the demos, tests and benchmarks: the real data sets as the
workloads define them, and the same training as nn does on shares (same seeded
initialisation, same batches), so that accuracy can be set side by side."""

from __future__ import annotations

import math

import numpy as np


def breast_cancer():
    """W6's setting: scikit-learn's breast-cancer data, standardised, 80/20 split, seed 0.
    Returns x_train, x_test, y_train, y_test with labels as [n, 1] floats."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(xtr)
    return (scaler.transform(xtr), scaler.transform(xte), ytr.reshape(-1, 1).astype(float),
            yte.reshape(-1, 1).astype(float))


def logistic_regression_accuracy(xtr, ytr, xte, yte, *, epochs: int, batch_size: int,
                                 lr: float) -> float:
    """Test accuracy of nn.Linear(seed=0) + BCEWithLogitsLoss + SGD trained by nn.fit
    (seed 0), done in float64 with the exact sigmoid."""
    return logistic_regression_history(xtr, ytr, xte, yte, epochs=epochs,
                                       batch_size=batch_size, lr=lr)[-1]["test_acc"]


def logistic_regression_history(xtr, ytr, xte, yte, *, epochs: int, batch_size: int,
                                lr: float, loss_rows: np.ndarray | None = None) -> list[dict]:
    """The same training, one record per epoch: test accuracy and the cross-entropy on
    the training rows `loss_rows` (all by default; nn.fit reports it on
    nn.train.guard_sample's rows)."""
    rng, bound = np.random.default_rng(0), 1 / math.sqrt(xtr.shape[1])
    w = rng.uniform(-bound, bound, (xtr.shape[1], 1))
    b = rng.uniform(-bound, bound, (1,))
    order_rng = np.random.default_rng(0)
    rows_for_loss = np.arange(len(xtr)) if loss_rows is None else loss_rows
    history = []
    for epoch in range(epochs):
        order = order_rng.permutation(len(xtr))
        for i in range(0, len(xtr), batch_size):
            rows = order[i:i + batch_size]
            g = (1 / (1 + np.exp(-(xtr[rows] @ w + b))) - ytr[rows]) / len(rows)
            w, b = w - lr * xtr[rows].T @ g, b - lr * g.sum(axis=0)
        p = 1 / (1 + np.exp(-(xtr[rows_for_loss] @ w + b)))
        y = ytr[rows_for_loss]
        loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        history.append({"epoch": epoch + 1, "loss": loss,
                        "test_acc": float(((xte @ w + b > 0) == yte).mean())})
    return history


def digits():
    """scikit-learn's 8x8 digits: pixels scaled to [0, 1], 80/20 split, seed 0; labels
    one-hot [n, 10]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    onehot = np.eye(10)[y]
    xtr, xte, ytr, yte = train_test_split(x / 16.0, onehot, test_size=0.2, random_state=0)
    return xtr, xte, ytr, yte


class Linear:
    """float64 twin of nn.Linear (same seeded initialiser)."""

    def __init__(self, fan_in: int, fan_out: int, seed: int = 0):
        rng, bound = np.random.default_rng(seed), 1 / math.sqrt(fan_in)
        self.params = [rng.uniform(-bound, bound, (fan_in, fan_out)),
                       rng.uniform(-bound, bound, (fan_out,))]

    def forward(self, x):
        self._x = x
        return x @ self.params[0] + self.params[1]

    def backward(self, g):
        self.grads = [self._x.T @ g, g.sum(axis=0)]
        return g @ self.params[0].T


class Conv2d:
    """float64 twin of nn.Conv2d (same seeded initialiser), one product per kernel offset."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, stride: int = 1,
                 padding: int = 0, seed: int = 0):
        fan_in = in_channels * kernel * kernel
        rng, bound = np.random.default_rng(seed), 1 / math.sqrt(fan_in)
        self.params = [rng.uniform(-bound, bound, (out_channels, in_channels, kernel, kernel)),
                       rng.uniform(-bound, bound, (out_channels,))]
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def _windows(self, shape):
        """Slices of the padded input that kernel offset (i, j) multiplies."""
        s, k = self.stride, self.kernel
        out_h, out_w = (shape[2] - k) // s + 1, (shape[3] - k) // s + 1
        for i in range(k):
            for j in range(k):
                yield i, j, np.s_[:, :, i:i + s * out_h:s, j:j + s * out_w:s]

    def forward(self, x):
        p = self.padding
        self._x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        w, b = self.params
        return sum(np.einsum("nchw,oc->nohw", self._x[win], w[:, :, i, j])
                   for i, j, win in self._windows(self._x.shape)) + b.reshape(1, -1, 1, 1)

    def backward(self, g):
        w = self.params[0]
        gw, gx = np.zeros_like(w), np.zeros_like(self._x)
        for i, j, win in self._windows(self._x.shape):
            gw[:, :, i, j] = np.einsum("nohw,nchw->oc", g, self._x[win])
            gx[win] += np.einsum("nohw,oc->nchw", g, w[:, :, i, j])
        self.grads = [gw, g.sum(axis=(0, 2, 3))]
        p, (h, wd) = self.padding, self._x.shape[2:]
        return gx[:, :, p:h - p, p:wd - p]


class ReLU:
    """max(x, 0); the derivative is [x >= 0], as nn.ReLU's."""

    params: list = []

    def forward(self, x):
        self._mask = x >= 0
        return x * self._mask

    def backward(self, g):
        self.grads = []
        return g * self._mask


class _Pool:
    """Non-overlapping k x k windows of [N, C, H, W] (H and W multiples of k)."""

    params: list = []

    def __init__(self, kernel: int):
        self.kernel = kernel

    def _windows(self, x):
        n, c, h, w = x.shape
        k = self.kernel
        return x.reshape(n, c, h // k, k, w // k, k).transpose(0, 1, 2, 4, 3, 5)

    def _spread(self, windows):
        n, c, oh, ow, k, _ = windows.shape
        return windows.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh * k, ow * k)


class AvgPool2d(_Pool):
    """float64 twin of nn.AvgPool2d with stride = kernel."""

    def forward(self, x):
        return self._windows(x).mean(axis=(4, 5))

    def backward(self, g):
        self.grads = []
        k = self.kernel
        return self._spread(np.broadcast_to(g[..., None, None] / (k * k), g.shape + (k, k)))


class MaxPool2d(_Pool):
    """float64 twin of nn.MaxPool2d with stride = kernel: on ties every maximal position
    gets the gradient, as on shares."""

    def forward(self, x):
        windows = self._windows(x)
        top = windows.max(axis=(4, 5))
        self._hit = windows >= top[..., None, None]
        return top

    def backward(self, g):
        self.grads = []
        return self._spread(self._hit * g[..., None, None])


class MaxPool2dStrided:
    """float64 twin of nn.MaxPool2d(kernel, stride) for any stride (overlapping windows
    too): on ties every maximal position gets the gradient, as on shares."""

    params: list = []

    def __init__(self, kernel: int, stride: int):
        self.kernel, self.stride = kernel, stride

    def _offsets(self, shape):
        k, s = self.kernel, self.stride
        oh, ow = (shape[2] - k) // s + 1, (shape[3] - k) // s + 1
        return [np.s_[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s]
                for i in range(k) for j in range(k)]

    def forward(self, x):
        self._x = x
        self._top = np.max([x[win] for win in self._offsets(x.shape)], axis=0)
        return self._top

    def backward(self, g):
        self.grads = []
        gx = np.zeros_like(self._x)
        for win in self._offsets(self._x.shape):
            gx[win] += g * (self._x[win] >= self._top)
        return gx


class Flatten:
    """[batch, ...] -> [batch, features]."""

    params: list = []

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, g):
        self.grads = []
        return g.reshape(self._shape)


class Sequential:
    """Layers in order; backward in reverse; params and grads in nn.Sequential's order."""

    def __init__(self, *layers):
        self.layers = layers

    @property
    def params(self):
        return [p for layer in self.layers for p in layer.params]

    @property
    def grads(self):
        return [g for layer in self.layers for g in layer.grads]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, g):
        for layer in reversed(self.layers):
            g = layer.backward(g)
        return g


class SGD:
    """float64 twin of nn.SGD, updating the arrays in place."""

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self._velocity = None

    def step(self, params, grads) -> None:
        grads = [g + self.weight_decay * w for w, g in zip(params, grads)]
        if self.momentum:
            self._velocity = grads if self._velocity is None else [
                self.momentum * v + g for v, g in zip(self._velocity, grads)]
            grads = self._velocity
        for w, g in zip(params, grads):
            w -= self.lr * g


class Adam:
    """Adam in float64 as torch.optim.Adam has it (L2 weight decay added to the gradient,
    eps added to sqrt(v_hat)), updating the arrays in place. With `floor` > 0, sqrt(v_hat)
    is raised to at least `floor` first, as nn.Adam's fixed point does (2^-(5+scale_bits))."""

    def __init__(self, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, floor: float = 0.0):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.floor = floor
        self._t, self._m, self._v = 0, None, None

    def step(self, params, grads) -> None:
        (b1, b2), self._t = self.betas, self._t + 1
        grads = [g + self.weight_decay * w for w, g in zip(params, grads)]
        if self._m is None:
            self._m = [np.zeros_like(g) for g in grads]
            self._v = [np.zeros_like(g) for g in grads]
        for w, g, m, v in zip(params, grads, self._m, self._v):
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            root = np.maximum(np.sqrt(v / (1 - b2 ** self._t)), self.floor)
            w -= self.lr * (m / (1 - b1 ** self._t)) / (root + self.eps)


def train(model, optimizer, xtr, ytr, *, epochs: int, batch_size: int, seed: int = 0):
    """Softmax cross-entropy training with nn.fit's batches (the same seeded permutation
    each epoch), in float64; returns the model."""
    order_rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = order_rng.permutation(len(xtr))
        for i in range(0, len(xtr), batch_size):
            rows = order[i:i + batch_size]
            z = model.forward(xtr[rows])
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            model.backward((p - ytr[rows]) / len(rows))
            optimizer.step(model.params, model.grads)
    return model


def accuracy(model, x, y) -> float:
    """Fraction of rows whose largest logit is the one-hot label's."""
    return float((model.forward(x).argmax(axis=1) == y.argmax(axis=1)).mean())


def mlp_accuracy(xtr, ytr, xte, yte, *, hidden: int, epochs: int, batch_size: int,
                 lr: float) -> float:
    """Test accuracy of Linear(seed=0)-ReLU-Linear(seed=1) with softmax cross-entropy and
    SGD, trained as nn.fit does (seed 0), in float64."""
    model = Sequential(Linear(xtr.shape[1], hidden, 0), ReLU(), Linear(hidden, ytr.shape[1], 1))
    train(model, SGD(lr), xtr, ytr, epochs=epochs, batch_size=batch_size)
    return accuracy(model, xte, yte)


def cnn_accuracy(xtr, ytr, xte, yte, *, channels: int, pool: str, epochs: int,
                 batch_size: int, lr: float) -> float:
    """Test accuracy of Conv2d(1, channels, 3, padding=1, seed=0)-ReLU-`pool`(2)-Flatten-
    Linear(seed=1) on [n, 1, H, W] images with softmax cross-entropy and SGD, trained as
    nn.fit does (seed 0), in float64. `pool` is "AvgPool2d" or "MaxPool2d"."""
    pooled = channels * (xtr.shape[2] // 2) * (xtr.shape[3] // 2)
    model = Sequential(Conv2d(1, channels, 3, padding=1, seed=0), ReLU(),
                       {"AvgPool2d": AvgPool2d, "MaxPool2d": MaxPool2d}[pool](2), Flatten(),
                       Linear(pooled, ytr.shape[1], seed=1))
    train(model, SGD(lr), xtr, ytr, epochs=epochs, batch_size=batch_size)
    return accuracy(model, xte, yte)


def dp_sgd_train(model, xtr, ytr, *, epochs: int, batch_size: int, lr: float,
                 momentum: float, l2_norm_clip: float, noise_std: float, sampling: str,
                 seed: int = 0):
    """float64 twin of nn.DPSGD with one gradient per example and softmax cross-entropy:
    each example's gradient clipped to l2_norm_clip, summed with N(0, noise_std^2) noise
    per coordinate, divided by the batch (its expected size under Poisson sampling);
    v <- momentum v + that, w <- w - lr v. `sampling` as nn.DPSGD's: "public-shuffle"
    (nn.fit's batches) or "poisson" (ceil(n / batch) steps an epoch, each row in a step
    with probability batch / n). numpy's generator: a reference, not a private release."""
    rng, order_rng = np.random.default_rng(seed + 1), np.random.default_rng(seed)
    n, steps = len(xtr), math.ceil(len(xtr) / batch_size)
    velocity = None
    for _ in range(epochs):
        order = order_rng.permutation(n) if sampling == "public-shuffle" else None
        for step in range(steps):
            if sampling == "poisson":
                rows, divisor = np.flatnonzero(rng.random(n) < batch_size / n), batch_size
            else:
                rows = order[step * batch_size:(step + 1) * batch_size]
                divisor = len(rows)
            total = [np.zeros_like(p) for p in model.params]
            for i in rows:
                z = model.forward(xtr[i:i + 1])
                p = np.exp(z - z.max(axis=1, keepdims=True))
                model.backward(p / p.sum(axis=1, keepdims=True) - ytr[i:i + 1])
                norm = math.sqrt(sum(float((g * g).sum()) for g in model.grads))
                scale = min(1.0, l2_norm_clip / norm) if norm > 0 else 1.0
                total = [t + scale * g for t, g in zip(total, model.grads)]
            grad = [(t + rng.normal(0, noise_std, t.shape)) / divisor for t in total]
            velocity = grad if velocity is None else [momentum * v + g
                                                      for v, g in zip(velocity, grad)]
            for w, v in zip(model.params, velocity):
                w -= lr * v
    return model
