"""Comparisons, ReLU, sign, abs, max, argmax and max-pooling on shares against numpy:
exact on random inputs and at the edges (equal values, one fixed-point step apart, the
largest and smallest encodable values), under every protocol (oracle.SETTINGS); and the
rounds and bytes per element that mpc.protocols.dealer.compare and
mpc.protocols.replicated.compare document, from the transport's own counters."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mpc
from mpc.protocols.dealer import compare
from oracle import SETTINGS, ULP, checker

PARTIES = [2, 3]
LIMIT = mpc.FixedPoint().max_abs


def grid_values(shape, bound=1000.0):
    """Reals on the fixed-point grid (so that 'one step apart' is meaningful)."""
    return hnp.arrays(np.int64, shape, elements=st.integers(int(-bound / ULP), int(bound / ULP))
                      ).map(lambda a: a * ULP)


def edge_pairs():
    big = np.floor(LIMIT / 2)  # x - y must stay inside the range too
    x = np.array([0.0, 1.0, -1.0, ULP, -ULP, 5.0, 5.0, big, -big, big, 3.5, -3.5])
    y = np.array([0.0, 1.0, -1.0, 0.0, 0.0, 5.0 + ULP, 5.0 - ULP, -big, big, big, 3.5, -3.5])
    return x, y


@pytest.mark.parametrize("n, protocol", SETTINGS)
@given(data=st.data())
def test_comparisons_exact(n, protocol, data):
    check = checker(n, protocol)
    shape = data.draw(hnp.array_shapes(max_dims=2, max_side=6))
    x, y = data.draw(grid_values(shape)), data.draw(grid_values(shape))
    y = np.where(data.draw(hnp.arrays(bool, shape)), x, y)  # many equal pairs
    for np_fn, mpc_fn in [(np.less, lambda a, b: a < b), (np.greater, lambda a, b: a > b),
                          (np.less_equal, lambda a, b: a <= b),
                          (np.greater_equal, lambda a, b: a >= b),
                          (np.equal, lambda a, b: a == b),
                          (np.not_equal, lambda a, b: a != b)]:
        check([x, y], lambda a, b: np_fn(a, b).astype(float), mpc_fn, 0)


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_comparisons_at_the_edges(n, protocol):
    check = checker(n, protocol)
    x, y = edge_pairs()
    check([x, y], lambda a, b: (a < b).astype(float), lambda a, b: a < b, 0)
    check([x, y], lambda a, b: (a == b).astype(float), lambda a, b: a == b, 0)
    check([x, y], lambda a, b: (a != b).astype(float), lambda a, b: a != b, 0)
    extremes = np.array([LIMIT, -LIMIT, ULP, -ULP, 0.0])
    check([extremes], lambda a: (a < 0).astype(float), lambda a: a < 0.0, 0)
    check([extremes], lambda a: np.maximum(a, 0), lambda a: a.relu(), 0)


@pytest.mark.parametrize("n, protocol", SETTINGS)
@given(data=st.data())
def test_relu_sign_abs_exact(n, protocol, data):
    check = checker(n, protocol)
    x = data.draw(grid_values(data.draw(hnp.array_shapes(max_dims=3, max_side=5))))
    check([x], lambda a: np.maximum(a, 0), lambda a: a.relu(), 0)
    check([x], lambda a: (a >= 0).astype(float), lambda a: a.relu(with_grad=True)[1], 0)
    check([x], lambda a: np.where(a >= 0, 1.0, -1.0), lambda a: a.sign(), 0)
    check([x], np.abs, abs, 0)


@pytest.mark.parametrize("n, protocol", SETTINGS)
@given(data=st.data())
def test_max_argmax_where(n, protocol, data):
    check = checker(n, protocol)
    rows, cols = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 7))
    x = data.draw(grid_values((rows, cols)))
    y = data.draw(grid_values((rows, cols)))
    check([x], lambda a: a.max(axis=1), lambda a: a.max(axis=1), 0)
    check([x], lambda a: a.max(axis=0), lambda a: a.max(axis=0), 0)
    check([x], lambda a: np.max(a), lambda a: a.max(), 0)
    check([x], lambda a: (a == a.max(axis=1, keepdims=True)).astype(float),
          lambda a: a.argmax(axis=1), 0)
    check([x, y], lambda a, b: np.where(a < b, a, b), lambda a, b: mpc.where(a < b, a, b), 1)


@pytest.mark.parametrize("n, protocol", SETTINGS)
@given(data=st.data())
def test_max_pool2d(n, protocol, data):
    check = checker(n, protocol)
    k, s = data.draw(st.sampled_from([(2, 2), (2, 1), (3, 2)]))
    h, w = data.draw(st.integers(k, 7)), data.draw(st.integers(k, 7))
    x = data.draw(grid_values((2, 2, h, w)))
    want = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    check([x], lambda a: want.max(axis=(-1, -2)), lambda a: a.max_pool2d(k, s), 0)


def _costs(ctx, size):
    """This party's bytes sent and rounds for x < 0.5, relu and a max over rows of 8."""
    x = mpc.share(ctx, np.linspace(-5, 5, size) if ctx.pid == 0 else None, 0, shape=(size,))
    out = {}
    rows = x.reshape(-1, 8)
    for name, op in [("compare", lambda: x < 0.5), ("relu", lambda: x.relu()),
                     ("max8", lambda: rows.max(axis=1))]:
        before = ctx.stats.snapshot(without=("dealer",))
        op()
        after = ctx.stats.snapshot(without=("dealer",))
        out[name] = (after.bytes_sent - before.bytes_sent, after.rounds - before.rounds)
    return out


