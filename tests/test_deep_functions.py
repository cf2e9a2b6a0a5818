"""mpc.gelu (with its derivative) and mpc.bernoulli (secret coin flips) against numpy."""

import math

import numpy as np
import pytest
from scipy import stats
from hypothesis import given, strategies as st

import mpc
from oracle import ULP, check_op, run_op

PARTIES = [2, 3]


def gelu_ref(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def gelu_grad_ref(x):
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2))) + \
        x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


@pytest.mark.parametrize("n", PARTIES)
def test_gelu_and_its_derivative_over_a_sweep(n):
    x = np.r_[np.linspace(-7, 7, 1401), [-300.0, -40.0, 40.0, 300.0]]
    err = check_op([x], gelu_ref, mpc.gelu, 0.0016 / ULP, n_parties=n)
    assert err > 0.0005  # the sweep does reach the pieces' error
    check_op([x], gelu_grad_ref, lambda t: mpc.gelu(t, with_grad=True)[1], 0.0028 / ULP,
             n_parties=n)


@given(st.lists(st.floats(-1000, 1000), min_size=1, max_size=20))
def test_gelu_random_inputs(values):
    x = np.array(values)
    check_op([x], gelu_ref, mpc.gelu, 0.0016 / ULP)


def _rounds_of(ctx, fn, x):
    xs = mpc.share_public(ctx, x)
    before = ctx.stats.snapshot().rounds
    fn(xs)
    return ctx.stats.snapshot().rounds - before


def test_gelu_rounds():
    got = mpc.run_local(_rounds_of, 2, args=(lambda t: mpc.gelu(t, with_grad=True),
                                             np.zeros(5)))
    assert got[0] == 9


def _frequency(ctx, p, size):
    b = mpc.bernoulli(ctx, (size,), p, value=2.5)
    return b.reveal() / 2.5


@pytest.mark.parametrize("n", PARTIES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_bernoulli_frequency(n, p):
    size = 20000
    got = mpc.run_local(_frequency, n, args=(p, size))[0]
    assert set(np.unique(got)) <= {0.0, 1.0}
    # exact binomial test: a false failure 1e-8 each, 6e-8 over the cases (the 5 sigma
    # z-test's was 3.4e-6); a shift of p by 0.02 is still caught
    assert stats.binomtest(int(got.sum()), size, p).pvalue > 1e-8


def test_bernoulli_rounds_and_refusals():
    got = mpc.run_local(lambda ctx: (ctx.stats.snapshot().rounds,
                                     mpc.bernoulli(ctx, 4, 0.5).shape,
                                     ctx.stats.snapshot().rounds), 3)[0]
    assert got[1] == (4,) and got[2] - got[0] == 7
    with pytest.raises(mpc.PartyFailed, match="probability must be in"):
        run_op([np.zeros(1)], lambda x: mpc.bernoulli(x.ctx, 1, 1.5))
