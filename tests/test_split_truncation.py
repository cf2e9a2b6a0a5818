"""The exact truncation with c opened by parts (mpc.protocols.dealer.truncation, `split`):
within one ulp at the edges of its range for 2, 3 and 5 parties, unbiased, chosen by size
for products (a convolution's output larger than its operands), the bytes and rounds its
docstring states, and a view independent of the secret."""

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mpc
from mpc.protocols.dealer import truncation
from oracle import ULP, split_shares
from test_arithmetic import conv_reference, product_bound
from test_security import bit_frequencies

F = 16
LIMIT = 2 ** 62 - 1


def _split_truncate_and_open(ctx, shares):
    ticket = truncation.request(ctx, shares[ctx.pid].shape, F)
    ys = truncation.truncate_exact(ctx, shares[ctx.pid], ticket, F, split=True)
    return ctx.open(ys).view(np.int64)


def run_split(x, n):
    x = np.asarray(x, dtype=np.int64).view(np.uint64)
    shares = split_shares(x, n, "dealer", np.random.default_rng(0))
    return mpc.run_local(_split_truncate_and_open, n, args=(shares,), check=False)[0]


@pytest.mark.parametrize("n", [2, 3, 5])
@given(st.lists(st.integers(-LIMIT, LIMIT), min_size=0, max_size=40))
def test_split_truncation_within_one_ulp(n, values):
    x = np.array(values + [0, 1, -1, LIMIT, -LIMIT, 2**61, -2**61], dtype=np.int64)
    y = run_split(x, n)
    assert set(np.unique(y - (x >> F))) <= {0, 1}


@pytest.mark.parametrize("n", [1, 2, 3])
def test_split_truncation_of_fewer_elements_than_parties(n):
    x = np.array([-LIMIT, LIMIT, 5][:n], dtype=np.int64)
    assert set(np.unique(run_split(x, 3) - (x >> F))) <= {0, 1}


@pytest.mark.parametrize("n", [2, 3])
def test_split_truncation_is_unbiased(n):
    x = np.full(200_001, 12345 * 2**16 + 2**14, dtype=np.int64)  # frac part 1/4
    y = run_split(x, n)
    assert set(np.unique(y - (x >> F))) <= {0, 1}
    assert abs(np.mean(y - x / 2.0**F)) < 0.01


@contextlib.contextmanager
def counting_splits(split_min=None):
    """Count the split truncations (by party id), with SPLIT_MIN set to `split_min`."""
    calls = []
    original = truncation._finish_split

    def counting(ctx, *args):
        calls.append(ctx.pid)
        return original(ctx, *args)
    with pytest.MonkeyPatch.context() as patch:
        if split_min is not None:
            patch.setattr(truncation, "SPLIT_MIN", split_min)
        patch.setattr(truncation, "_finish_split", counting)
        yield calls


def reals(shape, bound):
    return hnp.arrays(np.float64, shape, elements=st.floats(-bound, bound, width=32))


def _reveal(ctx, arrays, fn):
    shared = [mpc.share(ctx, a if ctx.pid == i % ctx.n_parties else None,
                        owner=i % ctx.n_parties, shape=a.shape) for i, a in enumerate(arrays)]
    return fn(*shared).reveal()


def check_products(arrays, np_fn, mpc_fn, tol_ulps, n):
    outs = mpc.run_local(_reveal, n, args=(arrays, mpc_fn))
    want = np_fn(*arrays)
    for got in outs:
        assert got.shape == want.shape
        assert np.max(np.abs(got - want), initial=0) <= tol_ulps * ULP


@pytest.mark.parametrize("n", [2, 3])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_products_with_split_truncation_match_numpy(n, data):
    batch, outs, k = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 4),
                                         st.integers(1, 3)))
    h, w = data.draw(st.tuples(st.integers(k, 7), st.integers(k, 7)))
    x, wt = data.draw(reals((batch, 1, h, w), 5)), data.draw(reals((outs, 1, k, k), 5))
    col, row = data.draw(reals((5, 1), 50)), data.draw(reals((1, 6), 50))
    with counting_splits(split_min=1) as calls:  # split from one element on
        check_products([x, wt], lambda a, b: conv_reference(a, b, 1, 0), mpc.conv2d,
                       k * k * product_bound(x, wt), n)
        check_products([col, row], np.matmul, lambda a, b: a @ b, product_bound(col, row), n)
        check_products([col, row], np.multiply, lambda a, b: a * b, product_bound(col, row),
                       n)
    conv_splits = n == 3 or batch * outs * (h - k + 1) * (w - k + 1) > x.size + wt.size
    assert len(calls) == n * (2 + conv_splits)


def test_products_split_by_size_only_where_they_should():
    x, w = np.ones((16, 1, 20, 20)), np.ones((16, 1, 5, 5))  # output 65536 elements
    a = np.ones(1 << 16)
    with counting_splits() as calls:
        mpc.run_local(_reveal, 2, args=([x, w], mpc.conv2d))
        assert sorted(calls) == [0, 1]
        calls.clear()  # a product's output no larger than its operands: one round
        mpc.run_local(_reveal, 2, args=([a, a], lambda u, v: u * v))
        assert calls == []
        big = np.ones(truncation.SPLIT_ALWAYS)  # unless it is large
        mpc.run_local(_reveal, 2, args=([big, big], lambda u, v: u * v))
        assert sorted(calls) == [0, 1]
        calls.clear()
        mpc.run_local(_reveal, 3, args=([a, a], lambda u, v: u * v))  # 3 parties: split
        assert sorted(calls) == [0, 1, 2]


