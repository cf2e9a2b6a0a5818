"""nn layers' forward and backward against numpy float64 under every protocol
(oracle.SETTINGS), the optimiser, and training (logistic regression on breast cancer, an MLP
on digits, checkpoints and resume) against the same training in float64, under both."""

import numpy as np
import pytest

import mpc
import nn
from nn.plain import breast_cancer, logistic_regression_accuracy
from oracle import SETTINGS, ULP

TRAINING = [pytest.param("dealer", id="dealer"), pytest.param("replicated", id="replicated")]


def run(fn, n, protocol, args):
    return mpc.run_local(fn, n, args=args, protocol=protocol)


def share_from_0(ctx, value):
    return mpc.share(ctx, value if ctx.pid == 0 else None, 0, shape=value.shape)


def _linear_round_trip(ctx, x, g, w, b):
    layer = nn.Linear(ctx, w.shape[0], w.shape[1], weight=w, bias=b)
    out = layer(share_from_0(ctx, x))
    grad_in = layer.backward(share_from_0(ctx, g))
    return (out.reveal(), grad_in.reveal(), layer.weight.grad.reveal(), layer.bias.grad.reveal())


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_linear_forward_backward(n, protocol):
    rng = np.random.default_rng(n)
    x, g = rng.normal(size=(8, 5)), rng.normal(size=(8, 3))
    w, b = rng.normal(size=(5, 3)), rng.normal(size=(3,))
    out, grad_in, grad_w, grad_b = run(_linear_round_trip, n, protocol, args=(x, g, w, b))[0]
    tol = 64 * ULP  # sums of up to 8 products of numbers of size ~3
    np.testing.assert_allclose(out, x @ w + b, atol=tol)
    np.testing.assert_allclose(grad_in, g @ w.T, atol=tol)
    np.testing.assert_allclose(grad_w, x.T @ g, atol=tol)
    np.testing.assert_allclose(grad_b, g.sum(axis=0), atol=tol)


def _activation_round_trip(ctx, layer_name, x, g):
    layer = getattr(nn, layer_name)()
    out = layer(share_from_0(ctx, x))
    return out.reveal(), layer.backward(share_from_0(ctx, g)).reveal()


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_relu_sigmoid_flatten(n, protocol):
    rng = np.random.default_rng(7)
    x, g = rng.normal(0, 4, size=(6, 4)), rng.normal(size=(6, 4))
    out, grad = run(_activation_round_trip, n, protocol, args=("ReLU", x, g))[0]
    np.testing.assert_allclose(out, np.maximum(x, 0), atol=ULP)
    np.testing.assert_allclose(grad, g * (x >= 0), atol=ULP)
    out, grad = run(_activation_round_trip, n, protocol, args=("Sigmoid", x, g))[0]
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(out, s, atol=5 * ULP)
    np.testing.assert_allclose(grad, g * s * (1 - s), atol=20 * ULP)
    x4 = rng.normal(size=(2, 3, 2, 2))
    out, grad = run(_activation_round_trip, n, protocol, args=("Flatten", x4, x4.reshape(2, -1)))[0]
    np.testing.assert_allclose(out, x4.reshape(2, -1), atol=ULP)
    np.testing.assert_allclose(grad, x4, atol=ULP)


def _sgd_steps(ctx, w0, grads, momentum, decay):
    p = nn.Parameter(share_from_0(ctx, w0))
    opt = nn.SGD([p], lr=0.1, momentum=momentum, weight_decay=decay)
    for g in grads:
        p.grad = share_from_0(ctx, g)
        opt.step()
    return p.value.reveal()


def test_sgd_momentum_weight_decay_match_numpy():
    rng = np.random.default_rng(1)
    w0, grads = rng.normal(size=(4,)), rng.normal(size=(5, 4))
    got = mpc.run_local(_sgd_steps, 2, args=(w0, grads, 0.9, 0.01))[0]
    w, v = w0.copy(), None
    for g in grads:
        g = g + 0.01 * w
        v = g if v is None else 0.9 * v + g
        w = w - 0.1 * v
    np.testing.assert_allclose(got, w, atol=20 * ULP)