@pytest.mark.parametrize("n", PARTIES)
def test_rounds_and_bytes_match_the_docstring(n):
    size = 8000  # a multiple of 8, below the reduce-scatter size
    costs = mpc.run_local(_costs, n, args=(size,))[0]
    per_peer_compare = 8 + 2 * (8 + 4 + 2 + 1) + 1 + 0.5 + 1 / 8  # compare's docstring
    assert costs["compare"] == (per_peer_compare * size * (n - 1), 8)
    assert costs["relu"] == ((per_peer_compare + 8) * size * (n - 1), 8)
    # max over 8: three levels of fused ReLUs on 4, 2 and 1 pairs per row (README table)
    assert costs["max8"] == ((per_peer_compare + 8) * size * 7 / 8 * (n - 1), 24)


def test_replicated_rounds_and_bytes_match_the_docstring():
    """Replicated: 7 rounds, every party 23.625 bytes per element (31.625 with the product
    fused), for sizes that are multiples of 192 (mpc.protocols.replicated.compare)."""
    size = 40 * 192  # and each max level's 1/2, 1/4, 1/8 of it too
    costs = mpc.run_local(_costs, 3, args=(size,), protocol="replicated")
    for party in costs:
        assert party["compare"] == (23.625 * size, 7)
        assert party["relu"] == (31.625 * size, 7)
        # max over 8: 3 levels of 3840, 1920 and 960 ReLUs, below FEW_ROUNDS_BELOW: 4 rounds
        assert party["max8"] == (156.25 * size * 7 / 8, 12)


def _ltz_whole_and_chunked(ctx, values, chunk):
    z = mpc.share(ctx, values if ctx.pid == 0 else None, 0, shape=values.shape).share
    out = {}
    for name, size in [("whole", values.size), ("chunked", chunk)]:
        before = ctx.stats.snapshot(without=("dealer",))
        bit, picked = compare.less_than_zero(ctx, z, select=True, chunk=size)
        after = ctx.stats.snapshot(without=("dealer",))
        out[name] = (ctx.open(bit), ctx.open(picked), after.rounds - before.rounds,
                     after.bytes_sent - before.bytes_sent)
    return out


@pytest.mark.parametrize("n", PARTIES)
def test_chunked_comparison_equals_unchunked(n):
    """A comparison in batches (here 3 of at most 1000 elements) opens the same bits and
    selected values as one batch, at 8 rounds per batch and the same bytes (up to the
    bit-packing of each batch's last byte)."""
    values = np.random.default_rng(5).uniform(-100, 100, 2500)
    values[:10] = 0.0
    out = mpc.run_local(_ltz_whole_and_chunked, n, args=(values, 1000))[0]
    encoded = mpc.FixedPoint().encode(values)
    want_bit = (values < 0).astype(np.uint64)
    for bit, picked, _, _ in out.values():
        np.testing.assert_array_equal(bit, want_bit)
        np.testing.assert_array_equal(picked, np.where(values < 0, encoded, 0))
    assert (out["whole"][2], out["chunked"][2]) == (8, 24)
    assert 0 <= out["chunked"][3] - out["whole"][3] <= 3 * 2 * (n - 1)


def _truth_values(ctx):
    x = mpc.share(ctx, np.array([1.0, 2.0]) if ctx.pid == 0 else None, 0, shape=(2,))
    y = mpc.share(ctx, np.array([1.0, 3.0]) if ctx.pid == 1 else None, 1, shape=(2,))
    outcomes = {"!=": type(x != y).__name__}
    attempts = {"bool": lambda: bool(x > y), "if": lambda: 1 if x < y else 0,
                "and": lambda: x and y, "or": lambda: (x == y) or y, "not": lambda: not x,
                "in": lambda: x in [y, x], "index": lambda: [y, x].index(x),
                "hash": lambda: {x: 1}}
    for name, attempt in attempts.items():
        try:
            attempt()
            outcomes[name] = "no error"
        except TypeError as exc:
            outcomes[name] = str(exc)
    return outcomes


def test_a_secret_has_no_truth_value():
    """`!=` is secret like `==`; bool(), if, and/or/not, `in` and .index() on a secret
    raise a TypeError that says why (before: `!=` gave the Python bool False after a
    whole equality protocol, and every secret was True)."""
    outcomes = mpc.run_local(_truth_values, 2)[0]
    assert outcomes.pop("!=") == "SecretTensor"
    assert "unhashable" in outcomes.pop("hash")
    for name, message in outcomes.items():
        assert message.startswith("a SecretTensor has no truth value") and \
            "x.reveal()" in message and "mpc.where" in message, (name, message)
