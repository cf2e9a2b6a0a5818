"""Private training demo: `mpc run -n 3 scripts/train_demo.py`.

Three hospitals each hold a third of the breast-cancer records (scikit-learn's copy of
the Wisconsin data: 30 features, benign or malignant). Together they train a logistic
regression on all rows without any of them seeing another's records: the rows are
secret-shared, the model is trained on shares, and only the test accuracy is revealed.
Party 0 prints it next to the same training in plain float64.
"""

import time

import numpy as np

import mpc
import nn
from nn.plain import breast_cancer, logistic_regression_accuracy

EPOCHS, BATCH, LR = 10, 32, 0.1


def main(ctx):
    xtr, xte, ytr, yte = breast_cancer()  # each hospital would read only its own rows
    mine = np.array_split(np.arange(len(xtr)), ctx.n_parties)[ctx.pid]  # this party's rows
    x = mpc.share_rows(ctx, xtr[mine])
    y = mpc.share_rows(ctx, ytr[mine])
    x_test = mpc.share(ctx, xte if ctx.pid == 0 else None, 0, shape=xte.shape)
    y_test = mpc.share(ctx, yte if ctx.pid == 0 else None, 0, shape=yte.shape)

    model = nn.Linear(ctx, 30, 1, seed=0)
    start = time.perf_counter()
    history = nn.fit(model, nn.BCEWithLogitsLoss(), nn.SGD(model.parameters(), lr=LR), x, y,
                     epochs=EPOCHS, batch_size=BATCH,
                     evaluate=lambda m: {"test_acc": nn.accuracy(m, x_test, y_test)})
    seconds = time.perf_counter() - start
    if ctx.pid == 0:
        plain = logistic_regression_accuracy(xtr, ytr, xte, yte, epochs=EPOCHS,
                                             batch_size=BATCH, lr=LR)
        for h in history:
            print(f"epoch {h['epoch']:2d}  test accuracy {h['test_acc']:.3f}  "
                  f"{h['seconds']:.2f} s  {h['bytes_sent'] / 1e6:.1f} MB sent")
        print(f"\n{ctx.n_parties} parties, {len(xtr)} training rows split among them: "
              f"private test accuracy {history[-1]['test_acc']:.3f}, same training in float64 "
              f"{plain:.3f}; training took {seconds:.1f} s")
    return history[-1]["test_acc"]