def _train_logistic(ctx, data, epochs):
    xtr, xte, ytr, yte = data
    third = np.array_split(np.arange(len(xtr)), ctx.n_parties)
    x = mpc.concatenate([mpc.share(ctx, xtr[rows] if ctx.pid == p else None, p,
                                   shape=(len(rows), xtr.shape[1]))
                         for p, rows in enumerate(third)])
    y = mpc.concatenate([mpc.share(ctx, ytr[rows] if ctx.pid == p else None, p,
                                   shape=(len(rows), 1)) for p, rows in enumerate(third)])
    model = nn.Linear(ctx, xtr.shape[1], 1, seed=0)
    nn.fit(model, nn.BCEWithLogitsLoss(), nn.SGD(model.parameters(), lr=0.1), x, y,
           epochs=epochs, batch_size=32, progress=False)
    return nn.accuracy(model, share_from_0(ctx, xte), share_from_0(ctx, yte))


@pytest.mark.parametrize("protocol", TRAINING)
def test_logistic_regression_matches_float64_accuracy(protocol):
    data = breast_cancer()
    xtr, xte, ytr, yte = data
    want = logistic_regression_accuracy(xtr, ytr, xte, yte, epochs=3, batch_size=32, lr=0.1)
    got = mpc.run_local(_train_logistic, 3, args=(data, 3), protocol=protocol)[0]
    assert abs(got - want) <= 0.01, (got, want)


def conv_reference(x, w, stride, padding):
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", win, w)


def numeric_grads(fn, x, g):
    """Backward of a linear-in-x float64 function by its adjoint, via d<fn(x), g>/dx."""
    eps, grad = 1e-6, np.zeros_like(x)
    base = np.sum(fn(x) * g)
    for i in np.ndindex(x.shape):
        xp = x.copy()
        xp[i] += eps
        grad[i] = (np.sum(fn(xp) * g) - base) / eps
    return grad


def _layer_round_trip(ctx, make, x, g):
    layer = make(ctx)
    out = layer(share_from_0(ctx, x))
    grad_in = layer.backward(share_from_0(ctx, g))
    grads = [p.grad.reveal() for p in layer.parameters()]
    return out.reveal(), grad_in.reveal(), grads


def make_conv(ctx):
    w = np.random.default_rng(11).normal(size=(3, 2, 3, 2))
    return nn.Conv2d(ctx, 2, 3, (3, 2), stride=2, padding=1, weight=w, bias=np.array([0.5, -1, 0]))


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_conv2d_forward_backward(n, protocol):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(2, 2, 5, 4))
    w, b = np.random.default_rng(11).normal(size=(3, 2, 3, 2)), np.array([0.5, -1, 0])
    want = conv_reference(x, w, 2, 1) + b.reshape(1, -1, 1, 1)
    g = rng.normal(size=want.shape)
    out, grad_in, (grad_w, grad_b) = run(_layer_round_trip, n, protocol, args=(make_conv, x, g))[0]
    tol = 200 * ULP
    np.testing.assert_allclose(out, want, atol=tol)
    np.testing.assert_allclose(grad_in, numeric_grads(lambda v: conv_reference(v, w, 2, 1), x, g),
                               atol=tol + 1e-4)
    np.testing.assert_allclose(grad_w, numeric_grads(lambda v: conv_reference(x, v, 2, 1), w, g),
                               atol=tol + 1e-4)
    np.testing.assert_allclose(grad_b, g.sum(axis=(0, 2, 3)), atol=tol)


