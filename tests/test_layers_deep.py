"""BatchNorm, LayerNorm, Tanh, GELU, Softmax, LogSoftmax, Dropout, Residual and global
average pooling: forward and backward on shares against float64 (2 and 3 parties), their
rounds, train()/eval(), and their refusals."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mpc
import nn
from oracle import SETTINGS, ULP

FEW = settings(max_examples=6)


def share_from_0(ctx, value):
    return mpc.share(ctx, value if ctx.pid == 0 else None, 0, shape=value.shape)


def numeric_vjp(fn, x, g, eps=1e-6):
    """d <fn(x), g> / dx by central differences, float64."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        grad[i] = (np.sum(fn(xp) * g) - np.sum(fn(xm) * g)) / (2 * eps)
    return grad


def _round_trip(ctx, make, x, g, mode):
    layer = make(ctx)
    if mode == "eval":
        layer.eval()
    xs, gs = share_from_0(ctx, x), share_from_0(ctx, g)
    start = ctx.stats.snapshot().rounds
    out = layer(xs)
    middle = ctx.stats.snapshot().rounds
    dx = layer.backward(gs)
    end = ctx.stats.snapshot().rounds
    grads = [p.grad.reveal() for p in layer.parameters()]
    buffers = [b.value.reveal() for b in layer.buffers()]
    return out.reveal(), dx.reveal(), grads, buffers, (middle - start, end - middle)


def run_layer(make, x, g, n, protocol, mode="train"):
    return mpc.run_local(_round_trip, n, args=(make, x, g, mode),
                         protocol=protocol)[0]


# ---------------------------------------------------------------- normalisation
def batchnorm_ref(x, gamma, beta, eps, axes):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    view = [1] * x.ndim
    view[1] = -1
    return (x - mean) / np.sqrt(var + eps) * gamma.reshape(view) + beta.reshape(view)


def _with_weights(layer, gamma, beta):
    layer.weight.value = mpc.share_public(layer.weight.value.ctx, gamma)
    layer.bias.value = mpc.share_public(layer.bias.value.ctx, beta)
    return layer


@pytest.mark.parametrize("n, protocol", SETTINGS)
@FEW
@given(seed=st.integers(0, 2 ** 32 - 1), spatial=st.booleans(), scale=st.floats(0.3, 5))
def test_batchnorm_training_forward_backward(n, protocol, seed, spatial, scale):
    rng = np.random.default_rng(seed)
    shape = (6, 3, 3, 2) if spatial else (7, 3)
    x = rng.normal(0.5, scale, size=shape)
    g = rng.normal(size=shape)
    gamma, beta = rng.uniform(0.5, 2, 3), rng.normal(size=3)
    axes = (0, 2, 3) if spatial else (0,)
    cls = nn.BatchNorm2d if spatial else nn.BatchNorm1d

    def make(ctx):
        return _with_weights(cls(ctx, 3, momentum=0.2), gamma, beta)
    out, dx, (dgamma, dbeta), (rmean, rvar), rounds = run_layer(make, x, g, n, protocol)

    def forward(v):
        return batchnorm_ref(v, gamma, beta, 1e-5, axes)
    xhat = batchnorm_ref(x, np.ones(3), np.zeros(3), 1e-5, axes)
    # xhat's relative error ~ 1e-4 (module docstring); outputs are O(gamma * 3)
    np.testing.assert_allclose(out, forward(x), atol=1e-3)
    np.testing.assert_allclose(dx, numeric_vjp(forward, x, g), atol=2e-3 / min(scale, 1))
    np.testing.assert_allclose(dgamma, (g * xhat).sum(axis=axes), atol=2e-3)
    np.testing.assert_allclose(dbeta, g.sum(axis=axes), atol=20 * ULP)
    count = x.size // 3
    np.testing.assert_allclose(rmean, 0.2 * x.mean(axis=axes), atol=10 * ULP)
    np.testing.assert_allclose(rvar, 0.8 + 0.2 * x.var(axis=axes) * count / (count - 1),
                               rtol=1e-4, atol=10 * ULP)
    assert protocol != "dealer" or rounds == (58, 9)  # the docstrings' (dealer) rounds


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_batchnorm_eval_uses_running_statistics(n, protocol):
    rng = np.random.default_rng(n)
    x, g = rng.normal(1, 2, size=(5, 4)), rng.normal(size=(5, 4))
    mean, var = rng.normal(size=4), rng.uniform(0.5, 3, 4)
    gamma, beta = rng.uniform(0.5, 2, 4), rng.normal(size=4)

    def make(ctx):
        layer = _with_weights(nn.BatchNorm1d(ctx, 4), gamma, beta)
        layer.running_mean.value = mpc.share_public(ctx, mean)
        layer.running_var.value = mpc.share_public(ctx, var)
        return layer
    out, dx, (dgamma, dbeta), (rmean, rvar), rounds = run_layer(make, x, g, n, protocol,
                                                                mode="eval")
    inv = 1 / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(out, (x - mean) * inv * gamma + beta, atol=2e-3)
    np.testing.assert_allclose(dx, g * gamma * inv, atol=1e-3)
    np.testing.assert_allclose(dgamma, (g * (x - mean) * inv).sum(axis=0), atol=2e-3)
    np.testing.assert_allclose(dbeta, g.sum(axis=0), atol=10 * ULP)
    np.testing.assert_allclose(rmean, mean, atol=ULP)  # untouched in eval mode
    np.testing.assert_allclose(rvar, var, atol=ULP)
    assert protocol != "dealer" or rounds == (53, 4)


