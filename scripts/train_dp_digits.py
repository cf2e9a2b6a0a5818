"""DP-SGD on digits with secret Poisson sampling: `mpc run -n 3 scripts/train_dp_digits.py`.

Each party owns a third of scikit-learn's 8x8 digits (1437 training rows); a 64-32-10 MLP
trains on shares with DP-SGD at epsilon 1, 3 and 8 (delta 1e-5) in two modes:
- sampling="poisson": every step runs on every row and a secret Bernoulli(q) bit per row
  decides whether its clipped gradient counts; nobody learns the sample, so the epsilon
  is dp-accounting's Poisson figure (TF Privacy's compute_dp_sgd_privacy, printed beside
  ours from dp_accounting directly);
- sampling="public-shuffle": nn.fit's public batches, accounted without amplification.
The noise of each is calibrated to the target (nn.noise_multiplier_for); the same DP-SGD
in float64 (nn.plain.dp_sgd_train, with the total noise the parties add: sqrt(n) times,
since each adds the full amount against n - 1 colluders) runs beside each. Party 0
prints the table; `--plot acc_eps.png` draws test accuracy against epsilon for both modes.
`--epochs E` (default 5).
"""

import sys

import dp_accounting
import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant

import mpc
import nn
from nn import plain
from nn.plain import digits
from nn.privacy import TF_PRIVACY_ORDERS

HIDDEN, BATCH, LR, MOMENTUM, CLIP, DELTA = 32, 250, 1.0, 0.5, 1.0, 1e-5
TARGETS = [1.0, 3.0, 8.0]


def tf_privacy_epsilon(n, batch, sigma, steps, delta):
    """What TF Privacy's compute_dp_sgd_privacy computes: dp_accounting's RDP accountant
    on a Poisson-sampled Gaussian, with its orders."""
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(batch / n, dp_accounting.GaussianDpEvent(sigma)),
        steps)
    return rdp_privacy_accountant.RdpAccountant(TF_PRIVACY_ORDERS).compose(event) \
        .get_epsilon(delta)


def _model(ctx):
    return nn.DPModel(nn.Linear(ctx, 64, HIDDEN, seed=0), nn.ReLU(),
                      nn.Linear(ctx, HIDDEN, 10, seed=1))


def _float64(xtr, ytr, xte, yte, epochs, sigma, sampling, n_parties):
    model = plain.Sequential(plain.Linear(64, HIDDEN, 0), plain.ReLU(),
                             plain.Linear(HIDDEN, 10, 1))
    plain.dp_sgd_train(model, xtr, ytr, epochs=epochs, batch_size=BATCH, lr=LR,
                       momentum=MOMENTUM, l2_norm_clip=CLIP,
                       noise_std=np.sqrt(n_parties) * sigma * CLIP, sampling=sampling)
    return plain.accuracy(model, xte, yte)


def main(ctx):
    epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 5
    xtr, xte, ytr, yte = digits()
    mine = np.array_split(np.arange(len(xtr)), ctx.n_parties)[ctx.pid]
    x, y = mpc.share_rows(ctx, xtr[mine]), mpc.share_rows(ctx, ytr[mine])
    test = (mpc.share(ctx, xte if ctx.pid == 0 else None, 0, shape=xte.shape),
            mpc.share(ctx, yte if ctx.pid == 0 else None, 0, shape=yte.shape))
    n, rows = len(xtr), []
    for target in TARGETS:
        for sampling in ("poisson", "public-shuffle"):
            sigma = nn.noise_multiplier_for(target, DELTA, n, BATCH, epochs, sampling=sampling)
            model = _model(ctx)
            model.compile(optimizer=nn.DPSGD(CLIP, sigma, None if sampling == "poisson"
                                             else BATCH, LR, MOMENTUM, delta=DELTA,
                                             sampling=sampling),
                          loss="categorical_crossentropy", metrics=["accuracy"])
            history = model.fit(x, y, epochs=epochs, batch_size=BATCH, validation_data=test,
                                progress=False)
            steps = model.optimizer.privacy.steps
            rows.append({"sampling": sampling, "target": target, "sigma": sigma,
                         "accuracy": history[-1]["val_accuracy"],
                         "epsilon": history[-1]["epsilon"],
                         "tf_privacy": tf_privacy_epsilon(n, BATCH, sigma, steps, DELTA),
                         "float64": _float64(xtr, ytr, xte, yte, epochs, sigma, sampling,
                                             ctx.n_parties) if ctx.pid == 0 else None,
                         "s_epoch": sum(h["seconds"] for h in history) / epochs,
                         "MB_epoch": sum(h["bytes_sent"] for h in history) / epochs / 1e6})
    if ctx.pid == 0:
        print(f"{ctx.n_parties} parties, digits {n} rows, MLP 64-{HIDDEN}-10, {epochs} epochs, "
              f"batch {BATCH}, clip {CLIP}, lr {LR}, momentum {MOMENTUM}, delta {DELTA:g}")
        print(f"{'sampling':<15} {'target':>6} {'noise':>6} {'acc':>6} {'float64':>8} "
              f"{'epsilon':>8} {'TF Privacy (Poisson)':>21} {'s/epoch':>8} {'MB/epoch':>9}")
        for r in rows:
            print(f"{r['sampling']:<15} {r['target']:>6g} {r['sigma']:>6.2f} "
                  f"{r['accuracy']:>6.3f} {r['float64']:>8.3f} {r['epsilon']:>8.3f} "
                  f"{r['tf_privacy']:>21.3f} {r['s_epoch']:>8.1f} {r['MB_epoch']:>9.1f}")
        if "--plot" in sys.argv:
            plot(sys.argv[sys.argv.index("--plot") + 1], rows)
    return rows


def plot(path: str, rows) -> None:
    """Test accuracy against epsilon for both modes (and their float64 twins)."""
    try:
        import matplotlib
    except ImportError:
        print("--plot needs matplotlib: pip install '.[plot]'", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for sampling, colour in (("poisson", "C0"), ("public-shuffle", "C1")):
        mine = [r for r in rows if r["sampling"] == sampling]
        eps = [r["epsilon"] for r in mine]
        ax.plot(eps, [r["accuracy"] for r in mine], "o-", color=colour,
                label=f"{sampling}, on shares")
        ax.plot(eps, [r["float64"] for r in mine], "x--", color=colour,
                label=f"{sampling}, float64")
    ax.set_xscale("log")
    ax.set_xticks(TARGETS, [f"{t:g}" for t in TARGETS])
    ax.minorticks_off()
    ax.set_xlabel("epsilon (delta = 1e-5)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"accuracy against epsilon written to {path}")
