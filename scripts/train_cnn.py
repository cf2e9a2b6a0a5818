"""Private CNN on handwritten digits: `mpc run -n 3 scripts/train_cnn.py [epochs]`.

Each party owns a third of the training images (scikit-learn's 8x8 digits, as [n, 1, 8, 8]);
Conv2d(1->8, 3x3, padding 1), ReLU, MaxPool2d(2), Flatten, Linear(128->10) train on shares
with softmax cross-entropy and SGD; only the test accuracy (and the overflow guard's
counts) is revealed, next to the same training in float64 (nn.plain.cnn_accuracy).
"""

import sys
import time

import numpy as np

import mpc
import nn
from nn.plain import cnn_accuracy, digits

CHANNELS, POOL, BATCH, LR = 8, "MaxPool2d", 32, 0.5


def main(ctx):
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    xtr, xte, ytr, yte = digits()
    xtr, xte = xtr.reshape(-1, 1, 8, 8), xte.reshape(-1, 1, 8, 8)
    mine = np.array_split(np.arange(len(xtr)), ctx.n_parties)[ctx.pid]  # this party's rows
    x = mpc.share_rows(ctx, xtr[mine])
    y = mpc.share_rows(ctx, ytr[mine])
    x_test = mpc.share(ctx, xte if ctx.pid == 0 else None, 0, shape=xte.shape)
    y_test = mpc.share(ctx, yte if ctx.pid == 0 else None, 0, shape=yte.shape)
    model = nn.Sequential(nn.Conv2d(ctx, 1, CHANNELS, 3, padding=1, seed=0), nn.ReLU(),
                          getattr(nn, POOL)(2), nn.Flatten(),
                          nn.Linear(ctx, CHANNELS * 16, 10, seed=1))
    start = time.perf_counter()
    history = nn.fit(model, nn.SoftmaxCrossEntropyLoss(), nn.SGD(model.parameters(), lr=LR),
                     x, y, epochs=epochs, batch_size=BATCH,
                     evaluate=lambda m: {"test_acc": nn.accuracy(m, x_test, y_test)})
    if ctx.pid == 0:
        plain = cnn_accuracy(xtr, ytr, xte, yte, channels=CHANNELS, pool=POOL, epochs=epochs,
                             batch_size=BATCH, lr=LR)
        for h in history:
            print(f"epoch {h['epoch']}  test accuracy {h['test_acc']:.3f}  {h['seconds']:.1f} s"
                  f"  {h['rounds']} rounds  {h['bytes_sent'] / 1e6:.1f} MB sent")
        print(f"private test accuracy {history[-1]['test_acc']:.3f}, float64 {plain:.3f}, "
              f"{time.perf_counter() - start:.1f} s")
    return history[-1]["test_acc"]