def _eps_floor(ctx, x):
    layer = nn.BatchNorm1d(ctx, 1)
    return layer(share_from_0(ctx, x)).reveal()


def test_batchnorm_tiny_variance_hits_inv_sqrt_floor():
    """A variance below inv_sqrt's domain floor 4^-5 is normalised as if var + eps = 4^-5
    (the documented effective eps), not blown up by 1/sqrt(1e-5)."""
    x = np.array([[0.0], [0.01], [0.0], [0.01]])  # variance 2.5e-5
    got = mpc.run_local(_eps_floor, 2, args=(x,))[0]
    np.testing.assert_allclose(got, (x - 0.005) * 32, atol=2e-3)


def layernorm_ref(x, gamma, beta, k, eps=1e-5):
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


@pytest.mark.parametrize("n, protocol", SETTINGS)
@FEW
@given(seed=st.integers(0, 2 ** 32 - 1), two_dims=st.booleans())
def test_layernorm_forward_backward(n, protocol, seed, two_dims):
    rng = np.random.default_rng(seed)
    norm_shape = (3, 4) if two_dims else (5,)
    shape = (4,) + norm_shape
    x, g = rng.normal(0, 2, size=shape), rng.normal(size=shape)
    gamma, beta = rng.uniform(0.5, 2, norm_shape), rng.normal(size=norm_shape)

    def make(ctx):
        return _with_weights(nn.LayerNorm(ctx, norm_shape), gamma, beta)
    out, dx, (dgamma, dbeta), buffers, rounds = run_layer(make, x, g, n, protocol)
    k = len(norm_shape)

    def forward(v):
        return layernorm_ref(v, gamma, beta, k)
    xhat = layernorm_ref(x, 1.0, 0.0, k)
    np.testing.assert_allclose(out, forward(x), atol=2e-3)
    np.testing.assert_allclose(dx, numeric_vjp(forward, x, g), atol=5e-3)
    np.testing.assert_allclose(dgamma, (g * xhat).sum(axis=0), atol=2e-3)
    np.testing.assert_allclose(dbeta, g.sum(axis=0), atol=10 * ULP)
    assert buffers == [] and (protocol != "dealer" or rounds == (57, 9))


