"""Loss values against numpy, and the overflow guard: healthy training reports its loss,
an overflow stops training with the steps and the layer, and a one-off corruption is
rolled back to the last checkpoint and leaves no trace."""

import numpy as np
import pytest

import mpc
import nn
from nn.plain import breast_cancer


def share_from_0(ctx, value):
    return mpc.share(ctx, value if ctx.pid == 0 else None, 0, shape=value.shape)


def _loss_values(ctx, z, y):
    out = {}
    for name in ("MSELoss", "BCEWithLogitsLoss", "SoftmaxCrossEntropyLoss"):
        loss = getattr(nn, name)()
        target = y if name != "BCEWithLogitsLoss" else y[:, :1]
        logits = z if name != "BCEWithLogitsLoss" else z[:, :1]
        loss(share_from_0(ctx, logits), share_from_0(ctx, target))
        out[name] = float(loss.value().reveal())
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_values_match_numpy(seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (16, 4))
    y = np.eye(4)[rng.integers(0, 4, 16)]
    got = mpc.run_local(_loss_values, 2, args=(z, y))[0]
    p1 = 1 / (1 + np.exp(-z[:, :1]))
    bce = -np.mean(y[:, :1] * np.log(p1) + (1 - y[:, :1]) * np.log(1 - p1))
    soft = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    want = {"MSELoss": ((z - y) ** 2).sum() / 16, "BCEWithLogitsLoss": bce,
            "SoftmaxCrossEntropyLoss": -np.mean((y * np.log(soft)).sum(axis=1))}
    # BCE uses the piecewise sigmoid (0.0016); log has 6 units; MSE is exact to rounding
    assert got["MSELoss"] == pytest.approx(want["MSELoss"], abs=1e-3)
    assert got["BCEWithLogitsLoss"] == pytest.approx(want["BCEWithLogitsLoss"], abs=0.01)
    assert got["SoftmaxCrossEntropyLoss"] == pytest.approx(want["SoftmaxCrossEntropyLoss"],
                                                           abs=2e-3)


def _train(ctx, lr, guard_every, directory=None, corrupt_at=None, report_loss=False):
    xtr, _, ytr, _ = breast_cancer()
    x, y = share_from_0(ctx, xtr[:128]), share_from_0(ctx, ytr[:128])
    model = nn.Sequential(nn.Linear(ctx, xtr.shape[1], 1, seed=0))
    if corrupt_at is not None:
        model.layers.append(_CorruptOnce(corrupt_at))
    try:
        history = nn.fit(model, nn.BCEWithLogitsLoss(), nn.SGD(model.parameters(), lr=lr),
                         x, y, epochs=3, batch_size=32, progress=False,
                         guard_every=guard_every, checkpoint_dir=directory,
                         report_loss=report_loss)
    except nn.FixedPointOverflow as e:
        return {"error": str(e), "steps": e.steps, "where": e.where}
    return {"history": history, "weight": model.layers[0].weight.value.reveal()}


class _CorruptOnce(nn.Module):
    """Adds a huge value to the gradient on one backward call (as a failed truncation
    would), and passes everything else through."""

    def __init__(self, at_call: int):
        self.at_call, self.calls = at_call, 0

    def forward(self, x):
        return x

    def backward(self, grad, input_grad=True):
        self.calls += 1
        return grad + 2.0 ** 29 if self.calls == self.at_call else grad


@pytest.mark.parametrize("n, protocol", [(2, "dealer"), (3, "replicated")])
def test_healthy_training_reports_a_falling_loss_only_when_asked(n, protocol):
    out = mpc.run_local(_train, n, args=(0.1, None, None, None, True), protocol=protocol)[0]
    losses = [r["loss"] for r in out["history"]]
    assert all(0 < v < 1 for v in losses) and losses[-1] < losses[0], losses
    quiet = mpc.run_local(_train, 2, args=(0.1, None))[0]
    assert all("loss" not in r for r in quiet["history"])


def _regression(ctx):
    """MSE on targets of about 150 (as in scikit-learn's diabetes data): large losses are
    legitimate and must not be taken for overflow."""
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, 4))
    ys = xs @ np.array([[30.0], [-20.0], [10.0], [5.0]]) + 150.0
    x, y = share_from_0(ctx, xs), share_from_0(ctx, ys)
    model = nn.Linear(ctx, 4, 1, seed=0)
    return nn.fit(model, nn.MSELoss(), nn.SGD(model.parameters(), lr=0.001), x, y, epochs=1,
                  batch_size=32, progress=False, report_loss=True)


def test_a_large_legitimate_loss_is_not_an_overflow():
    history = mpc.run_local(_regression, 2)[0]
    assert history[0]["loss"] > 1e4  # far above any cross-entropy, and fine


@pytest.mark.parametrize("n, protocol", [(2, "dealer"), (3, "replicated")])
def test_overflow_is_reported_with_its_step_and_layer(n, protocol):
    # lr 1e5: weights leave 2^15 at once
    out = mpc.run_local(_train, n, args=(1e5, 1), protocol=protocol)[0]
    assert out["steps"] == (1, 1), out
    assert "parameter 0" in out["where"] and "step 1" in out["error"], out


def test_per_epoch_guard_names_the_span_of_steps():
    out = mpc.run_local(_train, 2, args=(1e5, None))[0]
    assert out["steps"] == (1, 4), out  # 128 rows, batch 32: epoch 1 is steps 1..4


def test_a_one_off_corruption_is_rolled_back(tmp_path):
    """Step 5 (the first of epoch 2) gets a corrupted gradient: the guard sees it after
    epoch 2, both parties roll back to epoch 1's checkpoint and redo epoch 2 cleanly,
    ending where an uncorrupted run ends."""
    clean = mpc.run_local(_train, 2, args=(0.1, None, str(tmp_path / "a")))[0]
    # check=False: the engine's checked mode would refuse the corruption at once, and the
    # guard's own recovery is what is tested here
    rolled = mpc.run_local(_train, 2, args=(0.1, None, str(tmp_path / "b"), 5), check=False)[0]
    assert "error" not in rolled, rolled
    assert [r["epoch"] for r in rolled["history"]] == [1, 2, 3]
    unguarded = mpc.run_local(_train, 2, args=(0.1, None, None, 5), check=False)[0]
    assert unguarded["steps"] == (5, 8), unguarded  # without checkpoints: stop and say so
    np.testing.assert_allclose(rolled["weight"], clean["weight"], atol=1e-3)


def test_a_repeated_overflow_is_not_retried_forever(tmp_path):
    out = mpc.run_local(_train, 2, args=(1e5, None, str(tmp_path)))[0]
    assert out["steps"] == (1, 4), out


def _dp_with_loss(ctx):
    x = share_from_0(ctx, np.ones((8, 2)))
    model = nn.DPModel(nn.Linear(ctx, 2, 1))
    model.compile(optimizer=nn.DPSGD(1.0, 1.0, num_microbatches=2), loss="mse")
    return model.fit(x, x[:, :1], epochs=1, batch_size=4, progress=False, report_loss=True)


def test_no_noiseless_loss_with_differential_privacy():
    with pytest.raises(mpc.PartyFailed, match="report_loss reveals the training loss"):
        mpc.run_local(_dp_with_loss, 2)
