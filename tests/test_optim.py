"""Optimisers: Adam on shares against float64 Adam (2 and 3 parties), its stated floor,
checkpoint round trips through the optimisers' state, and training with Adam."""

import numpy as np
import pytest

import mpc
import nn
from nn import plain
from oracle import ULP
from test_nn import share_from_0


def _adam_trajectory(ctx, w0, grads, options):
    params = [nn.Parameter(share_from_0(ctx, w)) for w in w0]
    opt = nn.Adam(params, **options)
    out = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = share_from_0(ctx, g)
        opt.step()
        out.append([p.value.reveal() for p in params])
    return out


def random_gradients(rng, shapes, steps):
    """Per element a scale log-uniform in [1e-3, 0.1], gradients normal at that scale,
    rounded to fixed point (the secure gradients are fixed point to begin with)."""
    scales = [np.exp(rng.uniform(np.log(1e-3), np.log(0.1), size=s)) for s in shapes]
    return [[np.round(s * rng.normal(size=s.shape) / ULP) * ULP for s in scales]
            for _ in range(steps)]


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("options", [{"lr": 0.01}, {"lr": 1.0},
                                     {"lr": 0.1, "betas": (0.8, 0.99), "weight_decay": 0.1}])
def test_adam_matches_float64_adam(n, options):
    rng = np.random.default_rng(n)
    shapes = [(6, 5), (5,)]
    w0 = [rng.normal(size=s) for s in shapes]
    grads = random_gradients(rng, shapes, 10)
    got = mpc.run_local(_adam_trajectory, n, args=(w0, grads, options))[0]
    # the reference clips sqrt(v_hat) below at nn.Adam's floor 2^-13: a few of these
    # gradients fall under it, where nn.Adam departs from Adam by design
    want, reference = [w.copy() for w in w0], plain.Adam(**options, floor=2.0 ** -13)
    for t, (step_grads, step_got) in enumerate(zip(grads, got), start=1):
        reference.step(want, step_grads)
        err = max(np.max(np.abs(a - b)) for a, b in zip(step_got, want))
        assert err <= t * (2e-3 * options["lr"] + 2 * ULP), (t, err)  # Adam's docstring


def test_adam_denominator_floor():
    """Below the floor 2^-13 (scale_bits 8) steps shrink in proportion to the gradient:
    a constant gradient of 2^-14 moves lr / 2 a step where float64 Adam moves lr."""
    grads = [[np.full(3, 2.0 ** -14)], [np.full(3, 2.0 ** -14)], [np.zeros(3)]]
    got = mpc.run_local(_adam_trajectory, 2, args=([np.zeros(3)], grads, {"lr": 0.1}))[0]
    np.testing.assert_allclose(got[0][0], -0.05, atol=4 * ULP)
    np.testing.assert_allclose(got[1][0], -0.1, atol=8 * ULP)
    # then a zero gradient: m_hat keeps 1 - c_3 of its size; v_hat stays below the floor
    np.testing.assert_allclose(got[2][0], -0.1 - 0.05 * (1 - 0.1 / (1 - 0.9 ** 3)), atol=12 * ULP)


def _rounds_per_step(ctx, weight_decay):
    params = [nn.Parameter(share_from_0(ctx, np.ones(s))) for s in [(3, 4), (4,), (2, 2)]]
    opt, rounds = nn.Adam(params, lr=0.1, weight_decay=weight_decay), []
    for _ in range(3):
        for p in params:
            p.grad = share_from_0(ctx, np.full(p.value.shape, 0.01))
        before = ctx.stats.snapshot().rounds
        opt.step()
        rounds.append(ctx.stats.snapshot().rounds - before)
    return rounds


def test_adam_rounds_per_step_as_documented():
    """One flat vector for all parameters: the count does not grow with their number."""
    assert mpc.run_local(_rounds_per_step, 2, args=(0.0,))[0] == [54, 55, 55]
    assert mpc.run_local(_rounds_per_step, 3, args=(0.1,))[0] == [55, 56, 56]