# ---------------------------------------------------------------- activations
def gelu_ref(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


ACTIVATIONS = {
    # name: (constructor, float64 forward, forward tol, backward tol, rounds)
    "Tanh": (lambda ctx: nn.Tanh(), np.tanh, 10 * ULP, 60 * ULP, (48, 4)),
    "GELU": (lambda ctx: nn.GELU(), gelu_ref, 0.0016, 0.0028 + 4 * ULP, (9, 2)),
    "Softmax": (lambda ctx: nn.Softmax(axis=-1), lambda v: softmax_ref(v, -1), 6 * ULP,
                60 * ULP, (8 * 3 + 67, 4)),
    "Softmax0": (lambda ctx: nn.Softmax(axis=0), lambda v: softmax_ref(v, 0), 6 * ULP,
                 60 * ULP, (8 * 3 + 67, 4)),
    "LogSoftmax": (lambda ctx: nn.LogSoftmax(), lambda v: np.log(softmax_ref(v, -1)),
                   10 * ULP, 60 * ULP, (8 * 3 + 55, 22)),
}


@pytest.mark.parametrize("n, protocol", SETTINGS)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@FEW
@given(seed=st.integers(0, 2 ** 32 - 1), scale=st.floats(0.1, 4))
def test_activation_forward_backward(n, protocol, name, seed, scale):
    make, ref, tol_out, tol_grad, want_rounds = ACTIVATIONS[name]
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, size=(5, 6)) if name != "Softmax0" else \
        rng.normal(0, scale, size=(6, 5))
    g = rng.uniform(-1, 1, size=x.shape)
    out, dx, grads, _, rounds = run_layer(make, x, g, n, protocol)
    np.testing.assert_allclose(out, ref(x), atol=tol_out)
    np.testing.assert_allclose(dx, numeric_vjp(ref, x, g), atol=tol_grad)
    assert grads == [] and (protocol != "dealer" or rounds == want_rounds)


# ---------------------------------------------------------------- blocks
def _dropout_run(ctx, x, p, mode):
    layer = nn.Dropout(ctx, p)
    if mode == "eval":
        layer.eval()
    xs = share_from_0(ctx, x)
    out = layer(xs)
    dx = layer.backward(share_from_0(ctx, np.ones_like(x)))
    return out.reveal(), dx.reveal()


@pytest.mark.parametrize("n, protocol", SETTINGS)
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_training_mask_and_scale(n, protocol, p):
    x = np.full((100, 50), 1.5)
    out, dx = mpc.run_local(_dropout_run, n, args=(x, p, "train"), protocol=protocol)[0]
    scale = 1 / (1 - p)
    kept = np.abs(out - 1.5 * scale) < 1e-3
    assert np.all(kept | (np.abs(out) < 1e-9))
    assert abs(1 - kept.mean() - p) < 5 * math.sqrt(p * (1 - p) / x.size)
    # backward uses the same mask: the gradient of ones is the mask itself
    np.testing.assert_allclose(dx, kept * scale, atol=1e-3)


def test_dropout_eval_is_identity_and_masks_differ_between_calls():
    x = np.arange(12.0).reshape(3, 4)
    out, dx = mpc.run_local(_dropout_run, 2, args=(x, 0.5, "eval"))[0]
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(dx, np.ones_like(x))
    a = mpc.run_local(_dropout_run, 2, args=(np.ones((40, 40)), 0.5, "train"))[0][0]
    b = mpc.run_local(_dropout_run, 2, args=(np.ones((40, 40)), 0.5, "train"))[0][0]
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_residual_block(n, protocol):
    rng = np.random.default_rng(n)
    x, g = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    w, b = rng.normal(size=(3, 3)), rng.normal(size=3)

    def make(ctx):
        return nn.Residual(nn.Sequential(nn.Linear(ctx, 3, 3, weight=w, bias=b), nn.Tanh()))
    out, dx, (dw, db), _, _ = run_layer(make, x, g, n, protocol)

    def forward(v):
        return v + np.tanh(v @ w + b)
    t = np.tanh(x @ w + b)
    np.testing.assert_allclose(out, forward(x), atol=30 * ULP)
    np.testing.assert_allclose(dx, numeric_vjp(forward, x, g), atol=200 * ULP)
    np.testing.assert_allclose(dw, x.T @ (g * (1 - t * t)), atol=200 * ULP)
    np.testing.assert_allclose(db, (g * (1 - t * t)).sum(axis=0), atol=100 * ULP)


