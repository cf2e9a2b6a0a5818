"""Non-linear functions against numpy over their whole stated domains (a dense grid that
includes the edges, plus random points), for 2 and 3 parties; what happens outside the
domain; and the rounds and bytes their docstrings state. Under every protocol
(oracle.SETTINGS): the dealer protocol with 2 and 3 parties, the replicated one."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mpc
from mpc import functions as F
from oracle import SETTINGS, ULP

FP = mpc.FixedPoint()


def quantize(v):
    return FP.decode(FP.encode(v))


def _apply(ctx, name, xs, kwargs):
    x = mpc.share(ctx, xs if ctx.pid == 0 else None, 0, shape=xs.shape)
    return getattr(F, name)(x, **kwargs).reveal()


def run(name, xs, n=2, protocol="dealer", **kwargs):
    return mpc.run_local(_apply, n, args=(name, np.asarray(xs, dtype=float), kwargs),
                         protocol=protocol)[0]


# name: (domain sweep, numpy reference, absolute bound in units, relative bound)
CASES = {
    "reciprocal": (np.concatenate([-np.geomspace(2**-10, 2**15 - 1, 120),
                                   np.geomspace(2**-10, 2**15 - 1, 120)]),
                   lambda v: 1 / v, 4, 5e-5),
    "exp": (np.linspace(-64, 20, 241), np.exp, 3, 2e-4),
    "exp_nonpositive": (np.linspace(-64, 0, 241), np.exp, 3, 0),
    "sigmoid": (np.linspace(-1000, 1000, 241), lambda v: 0.5 * (1 + np.tanh(v / 2)), 4, 0),
    "sigmoid_piecewise": (np.linspace(-1000, 1000, 241) ** 3 / 1e6,
                          lambda v: 0.5 * (1 + np.tanh(v / 2)), 0.0016 / ULP, 0),
    "tanh": (np.linspace(-100, 100, 241), np.tanh, 10, 0),
    "inv_sqrt": (np.geomspace(4.0**-5, 4.0**8 - 1, 200), lambda v: 1 / np.sqrt(v), 4, 5e-5),
    "sqrt": (np.geomspace(4.0**-5, 4.0**8 - 1, 200), np.sqrt, 4, 1e-4),
    "log": (np.geomspace(2**-10, 2**15 - 1, 200), np.log, 6, 0),
}


def check(name, xs, n=2, protocol="dealer"):
    _, fn, absolute, relative = CASES[name]
    want = fn(quantize(xs))
    got = run(name, xs, n, protocol)
    bound = absolute * ULP + relative * np.abs(want)
    worst = np.argmax(np.abs(got - want) - bound)
    assert np.all(np.abs(got - want) <= bound), \
        f"{name}({xs[worst]}) = {got[worst]}, want {want[worst]} (bound {bound[worst]})"


@pytest.mark.parametrize("name", list(CASES))
def test_whole_domain_two_parties(name):
    check(name, CASES[name][0])


@pytest.mark.parametrize("name", ["reciprocal", "exp", "sigmoid", "sigmoid_piecewise", "log"])
def test_whole_domain_three_parties(name):
    check(name, CASES[name][0][::3], n=3)


@pytest.mark.parametrize("name", list(CASES))
def test_whole_domain_replicated(name):
    check(name, CASES[name][0], n=3, protocol="replicated")


@pytest.mark.parametrize("n, protocol", SETTINGS)
@settings(max_examples=10)
@given(st.sampled_from(list(CASES)), st.integers(0, 2**32 - 1))
def test_random_points_in_domain(n, protocol, name, seed):
    sweep = CASES[name][0]
    lo, hi = sweep.min(), sweep.max()
    rng = np.random.default_rng(seed)
    if name in ("reciprocal",):
        xs = np.exp(rng.uniform(np.log(2**-10), np.log(2**15 - 1), 20)) * rng.choice([-1, 1], 20)
    elif lo > 0:
        xs = np.exp(rng.uniform(np.log(lo), np.log(hi), 20))
    else:
        xs = rng.uniform(lo, hi, 20)
    check(name, xs, n, protocol)


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_division(n, protocol):
    x = np.array([3.0, -7.5, 100.0, 0.25, 1e4])
    y = np.array([2.0, 0.5, -3.0, 1e-2, 4096.0])

    def divide(ctx):
        a = mpc.share(ctx, x if ctx.pid == 0 else None, 0, shape=x.shape)
        b = mpc.share(ctx, y if ctx.pid == 1 else None, 1, shape=y.shape)
        return (a / b).reveal()
    got = mpc.run_local(divide, n, protocol=protocol)[0]
    qx, qy = quantize(x), quantize(y)
    bound = np.abs(qx) * (4 * ULP + 5e-5 / np.abs(qy)) + ULP  # divide's docstring
    assert np.all(np.abs(got - qx / qy) <= bound)


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_softmax_rows(n, protocol):
    x = np.random.default_rng(3).normal(0, 5, (6, 10))
    x[0] = [50, -50, 0, 0, 1, 1, 1, 1, 1, 1]  # large spread: max subtraction matters
    got = run("softmax", x, n, protocol, axis=1)
    z = quantize(x) - quantize(x).max(axis=1, keepdims=True)
    want = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert np.max(np.abs(got - want)) <= 6 * ULP
    got0 = run("softmax", x.T, n, protocol, axis=0)
    np.testing.assert_allclose(got0, got.T, atol=6 * ULP)


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_outside_the_domain_saturates_as_documented(n, protocol):
    got = run("reciprocal", [1e-5, -1e-5, 1e5, -4e5], n, protocol)
    np.testing.assert_allclose(got, [1024, -1024, 2**-15, -(2**-15)], atol=4 * ULP, rtol=5e-5)
    got = run("exp", [25.0, 1000.0], n, protocol)
    np.testing.assert_allclose(got, [np.exp(20)] * 2, rtol=3e-4)
    got = run("sigmoid", [-1e6, 1e6, 0.0], n, protocol)
    np.testing.assert_allclose(got, [0.0, 1.0, 0.5], atol=4 * ULP)
    got = run("log", [1e5, 1e-5, 0.0], n, protocol)
    np.testing.assert_allclose(got, [np.log(2**15), np.log(2**-10), np.log(2**-10)], atol=6 * ULP)
    below = quantize(np.array([0.0, 1e-4, 4.0**-5 - ULP]))
    got = run("sqrt", np.append(below, 1e6), n, protocol)
    np.testing.assert_allclose(got, np.append(32 * below, 256.0), atol=4 * ULP, rtol=5e-5)
    got = run("inv_sqrt", [0.0, 1e-5, 1e6], n, protocol)
    np.testing.assert_allclose(got, [32.0, 32.0, 1 / 256], atol=4 * ULP, rtol=5e-5)


# The whole fixed-point line: each function's value, or outside its domain the value at
# the domain's nearer end (its docstring), with the docstring's bound there.
def _sat_sqrt(q):
    return np.where(q < 0, 0.0, np.where(q < 4.0**-5, 32 * q, np.sqrt(np.clip(q, 0.0, 4.0**8))))


def _sigmoid(q):
    return 0.5 * (1 + np.tanh(q / 2))


WHOLE_LINE = {  # name: (reference on quantized inputs, absolute units, relative)
    "reciprocal": (lambda q: np.where(q < 0, -1.0, 1.0) / np.clip(np.abs(q), 2**-10, 2**15),
                   4, 5e-5),
    "exp": (lambda q: np.exp(np.minimum(q, 20.0)), 3, 2e-4),
    "exp_nonpositive": (lambda q: np.exp(np.minimum(q, 0.0)), 3, 0),
    "sigmoid": (_sigmoid, 4, 0),
    "sigmoid_piecewise": (_sigmoid, 0.0016 / ULP, 0),
    "tanh": (np.tanh, 10, 0),
    "inv_sqrt": (lambda q: 1 / np.sqrt(np.clip(q, 4.0**-5, 4.0**8)), 4, 5e-5),
    "sqrt": (_sat_sqrt, 4, 1e-4),
    "log": (lambda q: np.log(np.clip(q, 2.0**-10, 2.0**15)), 6, 0),
}
EDGES = np.array([0.0, ULP, -ULP, 1.0, -1.0, 2.0**-10, 2.0**-10 - ULP, 2.0**15, 2.0**15 - ULP,
                  4.0**-5, 4.0**-5 - ULP, 4.0**8, 4.0**8 - ULP, 20.0, 20.0 + ULP, -11.8, -13.0,
                  -1000.0, -1e6, 1e6, 2.0**29, -(2.0**29), 7.5e8, -7.5e8])
EDGES = np.concatenate([EDGES, [FP.max_abs, -FP.max_abs]])


def _whole_line(ctx, xs):
    x = mpc.share(ctx, xs if ctx.pid == 0 else None, 0, shape=xs.shape)
    return {name: getattr(F, name)(x).reveal() for name in WHOLE_LINE}


def check_whole_line(xs, n):
    q = quantize(xs)
    got = mpc.run_local(_whole_line, n, args=(xs,))[0]
    for name, (fn, absolute, relative) in WHOLE_LINE.items():
        want = fn(q)
        bound = absolute * ULP + relative * np.abs(want)
        worst = np.argmax(np.abs(got[name] - want) - bound)
        assert np.all(np.abs(got[name] - want) <= bound), \
            f"{name}({q[worst]!r}) = {got[name][worst]!r}, want {want[worst]!r}"


@pytest.mark.parametrize("n", [2, 3])
def test_whole_fixed_point_line_at_the_edges(n):
    """Every function at 0, one unit around each domain edge, and out to +-2^30: before,
    sqrt(-1e6) gave -3.2e7, log(-1000) -6.238, exp(-2^30) 4.85e8, tanh(7.5e8) garbage."""
    check_whole_line(EDGES, n)


def _line_values():
    magnitude = st.one_of(st.floats(0, FP.max_abs), st.floats(0, 64.0), st.floats(0, 2.0**-8))
    signed = st.tuples(magnitude, st.booleans()).map(lambda t: -t[0] if t[1] else t[0])
    return st.lists(signed, min_size=1, max_size=24).map(np.array)


@pytest.mark.parametrize("n", [2, 3])
@settings(max_examples=6)
@given(xs=_line_values())
def test_whole_fixed_point_line_random(n, xs):
    check_whole_line(xs, n)


@pytest.mark.parametrize("n", [2, 3])
def test_softmax_and_divide_over_the_whole_line(n):
    """softmax of rows spanning the whole range (differences up to 2^31) and x / y for
    every y, with |x / y| inside the range."""
    rng = np.random.default_rng(5)
    rows = np.array([[FP.max_abs, -FP.max_abs, 0.0], [-7e8, 3.0, -6.9e8], [1.0, 2.0, -1e9]])
    got = run("softmax", rows, n, axis=1)
    z = quantize(rows) - quantize(rows).max(axis=1, keepdims=True)
    want = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert np.max(np.abs(got - want)) <= 6 * ULP

    y = np.concatenate([EDGES, rng.uniform(-FP.max_abs, FP.max_abs, 10)])
    x = rng.uniform(-2.0**19, 2.0**19, y.size)

    def divide(ctx):
        a = mpc.share(ctx, x if ctx.pid == 0 else None, 0, shape=x.shape)
        b = mpc.share(ctx, y if ctx.pid == 1 else None, 1, shape=y.shape)
        return (a / b).reveal()
    qx, qy = quantize(x), quantize(y)
    inverse = WHOLE_LINE["reciprocal"][0](qy)
    got = mpc.run_local(divide, n)[0]
    bound = np.abs(qx) * (4 * ULP + 5e-5 * np.abs(inverse)) + ULP  # divide's docstring
    assert np.all(np.abs(got - qx * inverse) <= bound)


COSTS = {"reciprocal": (45, 1373.5), "exp": (20, 2422.0), "exp_nonpositive": (20, 1040.875),
         "sigmoid": (48, 1304.5), "sigmoid_piecewise": (9, 1579.625),
         "tanh": (48, 1304.5), "inv_sqrt": (49, 994.0),
         "sqrt": (52, 1034.0),
         "log": (36, 1357.5)}


def _costs(ctx, size):
    x = mpc.share(ctx, np.linspace(0.5, 3, size) if ctx.pid == 0 else None, 0, shape=(size,))
    out = {}
    for name in COSTS:
        before = ctx.stats.snapshot(without=("dealer",))
        getattr(F, name)(x)
        after = ctx.stats.snapshot(without=("dealer",))
        out[name] = (after.rounds - before.rounds, (after.bytes_sent - before.bytes_sent) / size)
    return out


def test_rounds_and_bytes_match_the_docstrings():
    assert mpc.run_local(_costs, 2, args=(64,))[0] == COSTS
    for name, (rounds, per_element) in COSTS.items():
        doc = getattr(F, name).__doc__
        assert f"Rounds: {rounds}." in doc and f"{per_element:.1f}".rstrip("0").rstrip(".") in doc


# under the replicated protocol: (most rounds any party waits, bytes per element sent per
# party on average over the three; the roles differ by a few bytes), for 64 elements
REPLICATED_COSTS = {"reciprocal": (29, 2802.0), "exp": (14, 7587.3),
                    "exp_nonpositive": (14, 3056.0), "sigmoid": (37, 3371.0),
                    "sigmoid_piecewise": (5, 4819.0), "tanh": (37, 3371.0),
                    "inv_sqrt": (34, 1772.4), "sqrt": (37, 1793.9),
                    "log": (24, 2715.8)}


def test_replicated_rounds_and_bytes_match_the_readme():
    out = mpc.run_local(_costs, 3, args=(64,), protocol="replicated")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name, (rounds, per_element) in REPLICATED_COSTS.items():
        assert max(o[name][0] for o in out) == rounds, name
        assert round(sum(o[name][1] for o in out) / 3, 1) == per_element, name
        assert f"| {name} | {rounds} | {per_element:.1f} |" in readme, name


def _sigmoid_at(ctx, xs):
    x = mpc.share(ctx, xs if ctx.pid == 0 else None, 0, shape=xs.shape)
    return F.sigmoid_piecewise(x).reveal()


@pytest.mark.parametrize("frac_bits,bound", [(12, 0.0018), (20, 0.0016)])
def test_piecewise_sigmoid_for_other_fixed_point_formats(frac_bits, bound):
    xs = np.linspace(-12, 12, 481)
    got = mpc.run_local(_sigmoid_at, 2, args=(xs,), fixed=mpc.FixedPoint(frac_bits))[0]
    assert np.max(np.abs(got - 0.5 * (1 + np.tanh(xs / 2)))) <= bound
