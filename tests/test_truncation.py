"""Truncation on raw ring values: the exact method's bound at the edges of its range, its
unbiasedness, and the measured failure rate of the 2-party local method."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mpc
from mpc.protocols.truncation import truncate
from mpc.ring import DTYPE

F = 16
LIMIT = 2 ** 62 - 1


def split(x_signed: np.ndarray, n: int, rng) -> list[np.ndarray]:
    """Additive shares of int64 values (test-side helper, numpy randomness is fine here)."""
    shares = [rng.integers(0, 2**64, size=x_signed.shape, dtype=np.uint64) for _ in range(n - 1)]
    last = x_signed.view(DTYPE) - sum(shares, np.zeros_like(x_signed, dtype=DTYPE))
    return shares + [last]


def _truncate_and_open(ctx, shares):
    ys = truncate(ctx, shares[ctx.pid])
    return ctx.open(ys).view(np.int64)


def run_truncation(x, n, **options):
    shares = split(np.asarray(x, dtype=np.int64), n, np.random.default_rng(0))
    return mpc.run_local(_truncate_and_open, n, args=(shares,), **options)[0]


@pytest.mark.parametrize("n", [2, 3, 5])
@given(st.lists(st.integers(-LIMIT, LIMIT), min_size=1, max_size=40))
def test_exact_truncation_within_one_ulp(n, values):
    x = np.array(values + [0, 1, -1, LIMIT, -LIMIT, 2**61, -2**61], dtype=np.int64)
    # check=False: at the very top of the range (LIMIT) checked mode reports the last unit
    y = run_truncation(x, n, check=False)
    floor = x >> F
    assert set(np.unique(y - floor)) <= {0, 1}


def test_exact_truncation_is_unbiased():
    x = np.full(200_000, 12345 * 2**16 + 2**14, dtype=np.int64)  # frac part 1/4
    y = run_truncation(x, 2)
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
    with pytest.raises(mpc.PartyFailed, match="2 parties only"):
        run_truncation(np.zeros(3, dtype=np.int64), 3, truncation="local-probabilistic")
