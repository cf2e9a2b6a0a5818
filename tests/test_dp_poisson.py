"""DP-SGD with secret Poisson sampling and per-example clipping without forming the
gradients: the clipping bound on adversarial inputs, equality with SGD where it must hold,
the secret mask recovered from one noiseless step, the epsilon fit reports against
dp_accounting computed here, Conv2d layers, bad settings, and real processes."""

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant

import mpc
import nn
from nn import plain
from mpc.launcher import run_processes
from nn.clip import clip_examples, ghost_plan
from nn.privacy import TF_PRIVACY_ORDERS

ULP = 2.0 ** -16


def _clip_each(ctx, xs, ds, clip, bound):
    """Each example's clipped gradient alone: the sum with a one-hot (public) mask."""
    sx = [mpc.share(ctx, x if ctx.pid == 0 else None, 0, shape=x.shape) for x in xs]
    sd = [mpc.share(ctx, d if ctx.pid == 0 else None, 0, shape=d.shape) for d in ds]
    out = []
    for i in range(xs[0].shape[0]):
        mask = mpc.share_public(ctx, np.eye(xs[0].shape[0])[i])
        got = clip_examples(list(zip(sx, sd)), clip, bound, mask)
        out.append([g.reveal() for g in got])
    return out


@pytest.mark.parametrize("clip", [0.5, 3.0])
def test_per_example_clipping_bound_holds_on_adversarial_inputs(clip):
    """Two Linear layers' per-example gradients, from tiny to huge (beyond the clamps):
    every clipped norm is <= clip; large ones land just below it; small ones unchanged."""
    rng = np.random.default_rng(3)
    scales = np.array([1e-3, 0.05, 0.3, 2.0, 40.0, 2.0 ** 12])
    x1 = rng.normal(size=(6, 5)) * scales[:, None]
    d1 = rng.normal(size=(6, 4)) * scales[:, None]
    x2 = np.abs(rng.normal(size=(6, 4)))
    d2 = rng.normal(size=(6, 2)) * scales[::-1, None]
    bound = 8.0
    got = mpc.run_local(_clip_each, 2, args=([x1, x2], [d1, d2], clip, bound))[0]
    plan = ghost_plan([(5, 4), (4, 2)], clip, bound)
    for i, (w1, b1, w2, b2) in enumerate(got):
        norm = math.sqrt(sum((t ** 2).sum() for t in (w1, b1, w2, b2)))
        assert norm <= clip, (i, norm)
        xc1, xc2 = np.clip(x1[i], -bound, bound), np.clip(x2[i], -bound, bound)
        dc1, dc2 = np.clip(d1[i], -clip, clip), np.clip(d2[i], -clip, clip)
        want = [np.outer(xc1, dc1), dc1, np.outer(xc2, dc2), dc2]
        true = math.sqrt(sum((t ** 2).sum() for t in want))
        if true > clip:
            assert norm >= plan["target"] * (1 - 1e-3)
            want = [t * norm / true for t in want]  # the same direction
        for g, w in zip((w1, b1, w2, b2), want):
            np.testing.assert_allclose(g, w, atol=16 * ULP + 2e-3 * np.abs(w).max())


def test_ghost_plan_refuses_what_fixed_point_cannot_hold():
    with pytest.raises(ValueError, match="too large"):
        ghost_plan([(784, 1000), (1000, 10)], 100.0, 64.0)
    plan = ghost_plan([(64, 32), (32, 10)], 1.0, 8.0)
    assert 0.98 < plan["target"] < 1.0  # a margin of about 1.5% at A = 8


X = np.random.default_rng(0).normal(size=(24, 5))
Y = (X @ np.array([1.0, -2.0, 0.5, 0.0, 1.0]) > 0).astype(float).reshape(-1, 1)


def _mlp(ctx, cls):
    return cls(nn.Linear(ctx, 5, 4, seed=0), nn.ReLU(), nn.Linear(ctx, 4, 1, seed=1))


def _dp_against_sgd(ctx, sampling, batch):
    x = mpc.share(ctx, X if ctx.pid == 0 else None, 0, shape=X.shape)
    y = mpc.share(ctx, Y if ctx.pid == 0 else None, 0, shape=Y.shape)
    dp = _mlp(ctx, nn.DPModel)
    dp.compile(optimizer=nn.DPSGD(l2_norm_clip=50.0, noise_multiplier=0.0, learning_rate=0.3,
                                  momentum=0.5, sampling=sampling),
               loss="binary_crossentropy")
    dp.fit(x, y, epochs=2, batch_size=batch, progress=False)
    plain = _mlp(ctx, nn.Sequential)
    nn.fit(plain, nn.BCEWithLogitsLoss(), nn.SGD(plain.parameters(), lr=0.3, momentum=0.5),
           x, y, epochs=2, batch_size=batch, progress=False)
    return [p.value.reveal() for p in dp.parameters()], [p.value.reveal()
                                                         for p in plain.parameters()]


