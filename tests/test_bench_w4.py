"""W4's `correct`: the secret SGD steps against their float64 replay, within the bound that
bench.mlp_reference derives, under both protocols; and false when they differ."""

import numpy as np
import pytest

import mpc
from bench.mlp_reference import sgd_replay
from bench.workloads import W4_RATE, _w4_party, w4_check, w4_problem
from mpc.fixedpoint import FixedPoint

FIXED = FixedPoint()
STEPS = 2


def _quantized():
    q = lambda v: FIXED.decode(FIXED.encode(v))  # noqa: E731
    images, labels, params = w4_problem()
    return [q(p) for p in params], q(images), labels, float(q(W4_RATE))


@pytest.mark.parametrize("protocol, parties, options", [
    ("dealer", 2, {"provider": "insecure-seeded"}),
    ("replicated", 3, {}),
])
def test_w4_is_correct_on_a_real_small_run(protocol, parties, options):
    results = mpc.run_local(_w4_party, parties, args=("W4", 1, 0, STEPS), protocol=protocol,
                            check=False, **options)
    line = results[0]
    assert line["correct"] is True and line["steps_checked"] == STEPS
    assert 0 < line["max_abs_err"] <= line["err_bound"]
    assert line["err_bound"] < 2 * STEPS * 100 * 2.0 ** -16  # the bound is a few hundred units


def test_the_replay_itself_passes_and_a_perturbed_weight_fails():
    params, x, y, lr = _quantized()
    want, bound = sgd_replay(params, x, y, lr, STEPS)
    assert w4_check(FIXED, want, STEPS) == {"correct": True, "max_abs_err": 0.0,
                                            "err_bound": bound, "steps_checked": STEPS}
    for layer in range(6):
        got = [w.copy() for w in want]
        got[layer].flat[7] += 2 * bound
        check = w4_check(FIXED, got, STEPS)
        assert check["correct"] is False and check["max_abs_err"] == pytest.approx(2 * bound)


def test_weights_of_a_different_number_of_steps_fail():
    params, x, y, lr = _quantized()
    for steps, claimed in ((STEPS, STEPS + 2), (STEPS + 2, STEPS), (STEPS, 0)):
        got, _ = sgd_replay(params, x, y, lr, steps)
        assert w4_check(FIXED, got, claimed)["correct"] is False


def test_the_bound_grows_with_the_steps_and_the_unit():
    params, x, y, lr = _quantized()
    _, one = sgd_replay(params, x, y, lr, 1)
    _, three = sgd_replay(params, x, y, lr, 3)
    _, coarse = sgd_replay(params, x, y, lr, 1, frac_bits=12)
    assert 3 * 2.0 ** -16 < one < three < 4 * one
    assert one < coarse and np.isfinite(coarse)
