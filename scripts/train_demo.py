"""Private training demo: `mpc run -n 3 scripts/train_demo.py`.

Three hospitals each hold a third of the breast-cancer records (scikit-learn's copy of
the Wisconsin data: 30 features, benign or malignant). Together they train a logistic
regression on all rows without any of them seeing another's records: the rows are
secret-shared, the model is trained on shares, and what is revealed is aggregate: the
test accuracy and, as a progress statistic (report_loss), the training loss on a fixed
sample of 256 rows each epoch.
Party 0 prints it next to the same training in plain float64; with `--plot curve.png`
(matplotlib: pip install '.[plot]') it also draws both learning curves.
"""

import sys
import time

import numpy as np

import mpc
import nn
from nn.plain import breast_cancer, logistic_regression_history
from nn.train import guard_sample

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
                     epochs=EPOCHS, batch_size=BATCH, report_loss=True,
                     evaluate=lambda m: {"test_acc": nn.accuracy(m, x_test, y_test)})
    seconds = time.perf_counter() - start
    if ctx.pid == 0:
        plain = logistic_regression_history(xtr, ytr, xte, yte, epochs=EPOCHS,
                                            batch_size=BATCH, lr=LR,
                                            loss_rows=guard_sample(len(xtr)))
        for h, p in zip(history, plain):
            print(f"epoch {h['epoch']:2d}  loss {h['loss']:.4f} (float64 {p['loss']:.4f})  "
                  f"test accuracy {h['test_acc']:.3f} (float64 {p['test_acc']:.3f})  "
                  f"{h['seconds']:.2f} s  {h['bytes_sent'] / 1e6:.1f} MB sent")
        print(f"\n{ctx.n_parties} parties, {len(xtr)} training rows split among them: "
              f"private test accuracy {history[-1]['test_acc']:.3f}, same training in float64 "
              f"{plain[-1]['test_acc']:.3f}; training took {seconds:.1f} s")
        if "--plot" in sys.argv:
            plot(sys.argv[sys.argv.index("--plot") + 1], history, plain)
    return history[-1]["test_acc"]


def plot(path: str, private: list[dict], plain: list[dict]) -> None:
    """Loss and test accuracy per epoch, on shares and in float64, as a PNG."""
    try:
        import matplotlib
    except ImportError:
        print("--plot needs matplotlib: pip install '.[plot]'", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("loss", "test_acc")):
        ax.plot([h["epoch"] for h in private], [h[key] for h in private], "o-",
                label="on secret shares")
        ax.plot([h["epoch"] for h in plain], [h[key] for h in plain], "--", label="float64")
        ax.set_xlabel("epoch")
        ax.set_ylabel({"loss": "training loss", "test_acc": "test accuracy"}[key])
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"learning curves written to {path}")
