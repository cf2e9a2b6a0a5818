"""Truncation on raw ring values: the exact method's bound at the edges of its range and its
unbiasedness under every protocol (oracle.SETTINGS), and the measured failure rate of the
dealer protocol's 2-party local method."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mpc
from oracle import SETTINGS, split_shares

F = 16
LIMIT = 2 ** 62 - 1


def _truncate_and_open(ctx, shares):
    ys = ctx.protocol.truncate(ctx, shares[ctx.pid], F)
    return ctx.open(ys).view(np.int64)


def run_truncation(x, n, protocol="dealer", **options):
    x = np.asarray(x, dtype=np.int64).view(np.uint64)
    shares = split_shares(x, n, protocol, np.random.default_rng(0))
    return mpc.run_local(_truncate_and_open, n, args=(shares,), protocol=protocol,
                         **options)[0]


@pytest.mark.parametrize("n, protocol", SETTINGS + [pytest.param(5, "dealer", id="dealer-5p")])
@given(st.lists(st.integers(-LIMIT, LIMIT), min_size=1, max_size=40))
def test_exact_truncation_within_one_ulp(n, protocol, values):
    x = np.array(values + [0, 1, -1, LIMIT, -LIMIT, 2**61, -2**61], dtype=np.int64)
    # check=False: at the very top of the range (LIMIT) checked mode reports the last unit
    y = run_truncation(x, n, protocol, check=False)
    floor = x >> F
    assert set(np.unique(y - floor)) <= {0, 1}


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_exact_truncation_is_unbiased(n, protocol):
    x = np.full(200_000, 12345 * 2**16 + 2**14, dtype=np.int64)  # frac part 1/4
    y = run_truncation(x, n, protocol)
    assert abs(np.mean(y - x / 2.0**F)) < 0.01  # E[y] = x / 2^f; 0.25 + 0 +- 0.001


def test_local_truncation_fails_at_documented_rate():
    magnitude = 2 ** 60  # predicted failure probability |x| / 2^64 = 1/16
    x = np.full(40_000, magnitude, dtype=np.int64) * np.where(np.arange(40_000) % 2, 1, -1)
    # check=False: the failures are the point here (checked mode would refuse them)
    y = run_truncation(x, 2, truncation="local-probabilistic", check=False)
    wrong = np.abs(y - (x >> F)) > 1
    rate, predicted = wrong.mean(), magnitude / 2.0**64
    assert abs(rate - predicted) < 5 * np.sqrt(predicted * (1 - predicted) / x.size)


def test_local_truncation_fine_for_small_values():
    x = np.random.default_rng(1).integers(-2**40, 2**40, size=100_000)
    y = run_truncation(x, 2, truncation="local-probabilistic")
    assert set(np.unique(y - (x >> F))) <= {0, 1}


def test_local_truncation_refuses_three_parties():
    with pytest.raises(ValueError, match="2 parties only"):  # before any party starts
        run_truncation(np.zeros(3, dtype=np.int64), 3, truncation="local-probabilistic")
