"""Private training demo: `mpc run -n 3 scripts/train_demo.py`.

Three hospitals each hold a third of the breast-cancer records (scikit-learn's copy of
the Wisconsin data: 30 features, benign or malignant). Together they train a logistic
regression on all rows without any of them seeing another's records: the rows are
secret-shared, the model is trained on shares, and only the test accuracy is revealed.
Party 0 prints it next to the same training in plain float64.
"""

import math
import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import mpc
import nn

EPOCHS, BATCH, LR = 10, 32, 0.1


def load():
    """The W6 setting: standardised (with constants the hospitals agreed on), 80/20
    split, seed 0. In a real deployment each party reads only its own file."""
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(xtr)
    return (scaler.transform(xtr), scaler.transform(xte), ytr.reshape(-1, 1).astype(float),
            yte.reshape(-1, 1).astype(float))


def float64_baseline(xtr, ytr, xte, yte):
    rng, bound = np.random.default_rng(0), 1 / math.sqrt(xtr.shape[1])
    w, b = rng.uniform(-bound, bound, (xtr.shape[1], 1)), rng.uniform(-bound, bound, (1,))
    order_rng = np.random.default_rng(0)
    for _ in range(EPOCHS):
        order = order_rng.permutation(len(xtr))
        for i in range(0, len(xtr), BATCH):
            rows = order[i:i + BATCH]
            g = (1 / (1 + np.exp(-(xtr[rows] @ w + b))) - ytr[rows]) / len(rows)
            w, b = w - LR * xtr[rows].T @ g, b - LR * g.sum(axis=0)
    return float(((xte @ w + b > 0) == yte).mean())


def main(ctx):
    xtr, xte, ytr, yte = load()
    mine = np.array_split(np.arange(len(xtr)), ctx.n_parties)  # hospital p owns mine[p]
    x = mpc.concatenate([mpc.share(ctx, xtr[r] if ctx.pid == p else None, p, shape=(len(r), 30))
                         for p, r in enumerate(mine)])
    y = mpc.concatenate([mpc.share(ctx, ytr[r] if ctx.pid == p else None, p, shape=(len(r), 1))
                         for p, r in enumerate(mine)])
    x_test = mpc.share(ctx, xte if ctx.pid == 0 else None, 0, shape=xte.shape)
    y_test = mpc.share(ctx, yte if ctx.pid == 0 else None, 0, shape=yte.shape)

    model = nn.Linear(ctx, 30, 1, seed=0)
    start = time.perf_counter()
    history = nn.fit(model, nn.BCEWithLogitsLoss(), nn.SGD(model.parameters(), lr=LR), x, y,
                     epochs=EPOCHS, batch_size=BATCH,
                     evaluate=lambda m: {"test_acc": nn.accuracy(m, x_test, y_test)})
    seconds = time.perf_counter() - start
    if ctx.pid == 0:
        for h in history:
            print(f"epoch {h['epoch']:2d}  test accuracy {h['test_acc']:.3f}  "
                  f"{h['seconds']:.2f} s  {h['bytes_sent'] / 1e6:.1f} MB sent")
        print(f"\n{ctx.n_parties} parties, {len(xtr)} training rows split among them: "
              f"private test accuracy {history[-1]['test_acc']:.3f}, same training in float64 "
              f"{float64_baseline(xtr, ytr, xte, yte):.3f}; training took {seconds:.1f} s")
    return history[-1]["test_acc"]