@pytest.mark.parametrize("n, protocol", SETTINGS)
@pytest.mark.parametrize("pool", ["AvgPool2d", "MaxPool2d"])
def test_pooling_forward_backward(n, protocol, pool):
    rng = np.random.default_rng(5)
    x = np.round(rng.normal(size=(2, 2, 4, 6)), 3)  # distinct values: no ties in a window
    g = rng.normal(size=(2, 2, 2, 3))
    win = x.reshape(2, 2, 2, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 2, 2, 3, 4)
    if pool == "AvgPool2d":
        want = win.mean(axis=-1)
        want_grad = np.repeat(np.repeat(g / 4, 2, axis=2), 2, axis=3)
    else:
        want = win.max(axis=-1)
        hit = x == np.repeat(np.repeat(want, 2, axis=2), 2, axis=3)
        want_grad = hit * np.repeat(np.repeat(g, 2, axis=2), 2, axis=3)
    out, grad_in, _ = run(_layer_round_trip, n, protocol,
                          args=(lambda ctx: getattr(nn, pool)(2), x, g))[0]
    np.testing.assert_allclose(out, want, atol=2 * ULP)
    np.testing.assert_allclose(grad_in, want_grad, atol=4 * ULP)


def _train_mlp(ctx, data, epochs):
    xtr, xte, ytr, yte = data
    x, y = share_from_0(ctx, xtr), share_from_0(ctx, ytr)
    model = nn.Sequential(nn.Linear(ctx, 64, 32, seed=0), nn.ReLU(), nn.Linear(ctx, 32, 10, seed=1))
    nn.fit(model, nn.SoftmaxCrossEntropyLoss(), nn.SGD(model.parameters(), lr=0.5), x, y,
           epochs=epochs, batch_size=32, progress=False)
    return nn.accuracy(model, share_from_0(ctx, xte), share_from_0(ctx, yte))


@pytest.mark.parametrize("n, protocol", [(2, "dealer"), (3, "replicated")])
def test_mlp_on_digits_matches_float64_accuracy(n, protocol):
    from nn.plain import digits, mlp_accuracy
    data = xtr, xte, ytr, yte = digits()
    want = mlp_accuracy(xtr, ytr, xte, yte, hidden=32, epochs=1, batch_size=32, lr=0.5)
    got = mpc.run_local(_train_mlp, n, args=(data, 1), protocol=protocol)[0]
    assert abs(got - want) <= 0.02, (got, want)


def _train_with_checkpoints(ctx, data, directory, plan):
    """Run fit once per entry of `plan` (epochs to reach), optionally losing one party's
    newest checkpoint in between (a crash between two parties' writes)."""
    import os
    xtr, xte, ytr, yte = data
    x, y = share_from_0(ctx, xtr[:96]), share_from_0(ctx, ytr[:96])
    for epochs, lose in plan:
        model = nn.Linear(ctx, xtr.shape[1], 1, seed=0)
        optimizer = nn.SGD(model.parameters(), lr=0.1, momentum=0.5)
        nn.fit(model, nn.BCEWithLogitsLoss(), optimizer, x, y, epochs=epochs, batch_size=32,
               progress=False, checkpoint_dir=directory)
        if lose is not None and ctx.pid == 1:
            os.remove(os.path.join(directory, f"party1-epoch{lose}.npz"))
    return model.weight.value.reveal()


@pytest.mark.parametrize("n, protocol", [(2, "dealer"), (3, "replicated")])
def test_training_resumes_from_the_newest_common_checkpoint(tmp_path, n, protocol):
    data = breast_cancer()
    straight = mpc.run_local(_train_with_checkpoints, n, protocol=protocol,
                             args=(data, str(tmp_path / "a"), [(3, None)]))[0]
    resumed = mpc.run_local(_train_with_checkpoints, n, protocol=protocol,
                            args=(data, str(tmp_path / "b"), [(2, 2), (3, None)]))[0]
    # party 1 lost epoch 2: both resume from epoch 1 and redo 2 and 3 with the same batches
    np.testing.assert_allclose(resumed, straight, atol=30 * ULP)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        f"party{pid}-epoch{e}.npz" for pid in range(n) for e in (2, 3)]
