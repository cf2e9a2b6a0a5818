"""Every arithmetic op on shares against numpy, for 2 and 3 parties and both providers.

Error bounds (units of 2^-16): encoding rounds each input by <= 1/2 ulp; the exact
truncation adds < 1 ulp per product. A product x*y therefore errs by at most
(|x| + |y|) / 2 + 1 ulps (plus 1/4 ulp^2); a matmul over k terms by k * (|x| + |y|)/2 + 1.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mpc
from oracle import check_op

PARTIES = [2, 3]
PROVIDERS = ["dealer", "insecure-seeded"]


def reals(shape, bound=100.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(-bound, bound, width=32))


def shapes(min_dims=1, max_dims=3):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, max_side=5)


def product_bound(x, y):
    return (np.max(np.abs(x), initial=0) + np.max(np.abs(y), initial=0)) / 2 + 1.5


@pytest.mark.parametrize("n", PARTIES)
@pytest.mark.parametrize("provider", PROVIDERS)
@given(data=st.data())
def test_add_sub_neg_exact(n, provider, data):
    shape = data.draw(shapes())
    x, y = data.draw(reals(shape)), data.draw(reals(shape))
    c = data.draw(reals(shape))
    check_op([x, y], lambda a, b: a + b - c, lambda a, b: a + b - c + (-b) + b, 1.5, n, provider)
    check_op([x, y], lambda a, b: c - a + c, lambda a, b: c - a + c, 1.5, n, provider)


@pytest.mark.parametrize("n", PARTIES)
@given(data=st.data())
def test_mul_broadcasting(n, data):
    sx, sy = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_side=4)).input_shapes
    x, y = data.draw(reals(sx)), data.draw(reals(sy))
    check_op([x, y], np.multiply, lambda a, b: a * b, product_bound(x, y), n)


@pytest.mark.parametrize("n", PARTIES)
@given(data=st.data())
def test_mul_public(n, data):
    shape = data.draw(shapes())
    x, p = data.draw(reals(shape)), data.draw(reals(shape, 50))
    k = data.draw(st.integers(-1000, 1000))
    check_op([x], lambda a: a * p, lambda a: a * p, product_bound(x, p), n)
    check_op([x], lambda a: a * k, lambda a: a * k, abs(k) / 2 + 0.01, n)  # no truncation


@pytest.mark.parametrize("n", PARTIES)
@pytest.mark.parametrize("provider", PROVIDERS)
@given(data=st.data())
def test_matmul(n, provider, data):
    m, k, p = data.draw(st.tuples(*[st.integers(1, 6)] * 3))
    x, y = data.draw(reals((m, k), 10)), data.draw(reals((k, p), 10))
    check_op([x, y], np.matmul, lambda a, b: a @ b, k * product_bound(x, y), n, provider)


@pytest.mark.parametrize("n", PARTIES)
@given(data=st.data())
def test_matmul_vectors_batches_and_public(n, data):
    k = data.draw(st.integers(1, 5))
    v, w = data.draw(reals((k,), 10)), data.draw(reals((k,), 10))
    batch, mat = data.draw(reals((2, 3, k), 10)), data.draw(reals((k, 4), 10))
    check_op([v, w], np.matmul, lambda a, b: a @ b, k * product_bound(v, w), n)
    check_op([batch, mat], np.matmul, lambda a, b: a @ b, k * product_bound(batch, mat), n)
    check_op([batch], lambda a: a @ mat, lambda a: a @ mat, k * product_bound(batch, mat), n)
    check_op([mat], lambda a: v @ a, lambda a: v @ a, k * product_bound(v, mat), n)


@pytest.mark.parametrize("n", PARTIES)
@given(data=st.data())
def test_square(n, data):
    x = data.draw(reals(data.draw(shapes())))
    check_op([x], np.square, lambda a: a.square(), product_bound(x, x), n)


@pytest.mark.parametrize("n", PARTIES)
@given(data=st.data())
def test_conv2d(n, data):
    batch, chans, outs = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2),
                                             st.integers(1, 3)))
    kh, kw = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    stride, padding = data.draw(st.integers(1, 2)), data.draw(st.integers(0, 2))
    h, w = data.draw(st.tuples(st.integers(kh, 6), st.integers(kw, 6)))
    x, wt = data.draw(reals((batch, chans, h, w), 5)), data.draw(reals((outs, chans, kh, kw), 5))
    want = lambda a, b: conv_reference(a, b, stride, padding)  # noqa: E731
    bound = chans * kh * kw * product_bound(x, wt)
    check_op([x, wt], want, lambda a, b: mpc.conv2d(a, b, stride, padding), bound, n)
    check_op([x], lambda a: want(a, wt), lambda a: a.conv2d(wt, stride, padding), bound, n)


def conv_reference(x, w, stride, padding):
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out


@pytest.mark.parametrize("n", PARTIES)
@given(data=st.data())
def test_reductions_and_shape_ops(n, data):
    x = data.draw(reals((3, 4)))
    y = data.draw(reals((3, 4)))
    check_op([x], lambda a: a.sum(axis=0), lambda a: a.sum(axis=0), 3 * 0.5, n)
    mean_bound = 1.5 + 12 * np.max(np.abs(x), initial=0) / 512  # SecretTensor.mean's bound
    check_op([x], lambda a: a.mean(), lambda a: a.mean(), mean_bound, n)
    check_op([x], lambda a: a.mean(axis=1, keepdims=True),
             lambda a: a.mean(axis=1, keepdims=True), mean_bound, n)
    check_op([x], lambda a: a.T[1:, ::2].reshape(-1), lambda a: a.T[1:, ::2].reshape(-1), 0.5, n)
    check_op([x, y], lambda a, b: np.concatenate([a, b], axis=1),
             lambda a, b: mpc.concatenate([a, b], axis=1), 0.5, n)
    check_op([x, y], lambda a, b: np.stack([a, b]), lambda a, b: mpc.stack([a, b]), 0.5, n)
    check_op([x], lambda a: a / 4.0, lambda a: a / 4.0, 1.5, n)
    check_op([x], lambda a: a / 7, lambda a: a / 7, 1.5, n)  # integer: 8 extra bits in 1/7


def test_five_parties():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(20,)), rng.normal(size=(20,))
    check_op([x, y], lambda a, b: a * b + a, lambda a, b: a * b + a, 2.0, 5)
    m, k = rng.normal(size=(4, 6)), rng.normal(size=(6, 3))
    check_op([m, k], np.matmul, lambda a, b: a @ b, 12.0, 5)


def test_shape_errors_are_clear():
    def bad(ctx):
        a = mpc.share(ctx, np.ones((2, 3)) if ctx.pid == 0 else None, 0, shape=(2, 3))
        with pytest.raises(mpc.ShapeError, match=r"\(2, 3\) @ \(2, 3\): inner dimensions differ"):
            a @ a
        with pytest.raises(mpc.ShapeError):
            a @ np.ones((4, 4))
        return True
    assert mpc.run_local(bad, 2) == [True, True]


def _many(ctx, a, b, c, d):
    share = [mpc.share(ctx, v if ctx.pid == 0 else None, 0, shape=v.shape) for v in (a, b, c, d)]
    before = ctx.stats.snapshot(without=("dealer",))
    ab, cd = mpc.matmul_many([(share[0], share[1]), (share[2], share[3])])
    used = ctx.stats.snapshot(without=("dealer",))
    return ab.reveal(), cd.reveal(), used.rounds - before.rounds


@pytest.mark.parametrize("n", [2, 3])
def test_matmul_many_is_each_product_in_the_rounds_of_one(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(4, 3))
    c, d = rng.normal(size=(2, 5, 4)), rng.normal(size=(4, 7))  # batched, broadcast
    ab, cd, rounds = mpc.run_local(_many, n, args=(a, b, c, d))[0]
    np.testing.assert_allclose(ab, a @ b, atol=4 * 4 * 2**-16)
    np.testing.assert_allclose(cd, c @ d, atol=4 * 4 * 2**-16)
    assert rounds == 2