@pytest.mark.parametrize("n, protocol", SETTINGS)
@pytest.mark.parametrize("keepdims", [True, False])
def test_global_avg_pool(n, protocol, keepdims):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(2, 3, 4, 5))
    g = rng.normal(size=(2, 3, 1, 1) if keepdims else (2, 3))

    def forward(v):
        return v.mean(axis=(2, 3), keepdims=keepdims)
    out, dx, _, _, rounds = run_layer(lambda ctx: nn.GlobalAvgPool2d(keepdims), x, g, n,
                                      protocol)
    np.testing.assert_allclose(out, forward(x), atol=2 * ULP)
    np.testing.assert_allclose(dx, numeric_vjp(forward, x, g), atol=2 * ULP)
    assert protocol != "dealer" or rounds == (1, 1)


# ---------------------------------------------------------------- modes and refusals
def _modes(ctx):
    model = nn.Sequential(nn.Linear(ctx, 4, 4), nn.BatchNorm1d(ctx, 4),
                          nn.Residual(nn.Sequential(nn.Dropout(ctx, 0.5), nn.GELU())))
    flags = [model.training, model.layers[2].module.layers[0].training]
    model.eval()
    flags += [model.training, model.layers[1].training, model.layers[2].module.layers[0].training]
    assert model.train() is model
    flags += [model.layers[2].module.layers[0].training]
    names = [name for name, _ in model.named_parameters()]
    buffers = [name for name, _ in model.named_buffers()]
    return flags, names, buffers


def test_train_eval_recursive_and_names():
    flags, names, buffers = mpc.run_local(_modes, 2)[0]
    assert flags == [True, True, False, False, False, True]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert buffers == ["1.running_mean", "1.running_var"]


def _refusal(ctx, make, shape):
    return make(ctx)(share_from_0(ctx, np.zeros(shape)))


@pytest.mark.parametrize("make, shape, message", [
    (lambda ctx: nn.BatchNorm1d(ctx, 3), (4, 5), "3 channels on axis 1"),
    (lambda ctx: nn.BatchNorm2d(ctx, 3), (4, 3), "expected 4-D"),
    (lambda ctx: nn.BatchNorm1d(ctx, 3), (1, 3), "more than one value per channel"),
    (lambda ctx: nn.LayerNorm(ctx, (4,)), (4, 5), "last dimensions must be"),
    (lambda ctx: nn.Softmax(axis=2), (4, 5), "no such axis"),
    (lambda ctx: nn.GlobalAvgPool2d(), (4, 5), "expected"),
    (lambda ctx: nn.Residual(nn.Linear(ctx, 5, 2)), (4, 5), "needs equal shapes"),
])
def test_wrong_inputs_are_refused_by_name(make, shape, message):
    with pytest.raises(mpc.PartyFailed, match=message):
        mpc.run_local(_refusal, 2, args=(make, shape))


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Dropout(None, 1.0), "p must be in"),
    (lambda: nn.Dropout(None, -0.1), "p must be in"),
    (lambda: nn.BatchNorm1d(None, 0), "num_features"),
    (lambda: nn.BatchNorm1d(None, 3, momentum=2), "momentum"),
    (lambda: nn.LayerNorm(None, (0,)), "normalized_shape"),
    (lambda: nn.Residual("relu"), "wraps a Module"),
])
def test_bad_constructor_arguments(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def _graph_modes(ctx):
    g = nn.Graph("x")
    g.add("bn", nn.BatchNorm1d(ctx, 3), "x")
    g.add("drop", nn.Dropout(ctx, 0.5), "bn")
    g.add("sum", nn.Add(), "drop", "x")
    g.eval()
    flags = [m.training for m in g.modules()]
    return flags, [name for name, _ in g.named_buffers()]


def test_eval_reaches_a_graphs_nodes():
    flags, buffers = mpc.run_local(_graph_modes, 2)[0]
    assert flags == [False] * 4
    assert buffers == ["bn.running_mean", "bn.running_var"]
