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


@pytest.mark.parametrize("bad, named", [
    (np.array([1 + 2j, 3.0]), "dtype complex128"), ([1.0, 2j], "dtype complex128"),
    (np.array(["3.5", "1"]), "dtype <U3"), ("3.5", "dtype <U3"), (b"1", "dtype |S1"),
    (None, "NoneType value None"), ([1.0, None], "NoneType value None"),
    ([object()], "object value"), (np.datetime64("2020-01-01"), "dtype datetime64[D]")])
def test_what_is_not_a_real_number_is_refused_naming_its_type(bad, named):
    """Before: complex lost its imaginary part with a numpy warning, strings were parsed
    and None was reported as "NaN or infinite"."""
    with pytest.raises(TypeError, match="cannot encode") as info:
        FP.encode(bad)
    assert named in str(info.value) and "expected real numbers" in str(info.value)


@pytest.mark.parametrize("good, want", [
    (np.array([3, -4], dtype=np.int8), [3.0, -4.0]), (np.uint64(7), 7.0),
    (np.float16(0.5), 0.5), (np.float32(-1.25), -1.25), (np.longdouble(2.5), 2.5),
    ([True, False], [1.0, 0.0]), (np.array([1, 2.5], dtype=object), [1.0, 2.5]),
    (2**29, 2.0**29)])
def test_integers_floats_of_any_width_and_bools_are_encoded(good, want):
    np.testing.assert_array_equal(FP.decode(FP.encode(good)), want)


def test_a_public_operand_that_is_not_a_real_number_is_refused():
    import mpc

    def fn(ctx):
        x = mpc.share(ctx, np.ones(2) if ctx.pid == 0 else None, 0, shape=(2,))
        refused = []
        for op in (lambda: x * "2", lambda: x / "2", lambda: x + (1 + 1j),
                   lambda: mpc.where(x > 0, "1", x)):
            try:
                op()
            except TypeError as exc:
                refused.append(str(exc))
        return refused
    refused = mpc.run_local(fn, 2)[0]
    assert len(refused) == 4 and all("cannot encode" in r for r in refused), refused