@pytest.mark.parametrize("sampling,batch", [("public-shuffle", 8), ("poisson", 24)])
def test_per_example_dp_sgd_without_noise_is_sgd(sampling, batch):
    """One example per microbatch (clipping without forming the gradients) and a huge
    clip: DP-SGD is SGD; with Poisson sampling at q = 1 every row is in every batch."""
    dp, plain = mpc.run_local(_dp_against_sgd, 2, args=(sampling, batch))[0]
    for got, want in zip(dp, plain):
        np.testing.assert_allclose(got, want, atol=64 * ULP)


def _first_step(ctx):
    x = mpc.share(ctx, X[:6] if ctx.pid == 0 else None, 0, shape=(6, 5))
    y = mpc.share(ctx, Y[:6] if ctx.pid == 0 else None, 0, shape=(6, 1))
    model = nn.DPModel(nn.Linear(ctx, 5, 1, seed=0))
    opt = nn.DPSGD(l2_norm_clip=50.0, noise_multiplier=0.0, learning_rate=1.0,
                   sampling="poisson")
    model.compile(optimizer=opt, loss="mse")
    opt.track(6, 3)  # q = 1/2
    before = np.concatenate([p.value.reveal().reshape(-1) for p in model.parameters()])
    loss = nn.dp.RowLoss(model.loss)
    loss(model(x), y)
    model.backward(loss.backward(), input_grad=False)
    opt.step()
    after = np.concatenate([p.value.reveal().reshape(-1) for p in model.parameters()])
    return before, after


@pytest.mark.parametrize("n_parties,protocol", [(2, "dealer"), (3, "dealer"),
                                                (3, "replicated")])
def test_one_noiseless_poisson_step_is_a_masked_sum(n_parties, protocol):
    """One step without noise moves the weights by sum_i b_i g_i / batch: from the plain
    per-example gradients (G [6, 6], full rank) the b come back, each 0 or 1."""
    draws = [mpc.run_local(_first_step, n_parties, protocol=protocol)[0] for _ in range(4)]
    w0 = draws[0][0]
    xs, ys = X[:6], Y[:6]
    residual = xs @ w0[:5, None] + w0[5] - ys
    grads = np.concatenate([xs * 2 * residual, 2 * residual], axis=1)  # rows: examples
    assert np.linalg.matrix_rank(grads) == 6
    seen = []
    for before, after in draws:
        bits = np.linalg.solve(grads.T, (before - after) * 3)
        np.testing.assert_allclose(bits, np.round(bits), atol=2e-3)
        assert set(np.round(bits)) <= {0.0, 1.0}
        seen.append(np.round(bits))
    assert len({tuple(s) for s in seen}) > 1  # fresh bits each time


def _poisson_fit(ctx, n, batch, epochs, sigma):
    x = mpc.share(ctx, X[:n] if ctx.pid == 0 else None, 0, shape=(n, 5))
    y = mpc.share(ctx, Y[:n] if ctx.pid == 0 else None, 0, shape=(n, 1))
    model = nn.DPModel(nn.Linear(ctx, 5, 1, seed=0))
    model.compile(optimizer=nn.DPSGD(1.0, sigma, learning_rate=0.5, sampling="poisson",
                                     delta=1e-5), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model.fit(x, y, epochs=epochs, batch_size=batch, validation_data=(x, y),
                     progress=False)


def _dp_accounting_poisson(n, batch, sigma, steps, delta):
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(batch / n, dp_accounting.GaussianDpEvent(sigma)),
        steps)
    return rdp_privacy_accountant.RdpAccountant(TF_PRIVACY_ORDERS).compose(event) \
        .get_epsilon(delta)


def test_poisson_fit_reports_dp_accountings_epsilon():
    """After e epochs, ceil(e n / batch) steps (5 then 10 for 24 rows in 5s), as TF
    Privacy's compute_dp_sgd_privacy counts them: its epsilon is the one reported."""
    history = mpc.run_local(_poisson_fit, 2, args=(24, 5, 2, 1.2))[0]
    for h in history:
        want = _dp_accounting_poisson(24, 5, 1.2, math.ceil(h["epoch"] * 24 / 5), 1e-5)
        assert h["epsilon"] == pytest.approx(
            nn.dp_sgd_epsilon(24, 5, 1.2, h["epoch"], 1e-5, sampling="poisson"), rel=1e-12)
        assert h["epsilon"] == pytest.approx(want, rel=1e-12)
        assert 0 <= h["val_accuracy"] <= 1


