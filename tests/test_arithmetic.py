"""Every arithmetic op on shares against numpy, under every protocol (oracle.SETTINGS):
the dealer protocol with 2 and 3 parties and both providers, the replicated one.

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
from oracle import PROVIDED_SETTINGS, SETTINGS, check_op, checker


def reals(shape, bound=100.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(-bound, bound, width=32))


def shapes(min_dims=1, max_dims=3):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, max_side=5)


def product_bound(x, y):
    return (np.max(np.abs(x), initial=0) + np.max(np.abs(y), initial=0)) / 2 + 1.5


@pytest.mark.parametrize("n, protocol, provider", PROVIDED_SETTINGS)
@given(data=st.data())
def test_add_sub_neg_exact(n, protocol, provider, data):
    check = checker(n, protocol, provider)
    shape = data.draw(shapes())
    x, y = data.draw(reals(shape)), data.draw(reals(shape))
    c = data.draw(reals(shape))
    check([x, y], lambda a, b: a + b - c, lambda a, b: a + b - c + (-b) + b, 1.5)
    check([x, y], lambda a, b: c - a + c, lambda a, b: c - a + c, 1.5)


@pytest.mark.parametrize("n, protocol", SETTINGS)
@given(data=st.data())
def test_mul_broadcasting(n, protocol, data):
    check = checker(n, protocol)
    sx, sy = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_side=4)).input_shapes
    x, y = data.draw(reals(sx)), data.draw(reals(sy))
    check([x, y], np.multiply, lambda a, b: a * b, product_bound(x, y))


@pytest.mark.parametrize("n, protocol", SETTINGS)
@given(data=st.data())
def test_mul_public(n, protocol, data):
    check = checker(n, protocol)
    shape = data.draw(shapes())
    x, p = data.draw(reals(shape)), data.draw(reals(shape, 50))
    k = data.draw(st.integers(-1000, 1000))
    check([x], lambda a: a * p, lambda a: a * p, product_bound(x, p))
    check([x], lambda a: a * k, lambda a: a * k, abs(k) / 2 + 0.01)  # no truncation


@pytest.mark.parametrize("n, protocol", SETTINGS)
@given(data=st.data())
def test_division_by_a_public_integer_of_either_sign(n, protocol, data):
    """x / -2 raised OverflowError (a negative factor cast to uint64)."""
    check = checker(n, protocol)
    x = data.draw(reals(data.draw(shapes())))
    k = data.draw(st.integers(1, 1000)) * data.draw(st.sampled_from([-1, 1]))
    check([x], lambda a: a / k, lambda a: a / k, 1.01 + np.max(np.abs(x), initial=0) / 2 ** 9)


@pytest.mark.parametrize("n, protocol, provider", PROVIDED_SETTINGS)
@given(data=st.data())
def test_matmul(n, protocol, provider, data):
    check = checker(n, protocol, provider)
    m, k, p = data.draw(st.tuples(*[st.integers(1, 6)] * 3))
    x, y = data.draw(reals((m, k), 10)), data.draw(reals((k, p), 10))
    check([x, y], np.matmul, lambda a, b: a @ b, k * product_bound(x, y))


@pytest.mark.parametrize("n, protocol", SETTINGS)
@given(data=st.data())
def test_matmul_vectors_batches_and_public(n, protocol, data):
    check = checker(n, protocol)
    k = data.draw(st.integers(1, 5))
    v, w = data.draw(reals((k,), 10)), data.draw(reals((k,), 10))
    batch, mat = data.draw(reals((2, 3, k), 10)), data.draw(reals((k, 4), 10))
    check([v, w], np.matmul, lambda a, b: a @ b, k * product_bound(v, w))
    check([batch, mat], np.matmul, lambda a, b: a @ b, k * product_bound(batch, mat))
    check([batch], lambda a: a @ mat, lambda a: a @ mat, k * product_bound(batch, mat))
    check([mat], lambda a: v @ a, lambda a: v @ a, k * product_bound(v, mat))


@pytest.mark.parametrize("n, protocol", SETTINGS)
@given(data=st.data())
def test_square(n, protocol, data):
    check = checker(n, protocol)
    x = data.draw(reals(data.draw(shapes())))
    check([x], np.square, lambda a: a.square(), product_bound(x, x))


@pytest.mark.parametrize("n, protocol", SETTINGS)
@given(data=st.data())
def test_conv2d(n, protocol, data):
    check = checker(n, protocol)
    batch, chans, outs = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2),
                                             st.integers(1, 3)))
    kh, kw = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    stride, padding = data.draw(st.integers(1, 2)), data.draw(st.integers(0, 2))
    h, w = data.draw(st.tuples(st.integers(kh, 6), st.integers(kw, 6)))
    x, wt = data.draw(reals((batch, chans, h, w), 5)), data.draw(reals((outs, chans, kh, kw), 5))
    want = lambda a, b: conv_reference(a, b, stride, padding)  # noqa: E731
    bound = chans * kh * kw * product_bound(x, wt)
    check([x, wt], want, lambda a, b: mpc.conv2d(a, b, stride, padding), bound)
    check([x], lambda a: want(a, wt), lambda a: a.conv2d(wt, stride, padding), bound)


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


@pytest.mark.parametrize("n, protocol", SETTINGS)
@given(data=st.data())
def test_reductions_and_shape_ops(n, protocol, data):
    check = checker(n, protocol)
    x = data.draw(reals((3, 4)))
    y = data.draw(reals((3, 4)))
    check([x], lambda a: a.sum(axis=0), lambda a: a.sum(axis=0), 3 * 0.5)
    mean_bound = 1.5 + 12 * np.max(np.abs(x), initial=0) / 512  # SecretTensor.mean's bound
    check([x], lambda a: a.mean(), lambda a: a.mean(), mean_bound)
    check([x], lambda a: a.mean(axis=1, keepdims=True),
             lambda a: a.mean(axis=1, keepdims=True), mean_bound)
    check([x], lambda a: a.T[1:, ::2].reshape(-1), lambda a: a.T[1:, ::2].reshape(-1), 0.5)
    check([x, y], lambda a, b: np.concatenate([a, b], axis=1),
             lambda a, b: mpc.concatenate([a, b], axis=1), 0.5)
    check([x, y], lambda a, b: np.stack([a, b]), lambda a, b: mpc.stack([a, b]), 0.5)
    check([x], lambda a: a / 4.0, lambda a: a / 4.0, 1.5)
    check([x], lambda a: a / 7, lambda a: a / 7, 1.5)  # integer: 8 extra bits in 1/7


def test_five_parties():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(20,)), rng.normal(size=(20,))
    check_op([x, y], lambda a, b: a * b + a, lambda a, b: a * b + a, 2.0, 5)
    m, k = rng.normal(size=(4, 6)), rng.normal(size=(6, 3))
    check_op([m, k], np.matmul, lambda a, b: a @ b, 12.0, 5)


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_shape_errors_are_clear(n, protocol):
    def bad(ctx):
        a = mpc.share(ctx, np.ones((2, 3)) if ctx.pid == 0 else None, 0, shape=(2, 3))
        with pytest.raises(mpc.ShapeError, match=r"\(2, 3\) @ \(2, 3\): inner dimensions differ"):
            a @ a
        with pytest.raises(mpc.ShapeError):
            a @ np.ones((4, 4))
        return True
    assert mpc.run_local(bad, n, protocol=protocol) == [True] * n


def _many(ctx, a, b, c, d):
    share = [mpc.share(ctx, v if ctx.pid == 0 else None, 0, shape=v.shape) for v in (a, b, c, d)]
    before = ctx.stats.snapshot(without=("dealer",))
    ab, cd = mpc.matmul_many([(share[0], share[1]), (share[2], share[3])])
    used = ctx.stats.snapshot(without=("dealer",))
    return ab.reveal(), cd.reveal(), used.rounds - before.rounds


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_matmul_many_is_each_product_in_the_rounds_of_one(n, protocol):
    """Rounds: the most any party waits (the replicated truncation's helper waits for
    nothing)."""
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(4, 3))
    c, d = rng.normal(size=(2, 5, 4)), rng.normal(size=(4, 7))  # batched, broadcast
    out = mpc.run_local(_many, n, args=(a, b, c, d), protocol=protocol)
    ab, cd, _ = out[0]
    np.testing.assert_allclose(ab, a @ b, atol=4 * 4 * 2**-16)
    np.testing.assert_allclose(cd, c @ d, atol=4 * 4 * 2**-16)
    assert max(rounds for _, _, rounds in out) == 2
