"""Differentially private training demo: `mpc run -n 3 scripts/train_dp.py`.

Three hospitals train a logistic regression on their breast-cancer records, secret-shared
(as in train_demo.py), with DP-SGD: per-example gradients clipped on shares, discrete
Gaussian noise added by every party, epsilon tracked by dp-accounting. Party 0 prints the
test accuracy and epsilon for a few privacy budgets next to the non-private run, and the
extra seconds per step that DP costs.

Two samplings per budget: "poisson" (every step on every row, a secret Bernoulli bit per
row decides if it counts: nobody learns the sample, so TF Privacy's Poisson figure is
the true epsilon) and "public-shuffle" (nn.fit's public batches: no amplification, see
nn.privacy); TF Privacy's Poisson-sampling figure for the same noise is printed beside
each. Noise is calibrated per target with nn.noise_multiplier_for. With `--plot
acc_eps.png` (matplotlib: pip install '.[plot]') party 0 also draws test accuracy
against epsilon for both.
"""

import sys

import numpy as np

import mpc
import nn
from nn.plain import breast_cancer

EPOCHS, BATCH, LR, MOMENTUM, CLIP, DELTA = 5, 65, 0.5, 0.5, 1.0, 1e-5  # 65 divides 455
TARGETS = [8.0, 3.0, 1.0]


def _train(ctx, x, y, test, make_optimizer):
    model = nn.DPModel(nn.Linear(ctx, 30, 1, seed=0))
    optimizer = make_optimizer(model.parameters())
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, validation_data=test,
                        progress=False)
    steps = EPOCHS * -(-x.shape[0] // BATCH)
    return history[-1], sum(h["seconds"] for h in history) / steps


def main(ctx):
    xtr, xte, ytr, yte = breast_cancer()
    mine = np.array_split(np.arange(len(xtr)), ctx.n_parties)[ctx.pid]
    x, y = mpc.share_rows(ctx, xtr[mine]), mpc.share_rows(ctx, ytr[mine])
    test = (mpc.share(ctx, xte if ctx.pid == 0 else None, 0, shape=xte.shape),
            mpc.share(ctx, yte if ctx.pid == 0 else None, 0, shape=yte.shape))
    n = len(xtr)
    plain, plain_s = _train(ctx, x, y, test, lambda ps: nn.SGD(ps, lr=LR, momentum=MOMENTUM))
    rows = [("non-private", "-", plain["val_accuracy"], float("inf"), float("inf"), plain_s)]
    for target in TARGETS:
        for sampling in ("poisson", "public-shuffle"):
            sigma = nn.noise_multiplier_for(target, DELTA, n, BATCH, EPOCHS, sampling=sampling)
            microbatches = BATCH if sampling == "public-shuffle" else None
            dp, dp_s = _train(ctx, x, y, test, lambda ps: nn.DPSGD(
                CLIP, sigma, microbatches, LR, MOMENTUM, delta=DELTA, parameters=ps,
                sampling=sampling))
            poisson = nn.dp_sgd_epsilon(n, BATCH, sigma, EPOCHS, DELTA, sampling="poisson")
            rows.append((f"{sampling} eps<={target:g}", f"{sigma:.2f}", dp["val_accuracy"],
                         dp["epsilon"], poisson, dp_s))
    if ctx.pid == 0:
        print(f"{ctx.n_parties} parties, {n} training rows, {EPOCHS} epochs, batch {BATCH}, "
              f"clip {CLIP}, delta {DELTA:g}")
        print(f"{'run':<24} {'noise':>6} {'test acc':>9} {'epsilon':>8} {'(Poisson)':>10} "
              f"{'s/step':>7}")
        for name, sigma, acc, eps, poisson, seconds in rows:
            print(f"{name:<24} {sigma:>6} {acc:>9.3f} {eps:>8.2f} {poisson:>10.2f} "
                  f"{seconds:>7.3f}")
        print(f"DP costs {rows[2][5] - plain_s:+.3f} s per step here with public batches, "
              f"{rows[1][5] - plain_s:+.3f} s with secret Poisson sampling (every row each "
              f"step); {ctx.n_parties} parties")
        if "--plot" in sys.argv:
            plot(sys.argv[sys.argv.index("--plot") + 1], rows)
    return rows


def plot(path: str, rows) -> None:
    """Test accuracy against epsilon (log scale), the non-private run as a line."""
    try:
        import matplotlib
    except ImportError:
        print("--plot needs matplotlib: pip install '.[plot]'", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for sampling in ("poisson", "public-shuffle"):
        private = [r for r in rows[1:] if r[0].startswith(sampling)]
        ax.plot([r[3] for r in private], [r[2] for r in private], "o-",
                label=f"DP-SGD on shares, {sampling}")
    ax.axhline(rows[0][2], linestyle="--", color="gray", label="non-private, on shares")
    ax.set_xscale("log")
    ax.set_xticks(TARGETS, [f"{t:g}" for t in TARGETS])
    ax.minorticks_off()
    ax.set_xlabel(f"epsilon (delta = {DELTA:g})")
    ax.set_ylabel("test accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"accuracy against epsilon written to {path}")
