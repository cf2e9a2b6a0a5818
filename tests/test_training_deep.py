"""Negative log-likelihood and sparse cross-entropy against float64, learning-rate
schedules (values, and no cost on the wire), AdamW against float64 AdamW, and BatchNorm's
running statistics through a checkpoint."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mpc
import nn
from nn import plain
from oracle import SETTINGS, ULP
from test_nn import share_from_0
from test_optim import random_gradients



def _loss_run(ctx, loss_name, scores, labels, layer):
    s, y = share_from_0(ctx, scores), share_from_0(ctx, labels)
    if layer:
        s = nn.LogSoftmax()(s)
    loss = getattr(nn, loss_name)()
    loss(s, y)
    return loss.value().reveal(), loss.backward().reveal()


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("n, protocol", SETTINGS)
@settings(max_examples=5)
@given(seed=st.integers(0, 2 ** 32 - 1), column=st.booleans())
def test_nll_and_sparse_cross_entropy(n, protocol, seed, column):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=(6, 4))
    labels = rng.integers(0, 4, size=6).astype(float)
    y = labels.reshape(-1, 1) if column else labels
    onehot = np.eye(4)[labels.astype(int)]
    logp = log_softmax(logits)
    want = -np.mean(np.sum(onehot * logp, axis=1))
    value, grad = mpc.run_local(_loss_run, n, args=("NLLLoss", logp, y, False),
                                protocol=protocol)[0]
    assert abs(value - want) < 20 * ULP
    np.testing.assert_allclose(grad, -onehot / 6, atol=ULP)
    # NLL after LogSoftmax on logits = sparse cross-entropy on logits
    value, _ = mpc.run_local(_loss_run, n, args=("NLLLoss", logits, y, True),
                             protocol=protocol)[0]
    assert abs(value - want) < 1e-3
    value, grad = mpc.run_local(_loss_run, n, args=("SparseCrossEntropyLoss", logits, y,
                                                    False), protocol=protocol)[0]
    # the loss takes log of softmax's p (error 6 units, so 6 units / p after the log),
    # saturating at p = 2^-10
    p = np.exp(logp)
    p_label = np.maximum(np.sum(onehot * p, axis=1), 2.0 ** -10)
    assert abs(value + np.mean(np.log(p_label))) < np.mean(8 * ULP / p_label) + 20 * ULP
    np.testing.assert_allclose(grad, (p - onehot) / 6, atol=10 * ULP)


def _one_hot(ctx, labels, classes):
    return nn.one_hot(share_from_0(ctx, labels), classes).reveal()


def test_one_hot_tolerates_small_errors_and_zeroes_out_of_range():
    labels = np.array([0, 2, 1.0004, 1.9996, 5, -1])
    got = mpc.run_local(_one_hot, 2, args=(labels, 3))[0]
    np.testing.assert_array_equal(got, [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1],
                                        [0, 0, 0], [0, 0, 0]])


def _sparse_refusal(ctx, shape_scores, shape_labels):
    loss = nn.SparseCrossEntropyLoss()
    loss(share_from_0(ctx, np.zeros(shape_scores)), share_from_0(ctx, np.zeros(shape_labels)))


@pytest.mark.parametrize("scores, labels, message", [
    ((4, 3), (4, 3), "look one-hot"), ((4, 3), (5,), "4 rows of scores but 5 labels"),
    ((4, 3, 2), (4,), "must be \\[N, classes\\]"), ((4, 3), (4, 2), "shape \\[N\\] or")])
def test_sparse_loss_refuses_wrong_labels(scores, labels, message):
    with pytest.raises(mpc.PartyFailed, match=message):
        mpc.run_local(_sparse_refusal, 2, args=(scores, labels))


# ---------------------------------------------------------------- schedules
def test_schedule_values():
    step = nn.StepDecay(0.1, step_size=3, gamma=0.5)
    assert [step(t) for t in range(7)] == [0.1] * 3 + [0.05] * 3 + [0.025]
    exp = nn.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert exp(0) == 0.1 and math.isclose(exp(10), 0.05) and math.isclose(exp(5), 0.1 / 2 ** .5)
    stair = nn.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert stair(9) == 0.1 and math.isclose(stair(10), 0.05)
    cos = nn.CosineDecay(0.2, decay_steps=100, alpha=0.1)
    assert cos(0) == 0.2 and math.isclose(cos(50), 0.2 * (0.9 * 0.5 + 0.1))
    assert math.isclose(cos(100), 0.02) and math.isclose(cos(1000), 0.02)


@pytest.mark.parametrize("make, message", [
    (lambda: nn.StepDecay(0.1, step_size=0), "step_size must be a positive integer"),
    (lambda: nn.StepDecay(-1, step_size=2), "initial_learning_rate"),
    (lambda: nn.ExponentialDecay(0.1, decay_steps=2.5, decay_rate=0.9), "decay_steps"),
    (lambda: nn.CosineDecay(0.1, 10, alpha=2), "alpha"),
    (lambda: nn.SGD([], lr=0), "lr must be a positive number"),
    (lambda: nn.SGD([], lr="0.1"), "lr must be a positive number"),
    (lambda: nn.Adam([], betas=(0.9,)), "betas"),
    (lambda: nn.SGD([], lr=0.1, momentum=1.5), "momentum"),
    (lambda: nn.SGD(5, lr=0.1), "parameters must be a list"),
])
def test_bad_optimiser_and_schedule_arguments(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def _steps(ctx, name, lr, w0, grads, options):
    p = nn.Parameter(share_from_0(ctx, w0))
    opt = getattr(nn, name)([p], lr=lr, **options)
    costs = []
    for g in grads:
        p.grad = share_from_0(ctx, g)
        before = ctx.stats.snapshot()
        opt.step()
        after = ctx.stats.snapshot()
        costs.append((after.rounds - before.rounds, after.bytes_sent - before.bytes_sent))
    return p.value.reveal(), costs


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_a_changing_rate_costs_nothing_on_the_wire(name):
    rng = np.random.default_rng(0)
    w0, grads = rng.normal(size=(5,)), random_gradients(rng, [(5,)], 4)
    grads = [g[0] for g in grads]
    _, constant = mpc.run_local(_steps, 2, args=(name, 0.05, w0, grads, {}))[0]
    _, scheduled = mpc.run_local(_steps, 2, args=(
        name, nn.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.7), w0, grads, {}))[0]
    assert scheduled == constant


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_sgd_with_a_schedule_matches_numpy(n, protocol):
    rng = np.random.default_rng(n)
    w0, grads = rng.normal(size=(4,)), rng.normal(size=(6, 4))
    schedule = nn.StepDecay(0.2, step_size=2, gamma=0.5)
    got, _ = mpc.run_local(_steps, n, args=("SGD", schedule, w0, grads, {"momentum": 0.5}),
                           protocol=protocol)[0]
    w, v = w0.copy(), None
    for t, g in enumerate(grads):
        v = g if v is None else 0.5 * v + g
        w = w - schedule(t) * v
    np.testing.assert_allclose(got, w, atol=20 * ULP)


@pytest.mark.parametrize("n, protocol", SETTINGS)
@pytest.mark.parametrize("lr, decay", [(0.01, 0.01), (0.1, 0.3),
                                       (nn.CosineDecay(0.1, decay_steps=8), 0.1)])
def test_adamw_matches_float64_adamw(n, protocol, lr, decay):
    rng = np.random.default_rng(n)
    w0 = rng.normal(size=(7,))
    grads = [g[0] for g in random_gradients(rng, [(7,)], 8)]
    got, costs = mpc.run_local(_steps, n, args=("AdamW", lr, w0, grads,
                                                {"weight_decay": decay}), protocol=protocol)[0]
    reference, w = plain.Adam(lr=0.0, floor=2.0 ** -13), w0.copy()
    for t, g in enumerate(grads):
        rate = lr(t) if callable(lr) else lr
        reference.lr = rate
        w -= rate * decay * w  # decoupled: PyTorch's AdamW decays before the Adam step
        reference.step([w], [g])
    top = lr(0) if callable(lr) else lr
    assert np.max(np.abs(got - w)) <= len(grads) * (2e-3 * top + 3 * ULP)
    if protocol == "dealer":  # Adam's rounds (its docstring's): the decay is free
        assert [r for r, _ in costs] == [54] + [55] * 7


# ---------------------------------------------------------------- checkpoints
def _bn_fit(ctx, x, y, directory, epochs):
    model = nn.Sequential(nn.Linear(ctx, 4, 3, seed=1), nn.BatchNorm1d(ctx, 3))
    nn.fit(model, nn.MSELoss(), nn.SGD(model.parameters(), lr=0.05), share_from_0(ctx, x),
           share_from_0(ctx, y), epochs=epochs, batch_size=8, progress=False,
           checkpoint_dir=directory)
    return [b.value.reveal() for b in model.buffers()]


def test_batchnorm_running_statistics_survive_a_resume(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 3))
    straight = mpc.run_local(_bn_fit, 2, args=(x, y, tmp_path / "a", 2))[0]
    mpc.run_local(_bn_fit, 2, args=(x, y, tmp_path / "b", 1))
    resumed = mpc.run_local(_bn_fit, 2, args=(x, y, tmp_path / "b", 2))[0]
    for a, b in zip(straight, resumed):
        np.testing.assert_allclose(a, b, atol=4 * ULP)
    assert not np.allclose(straight[0], 0)  # the statistics did move
