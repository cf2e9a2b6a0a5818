import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc.fixedpoint import FixedPoint

FP = FixedPoint()


@given(st.lists(st.floats(-FP.max_abs, FP.max_abs), min_size=1, max_size=50))
def test_round_trip_within_half_ulp(values):
    x = np.array(values)
    assert np.max(np.abs(FP.decode(FP.encode(x)) - x)) <= FP.ulp / 2


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_refused(bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        FP.encode([1.0, bad])


def test_out_of_range_refused_with_range_in_message():
    with pytest.raises(ValueError, match=r"outside the fixed-point range \[-1.07374e\+09"):
        FP.encode([FP.max_abs * 1.01])
    FP.encode([FP.max_abs, -FP.max_abs])  # the edges themselves are fine


def test_negative_values_are_twos_complement():
    assert FP.encode(-1.0) == np.uint64(2**64 - 2**16)
    assert FP.encode(np.array(-1.0)).dtype == np.uint64


def test_frac_bits_configurable():
    fp = FixedPoint(frac_bits=20)
    assert fp.max_abs == 2.0 ** 22
    assert fp.decode(fp.encode(0.5)) == 0.5
    with pytest.raises(ValueError):
        FixedPoint(frac_bits=40)
