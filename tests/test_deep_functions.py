"""mpc.gelu (with its derivative) and mpc.bernoulli (secret coin flips) against numpy."""

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import mpc
from mpc.bernoulli import bits_from
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


def _bits(ctx, mine, p, value):
    return bits_from(ctx, mine[ctx.pid], p, value).reveal()


@pytest.mark.parametrize("n", PARTIES)
@given(data=st.data())
def test_bits_from_given_draws_match_numpy(n, data):
    size = data.draw(st.integers(1, 30))
    grid = st.integers(0, 2 ** 16 - 1)
    mine = np.array([[data.draw(grid) for _ in range(size)] for _ in range(n)]) / 2.0 ** 16
    p = data.draw(st.sampled_from([0.0, 1.0, 0.5, 0.1, 0.37, 0.999]))
    got = mpc.run_local(_bits, n, args=(mine, p, 2.5))[0]
    frac = np.mod(mine.sum(axis=0), 1.0)
    want = 2.5 * (frac < round(p * 2 ** 16) / 2 ** 16)
    np.testing.assert_array_equal(got, want)


def _frequency(ctx, p, size):
    b = mpc.bernoulli(ctx, (size,), p)
    return b.reveal()


@pytest.mark.parametrize("n", PARTIES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_bernoulli_frequency(n, p):
    size = 20000
    got = mpc.run_local(_frequency, n, args=(p, size))[0]
    assert set(np.unique(got)) <= {0.0, 1.0}
    assert abs(got.mean() - p) < 5 * math.sqrt(p * (1 - p) / size)


def _fixed_coalition(ctx, size, p):
    """Parties 1.. always draw the same u (a coalition that knows its own draws)."""
    f = ctx.fixed.frac_bits
    if ctx.pid == 0:
        return mpc.bernoulli(ctx, (size,), p).reveal()
    mine = np.full((size,), 0.3 + 0.25 * ctx.pid)
    return bits_from(ctx, np.round(mine * 2 ** f) / 2 ** f, p).reveal()


@pytest.mark.parametrize("n", PARTIES)
def test_bits_unknown_to_the_other_parties(n):
    """With every draw but party 0's fixed (what a coalition of the others knows), the bits
    are still Bernoulli(p) and vary: the coalition's view does not determine them."""
    size, p = 20000, 0.3
    got = mpc.run_local(_fixed_coalition, n, args=(size, p))[0]
    assert abs(got.mean() - p) < 5 * math.sqrt(p * (1 - p) / size)


def test_bernoulli_rounds_and_refusals():
    got = mpc.run_local(lambda ctx: (ctx.stats.snapshot().rounds,
                                     mpc.bernoulli(ctx, 4, 0.5).shape,
                                     ctx.stats.snapshot().rounds), 3)[0]
    assert got[1] == (4,) and got[2] - got[0] == 8
    with pytest.raises(mpc.PartyFailed, match="p must be in"):
        run_op([np.zeros(1)], lambda x: mpc.bernoulli(x.ctx, 1, 1.5))
