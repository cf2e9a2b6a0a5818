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
    assert 0 < line["max_abs_err"] and 0 < line["err_to_bound"] <= 1


def test_the_replay_itself_passes_and_a_perturbed_weight_fails():
    params, x, y, lr = _quantized()
    want, bound = sgd_replay(params, x, y, lr, STEPS)
    assert w4_check(FIXED, [want], STEPS) == {"correct": True, "max_abs_err": 0.0,
                                              "err_to_bound": 0.0, "steps_checked": STEPS}
    for layer in range(6):
        got = [w.copy() for w in want]
        got[layer].flat[7] += 2 * bound
        check = w4_check(FIXED, [got], STEPS)
        assert check["correct"] is False and check["max_abs_err"] == pytest.approx(2 * bound)
        assert check["err_to_bound"] == pytest.approx(2)


def test_weights_of_a_different_number_of_steps_fail():
    params, x, y, lr = _quantized()
    for steps, claimed in ((STEPS, STEPS + 2), (STEPS + 2, STEPS), (STEPS, 0)):
        got, _ = sgd_replay(params, x, y, lr, steps)
        assert w4_check(FIXED, [got], claimed)["correct"] is False


def test_a_repetition_that_did_not_train_fails():
    """`mpc bench --reps 1` checks 2 x 10 steps: the weights of 10 claimed as 20 passed a
    bound summed over the whole run; each repetition against its own replay does not."""
    params, x, y, lr = _quantized()
    ten, _ = sgd_replay(params, x, y, lr, 10)
    twenty, _ = sgd_replay(ten, x, y, lr, 10)
    assert w4_check(FIXED, [ten, twenty], 10)["correct"] is True
    assert w4_check(FIXED, [ten, ten], 10)["correct"] is False


def test_an_untrained_last_layer_fails():
    params, x, y, lr = _quantized()
    got, _ = sgd_replay(params, x, y, lr, 10)
    assert w4_check(FIXED, [got[:4] + params[4:]], 10)["correct"] is False


def test_missing_or_misshapen_weights_are_refused():
    params, x, y, lr = _quantized()
    got, _ = sgd_replay(params, x, y, lr, STEPS)
    with pytest.raises(ValueError):
        w4_check(FIXED, [got[:5]], STEPS)
    with pytest.raises(ValueError, match="shape"):
        w4_check(FIXED, [got[:1] + [got[1][None]] + got[2:]], STEPS)
    assert w4_check(FIXED, [], STEPS)["correct"] is False


def test_the_bound_grows_with_the_steps_and_the_unit():
    params, x, y, lr = _quantized()
    _, one = sgd_replay(params, x, y, lr, 1)
    _, three = sgd_replay(params, x, y, lr, 3)
    _, coarse = sgd_replay(params, x, y, lr, 1, frac_bits=12)
    assert 3 * 2.0 ** -16 < one < three < 4 * one
    assert one < coarse and np.isfinite(coarse)


def test_the_party_checks_every_step_against_its_own_replay(monkeypatch):
    """Over 10 steps flipped ReLUs can grow the difference past the summed bound (1.25 of
    it measured, every operation within its own): each step is checked alone."""
    import bench.workloads as workloads
    seen = []
    real = workloads.w4_check

    def recording(fixed, revealed, steps):
        seen.append((len(revealed), steps))
        return real(fixed, revealed, steps)
    monkeypatch.setattr(workloads, "w4_check", recording)
    line = mpc.run_local(_w4_party, 2, args=("W4", 1, 1, STEPS), provider="insecure-seeded",
                         check=False)[0]
    assert seen == [(2 * STEPS, 1)] and line["steps_checked"] == 2 * STEPS