def _measured(ctx, size):
    shares = np.zeros(size, np.uint64)
    ticket = truncation.request(ctx, (size,), F)
    before = ctx.stats.snapshot(without=("dealer",))
    truncation.truncate_exact(ctx, shares, ticket, F, split=True)
    after = ctx.stats.snapshot(without=("dealer",))
    return after.bytes_sent - before.bytes_sent, after.rounds - before.rounds


@pytest.mark.parametrize("n", [2, 3])
def test_split_truncation_bytes_and_rounds_are_as_documented(n):
    size = 100_003
    bounds = [size * p // n for p in range(n + 1)]
    parts = [bounds[p + 1] - bounds[p] for p in range(n)]
    for pid, (sent, rounds) in enumerate(mpc.run_local(_measured, n, args=(size,))):
        # (n-1)/n * size ring elements (the other parties' parts), (n-1) * ceil(part/8) bytes
        want = 8 * (size - parts[pid]) + (n - 1) * ((parts[pid] + 7) // 8)
        assert sent == want and rounds == 2
    assert abs(want - 8 * (n - 1) / n * size - (n - 1) * size / n / 8) <= 8 * n


N = 20_000


def _view(ctx, secret):
    """What this party receives during a split truncation of secret * 1.5."""
    seen = {np.uint64: [], np.uint8: []}
    original = ctx.transport._wait

    def recording(frm, seq):
        got_op, array = original(frm, seq)
        if got_op.startswith("trunc"):
            seen[array.dtype.type].append(array.reshape(-1).copy())
        return got_op, array

    ctx.transport._wait = recording
    x = mpc.share(ctx, secret if ctx.pid == 0 else None, owner=0, shape=secret.shape)
    shares = x.share * np.uint64(3 << 15)  # 1.5 at 2f fractional bits (public product)
    ticket = truncation.request(ctx, shares.shape, F)
    truncation.truncate_exact(ctx, shares, ticket, F, split=True)
    return [np.concatenate(seen[t]) for t in (np.uint64, np.uint8)]


@pytest.mark.parametrize("n, party", [(2, 0), (2, 1), (3, 1)])
def test_split_truncation_view_independent_of_secret(n, party):
    small = np.zeros(N)
    large = np.random.default_rng(0).uniform(-1000, 1000, N)
    view_a = mpc.run_local(_view, n, args=(small,))[party]
    view_b = mpc.run_local(_view, n, args=(large,))[party]
    for a, b in zip(view_a, view_b):
        assert a.size == b.size > 0
    for a, b in [(view_a[0], view_b[0])] + [
            (np.unpackbits(view_a[1]).astype(np.uint64), np.unpackbits(view_b[1])
             .astype(np.uint64))]:
        fa, fb = bit_frequencies(a), bit_frequencies(b)
        if a is not view_a[0]:
            fa, fb = fa[:1], fb[:1]  # 0/1 values: only bit 0 is used
        sigma = np.sqrt(0.5 / a.size)
        assert np.all(np.abs(fa - 0.5) < 6 * sigma), "a received bit is biased"
        assert np.all(np.abs(fa - fb) < 6 * sigma), "received bits depend on the secret"


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("op, shapes, params", [
    ("mul", ((6,), (6,)), {}), ("mul", ((3, 1), (1, 4)), {}),
    ("matmul", ((3, 5), (5, 2)), {}),
    ("conv2d", ((2, 1, 5, 5), (3, 1, 3, 3)), {"stride": (1, 1), "padding": (1, 1)})])
def test_fused_item_makes_the_pair_of_q_minus_the_product(n, op, shapes, params):
    """The trunc-product item's shares: a, b, q and (t, m) with t, m the truncation pair
    of r = q - a o b - 2^62, m delivered modulo 2^f in a narrow dtype."""
    from mpc import kernels as K
    from mpc.prg import Prg
    from mpc.protocols.dealer import kernels as DK
    from mpc.protocols.dealer.correlations import ItemSpec, derive_item, recipe
    from mpc.protocols.dealer.providers.base import draw_shares, party_streams
    spec = ItemSpec("trunc-product", shapes, dict(params, op=op, frac_bits=F))
    rec = recipe(spec)
    prgs = [Prg(bytes([p + 1] * 16)) for p in range(n)]
    number = 7
    corrections = derive_item(spec, party_streams(prgs, number, spec))
    shares = [draw_shares(prg, number, spec, rec, p == number % n)
              for p, prg in enumerate(prgs)]
    free = [sum(s[0][i] for s in shares) for i in range(3)]
    derived = [corrections if s[1] is None else s[1] for s in shares]
    t = sum(d[0] for d in derived)
    m = sum(d[1].astype(np.uint64) for d in derived) & np.uint64((1 << F) - 1)
    assert derived[0][1].dtype == np.uint16
    a, b, q = free
    product = {"mul": lambda: a * b, "matmul": lambda: K.matmul(a, b),
               "conv2d": lambda: K.conv2d(a, b, (1, 1), (1, 1))}[op]()
    want_t, want_m = DK.trunc_pair_reference(q - product.reshape(-1) - np.uint64(1 << 62), F)
    assert np.array_equal(t, want_t) and np.array_equal(m, want_m)
