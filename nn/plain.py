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
