"""Private MLP on handwritten digits: `mpc run -n 3 scripts/train_digits.py [epochs]`.

Each party owns a third of the training images (scikit-learn's 8x8 digits); a 64-32-10
MLP with ReLU and softmax cross-entropy trains on shares; only the test accuracy (and the
overflow guard's counts, zero in healthy training) is revealed, next to the same
training in float64.
"""

import sys
import time

import numpy as np

import mpc
import nn
from nn.plain import digits, mlp_accuracy

HIDDEN, BATCH, LR = 32, 32, 0.5


def main(ctx):
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    xtr, xte, ytr, yte = digits()
    mine = np.array_split(np.arange(len(xtr)), ctx.n_parties)[ctx.pid]  # this party's rows
    x = mpc.share_rows(ctx, xtr[mine])
    y = mpc.share_rows(ctx, ytr[mine])
    x_test = mpc.share(ctx, xte if ctx.pid == 0 else None, 0, shape=xte.shape)
    y_test = mpc.share(ctx, yte if ctx.pid == 0 else None, 0, shape=yte.shape)
    model = nn.Sequential(nn.Linear(ctx, 64, HIDDEN, seed=0), nn.ReLU(),
                          nn.Linear(ctx, HIDDEN, 10, seed=1))
    start = time.perf_counter()
    history = nn.fit(model, nn.SoftmaxCrossEntropyLoss(), nn.SGD(model.parameters(), lr=LR),
                     x, y, epochs=epochs, batch_size=BATCH,
                     evaluate=lambda m: {"test_acc": nn.accuracy(m, x_test, y_test)})
    if ctx.pid == 0:
        plain = mlp_accuracy(xtr, ytr, xte, yte, hidden=HIDDEN, epochs=epochs,
                             batch_size=BATCH, lr=LR)
        for h in history:
            print(f"epoch {h['epoch']}  test accuracy {h['test_acc']:.3f}  {h['seconds']:.1f} s")
        print(f"private test accuracy {history[-1]['test_acc']:.3f}, float64 {plain:.3f}, "
              f"{time.perf_counter() - start:.1f} s")
    return history[-1]["test_acc"]