def test_poisson_settings_refused_clearly():
    with pytest.raises(ValueError, match="num_microbatches must be None"):
        nn.DPSGD(1.0, 1.0, num_microbatches=4, sampling="poisson")
    with pytest.raises(ValueError, match="sampling must be one of"):
        nn.DPSGD(1.0, 1.0, sampling="shuffle")
    with pytest.raises(ValueError, match="activation_bound"):
        nn.DPSGD(1.0, 1.0, activation_bound=0)


IMAGES = np.random.default_rng(5).uniform(0, 1, size=(8, 1, 6, 6))
LABELS = np.eye(3)[np.arange(8) % 3]


def _cnn(ctx, cls):
    return cls(nn.Conv2d(ctx, 1, 2, 3, stride=1, padding=1, seed=0), nn.ReLU(),
               nn.MaxPool2d(2), nn.Flatten(), nn.Linear(ctx, 18, 3, seed=1))


def _cnn_both(ctx, microbatches):
    x = mpc.share(ctx, IMAGES if ctx.pid == 0 else None, 0, shape=IMAGES.shape)
    y = mpc.share(ctx, LABELS if ctx.pid == 0 else None, 0, shape=LABELS.shape)
    dp = _cnn(ctx, nn.DPModel)
    dp.compile(optimizer=nn.DPSGD(l2_norm_clip=50.0, noise_multiplier=0.0,
                                  num_microbatches=microbatches, learning_rate=0.2),
               loss="categorical_crossentropy")
    dp.fit(x, y, epochs=1, batch_size=4, progress=False)
    plain = _cnn(ctx, nn.Sequential)
    nn.fit(plain, nn.SoftmaxCrossEntropyLoss(), nn.SGD(plain.parameters(), lr=0.2), x, y,
           epochs=1, batch_size=4, progress=False)
    return [p.value.reveal() for p in dp.parameters()], [p.value.reveal()
                                                         for p in plain.parameters()]


@pytest.mark.parametrize("microbatches", [2, None])
def test_conv2d_per_microbatch_gradients_without_noise_are_sgd(microbatches):
    dp, plain = mpc.run_local(_cnn_both, 2, args=(microbatches,))[0]
    for got, want in zip(dp, plain):
        np.testing.assert_allclose(got, want, atol=64 * ULP)


@pytest.mark.parametrize("n_parties", [2, 3])
def test_poisson_dp_sgd_over_processes(n_parties):
    results = run_processes(_poisson_fit, n_parties, args=(24, 6, 1, 1.0), timeout=60)
    seen = [[(h["epsilon"], h["val_accuracy"]) for h in history] for history in results]
    assert all(s == seen[0] for s in seen)  # every party saw the same released values
    history = results[0]
    want = _dp_accounting_poisson(24, 6, 1.0, 4, 1e-5)
    assert history[-1]["epsilon"] == pytest.approx(want, rel=1e-12)


def _pool_on_shares(ctx, x, g):
    pool = nn.MaxPool2d(2, stride=1)
    out = pool(mpc.share_public(ctx, x))
    return out.reveal(), pool.backward(mpc.share_public(ctx, g)).reveal()


def test_float64_twins_of_the_demos():
    """nn.plain's strided max-pool matches nn.MaxPool2d forward and backward, and its
    DP-SGD without noise and with a huge clip is its SGD (the demos' references)."""
    rng = np.random.default_rng(2)
    x, g = rng.normal(size=(2, 3, 5, 5)), rng.normal(size=(2, 3, 4, 4))
    out, back = mpc.run_local(_pool_on_shares, 2, args=(x, g))[0]
    pool = plain.MaxPool2dStrided(2, 1)
    np.testing.assert_allclose(out, pool.forward(x), atol=2 * ULP)
    np.testing.assert_allclose(back, pool.backward(g), atol=4 * ULP)

    xs, ys = rng.uniform(0, 1, (40, 6)), np.eye(3)[rng.integers(0, 3, 40)]

    def mlp():
        return plain.Sequential(plain.Linear(6, 5, 0), plain.ReLU(),
                                   plain.Linear(5, 3, 1))
    dp, sgd = mlp(), mlp()
    plain.dp_sgd_train(dp, xs, ys, epochs=2, batch_size=8, lr=0.3, momentum=0.5,
                          l2_norm_clip=1e6, noise_std=0.0, sampling="public-shuffle")
    plain.train(sgd, plain.SGD(0.3, momentum=0.5), xs, ys, epochs=2, batch_size=8)
    for a, b in zip(dp.params, sgd.params):
        np.testing.assert_allclose(a, b, atol=1e-12)