OPTIMIZERS = {"sgd": lambda ps: nn.SGD(ps, lr=0.1, momentum=0.5),
              "adam": lambda ps: nn.Adam(ps, lr=0.05, weight_decay=0.01)}


def _train_with_checkpoints(ctx, data, directory, plan, optimizer):
    """Run fit once per (epochs to reach, checkpoint of party 1 to delete afterwards)."""
    import os
    xtr, _, ytr, _ = data
    x, y = share_from_0(ctx, xtr[:96]), share_from_0(ctx, ytr[:96])
    for epochs, lose in plan:
        model = nn.Linear(ctx, xtr.shape[1], 1, seed=0)
        nn.fit(model, nn.BCEWithLogitsLoss(), OPTIMIZERS[optimizer](model.parameters()), x, y,
               epochs=epochs, batch_size=32, progress=False, checkpoint_dir=directory)
        if lose is not None and ctx.pid == 1:
            os.remove(os.path.join(directory, f"party1-epoch{lose}.npz"))
    return model.weight.value.reveal()


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_optimizer_state_survives_a_resume(tmp_path, optimizer):
    """The moments and Adam's step count come back from the checkpoint: a resumed run
    matches an uninterrupted one (Adam restarted at step 1 would not: c_1 = 1)."""
    data = plain.breast_cancer()
    straight = mpc.run_local(_train_with_checkpoints, 2,
                             args=(data, str(tmp_path / "a"), [(3, None)], optimizer))[0]
    resumed = mpc.run_local(_train_with_checkpoints, 2,
                            args=(data, str(tmp_path / "b"), [(2, 2), (3, None)], optimizer))[0]
    np.testing.assert_allclose(resumed, straight, atol=30 * ULP)


def test_state_names_every_buffer_and_loads_back():
    def run(ctx):
        p = nn.Parameter(share_from_0(ctx, np.ones(2)))
        adam = nn.Adam([p], lr=0.1)
        before = adam.state()
        p.grad = share_from_0(ctx, np.array([0.5, -0.25]))
        adam.step()
        fresh = nn.Adam([p], lr=0.1)
        fresh.load_state(adam.state())
        return before, {k: v if isinstance(v, int) else v.reveal()
                        for k, v in fresh.state().items()}
    before, after = mpc.run_local(run, 2)[0]
    assert before == {"step": 0, "m": None, "v": None}
    assert after["step"] == 1
    np.testing.assert_allclose(after["m"], [128, -64], atol=ULP)  # 2^8 g
    np.testing.assert_allclose(after["v"], [16384, 4096], atol=ULP)  # 4^8 g^2


def _train_mlp_adam(ctx, data, epochs, lr):
    xtr, xte, ytr, yte = data
    x, y = share_from_0(ctx, xtr), share_from_0(ctx, ytr)
    model = nn.Sequential(nn.Linear(ctx, 64, 32, seed=0), nn.ReLU(), nn.Linear(ctx, 32, 10, seed=1))
    nn.fit(model, nn.SoftmaxCrossEntropyLoss(), nn.Adam(model.parameters(), lr=lr), x, y,
           epochs=epochs, batch_size=32, progress=False)
    return nn.accuracy(model, share_from_0(ctx, xte), share_from_0(ctx, yte))


def test_mlp_with_adam_on_digits_matches_float64_adam():
    data = xtr, xte, ytr, yte = plain.digits()
    model = plain.Sequential(plain.Linear(64, 32, 0), plain.ReLU(), plain.Linear(32, 10, 1))
    plain.train(model, plain.Adam(0.01), xtr, ytr, epochs=1, batch_size=32)
    want = plain.accuracy(model, xte, yte)
    got = mpc.run_local(_train_mlp_adam, 2, args=(data, 1, 0.01))[0]
    assert abs(got - want) <= 0.03, (got, want)
