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
    rng, bound = np.random.default_rng(0), 1 / math.sqrt(xtr.shape[1])
    w = rng.uniform(-bound, bound, (xtr.shape[1], 1))
    b = rng.uniform(-bound, bound, (1,))
    order_rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = order_rng.permutation(len(xtr))
        for i in range(0, len(xtr), batch_size):
            rows = order[i:i + batch_size]
            g = (1 / (1 + np.exp(-(xtr[rows] @ w + b))) - ytr[rows]) / len(rows)
            w, b = w - lr * xtr[rows].T @ g, b - lr * g.sum(axis=0)
    return float(((xte @ w + b > 0) == yte).mean())


def digits():
    """scikit-learn's 8x8 digits: pixels scaled to [0, 1], 80/20 split, seed 0; labels
    one-hot [n, 10]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    onehot = np.eye(10)[y]
    xtr, xte, ytr, yte = train_test_split(x / 16.0, onehot, test_size=0.2, random_state=0)
    return xtr, xte, ytr, yte


def _linear_init(fan_in: int, fan_out: int, seed: int):
    """nn.Linear's initialiser."""
    rng, bound = np.random.default_rng(seed), 1 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, (fan_out,))


def mlp_accuracy(xtr, ytr, xte, yte, *, hidden: int, epochs: int, batch_size: int,
                 lr: float) -> float:
    """Test accuracy of Linear(seed=0)-ReLU-Linear(seed=1) with softmax cross-entropy and
    SGD, trained as nn.fit does (seed 0), in float64."""
    w1, b1 = _linear_init(xtr.shape[1], hidden, 0)
    w2, b2 = _linear_init(hidden, ytr.shape[1], 1)
    order_rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = order_rng.permutation(len(xtr))
        for i in range(0, len(xtr), batch_size):
            rows = order[i:i + batch_size]
            x, y = xtr[rows], ytr[rows]
            h_pre = x @ w1 + b1
            h = np.maximum(h_pre, 0)
            z = h @ w2 + b2
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            g = (p - y) / len(rows)
            gw2, gb2 = h.T @ g, g.sum(axis=0)
            gh = (g @ w2.T) * (h_pre >= 0)
            gw1, gb1 = x.T @ gh, gh.sum(axis=0)
            w1, b1, w2, b2 = w1 - lr * gw1, b1 - lr * gb1, w2 - lr * gw2, b2 - lr * gb2
    logits = np.maximum(xte @ w1 + b1, 0) @ w2 + b2
    return float((logits.argmax(axis=1) == yte.argmax(axis=1)).mean())