def _refused_layer(ctx):
    model = nn.DPModel(nn.Linear(ctx, 4, 4), nn.LayerNorm(ctx, 4), nn.Linear(ctx, 4, 1))
    model.compile(optimizer=nn.DPSGD(1.0, 1.0), loss="mse")


def test_dp_model_refuses_layers_without_per_example_gradients_at_compile():
    with pytest.raises(mpc.PartyFailed, match="no per-microbatch gradient"):
        mpc.run_local(_refused_layer, 2, timeout=10)


def _clip_with_local_truncation(ctx):
    g = mpc.share_public(ctx, np.ones((3, 4)))
    clip_examples([(None, g)], 1.0)


def test_clipping_refuses_truncation_that_can_fail():
    with pytest.raises(mpc.PartyFailed, match="needs exact truncation"):
        mpc.run_local(_clip_with_local_truncation, 2, truncation="local-probabilistic",
                      timeout=10)


def _step_view(ctx, pattern):
    """What party 1 receives from the other parties during one Poisson DP-SGD step whose
    secret mask is `pattern` (shared by party 0 in place of the drawn bits)."""
    x = mpc.share(ctx, X if ctx.pid == 0 else None, 0, shape=X.shape)
    y = mpc.share(ctx, Y if ctx.pid == 0 else None, 0, shape=Y.shape)
    model = _mlp(ctx, nn.DPModel)
    opt = nn.DPSGD(1.0, 1.0, learning_rate=0.5, sampling="poisson")
    model.compile(optimizer=opt, loss="binary_crossentropy")
    opt.track(len(X), 6)
    opt._mask = lambda rows: mpc.share(ctx, pattern if ctx.pid == 0 else None, 0,
                                       shape=pattern.shape)
    loss = nn.dp.RowLoss(model.loss)
    loss(model(x), y)
    model.backward(loss.backward(), input_grad=False)
    seen = []
    original = ctx.transport._wait

    def recording(frm, seq):
        op, array = original(frm, seq)
        if frm < ctx.n_parties and array.dtype == np.uint64:
            seen.append(array.reshape(-1).copy())
        return op, array
    ctx.transport._wait = recording
    opt.step()
    ctx.transport._wait = original
    return np.concatenate(seen)


@pytest.mark.parametrize("n_parties", [2, 3])
def test_step_view_is_the_same_whatever_the_sample(n_parties):
    """Every ring element party 1 receives during the step (the clipping, the mask's
    product, the update) has bit frequencies that do not depend on which rows the secret
    mask kept (all of them or none), each bit set half the time: over 8 steps each."""
    views = []
    for pattern in (np.ones(len(X)), np.zeros(len(X))):
        views.append(np.concatenate([mpc.run_local(_step_view, n_parties, args=(pattern,))[1]
                                     for _ in range(8)]))
    assert views[0].size == views[1].size > 0
    freq = [((v[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).mean(axis=0)
            for v in views]
    sigma = np.sqrt(0.25 / views[0].size)
    assert np.all(np.abs(freq[0] - 0.5) < 6 * sigma), "a received bit is biased"
    assert np.all(np.abs(freq[0] - freq[1]) < 6 * sigma * np.sqrt(2)), \
        "the view depends on the sample"


def _checked_dp_fit(ctx):
    x = mpc.share(ctx, X[:12] if ctx.pid == 0 else None, 0, shape=(12, 5))
    y = mpc.share(ctx, Y[:12] if ctx.pid == 0 else None, 0, shape=(12, 1))
    (x * 1.0).reveal()  # a checked product before training: the range check runs
    before = ctx.stats.by_op["range-check"].rounds
    model = nn.DPModel(nn.Linear(ctx, 5, 1, seed=0))
    model.compile(optimizer=nn.DPSGD(1.0, 1.0, learning_rate=0.5), loss="binary_crossentropy")
    model.fit(x, y, epochs=1, batch_size=4, progress=False)
    during = ctx.stats.by_op["range-check"].rounds - before
    (x * 1.0).reveal()  # checked mode is back on after fit
    return ctx.check, during, ctx.stats.by_op["range-check"].rounds - before


def test_checked_mode_opens_no_range_count_during_dp_training():
    """The range counts of a DP step's clipping and norms depend on the training data and
    would be opened without noise: nn.fit turns checked mode off while it trains."""
    for checked, during, after in mpc.run_local(_checked_dp_fit, 2):
        assert checked and during == 0 and after > 0
