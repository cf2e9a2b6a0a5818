"""Input sharing, revealing to all or to one party (under every protocol, oracle.SETTINGS),
and the dealer protocol's exact communication counts (the replicated protocol's are in
test_replicated)."""

import numpy as np
import pytest

import mpc
from oracle import SETTINGS

WITH_FIVE = SETTINGS + [pytest.param(5, "dealer", id="dealer-5p")]


def _share_without_shape(ctx):
    x = mpc.share(ctx, np.arange(6.0).reshape(2, 3) if ctx.pid == 1 else None, owner=1)
    return x.shape, x.reveal()


@pytest.mark.parametrize("n, protocol", WITH_FIVE)
def test_share_broadcasts_shape_when_not_given(n, protocol):
    for shape, value in mpc.run_local(_share_without_shape, n, protocol=protocol):
        assert shape == (2, 3)
        np.testing.assert_array_equal(value, np.arange(6.0).reshape(2, 3))


def _reveal_to_one(ctx):
    x = mpc.share(ctx, np.array([1.5, -2.25]) if ctx.pid == 0 else None, owner=0, shape=(2,))
    return mpc.reveal(x, to=ctx.n_parties - 1)


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_reveal_to_one_party_only(n, protocol):
    results = mpc.run_local(_reveal_to_one, n, protocol=protocol)
    assert all(r is None for r in results[:-1])
    np.testing.assert_array_equal(results[-1], [1.5, -2.25])


def _share_bad(ctx, value):
    return mpc.share(ctx, value if ctx.pid == 0 else None, owner=0, shape=(2,))


@pytest.mark.parametrize("n, protocol", SETTINGS)
@pytest.mark.parametrize("bad", [[np.nan, 1.0], [np.inf, 0.0], [2.0**31, 0.0]])
def test_bad_input_is_refused_by_its_owner(n, protocol, bad):
    with pytest.raises(mpc.PartyFailed, match="party 0 failed") as info:
        mpc.run_local(_share_bad, n, args=(np.array(bad),), timeout=5, protocol=protocol)
    assert "ValueError" in info.value.detail


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_owner_shape_must_match_declared_shape(n, protocol):
    with pytest.raises(mpc.PartyFailed, match="declared shape is"):
        mpc.run_local(_share_bad, n, args=(np.zeros(3),), timeout=5, protocol=protocol)


def _count(ctx, n):
    x = mpc.share(ctx, np.ones(n) if ctx.pid == 0 else None, owner=0, shape=(n,))
    y = mpc.share(ctx, np.ones(n) if ctx.pid == 1 else None, owner=1, shape=(n,))
    counts = {}
    for name, op in [("share", None), ("mul", lambda: x * y), ("square", lambda: x.square()),
                     ("mul_public", lambda: x * 0.5), ("reveal", lambda: x.reveal())]:
        if op is None:
            continue
        before = ctx.stats.snapshot(without=("dealer",))
        op()
        after = ctx.stats.snapshot(without=("dealer",))
        counts[name] = (after.bytes_sent - before.bytes_sent, after.rounds - before.rounds)
    return counts


@pytest.mark.parametrize("parties", [2, 3])
def test_communication_matches_the_documented_costs(parties):
    """Party 0's payload bytes and rounds per op equal the table in the README
    (in-memory transport: payload only; n = 1000 is below the reduce-scatter size)."""
    n, peers = 1000, parties - 1
    counts = mpc.run_local(_count, parties, args=(n,))[0]
    assert counts["mul"] == (3 * n * 8 * peers, 2)
    assert counts["square"] == (2 * n * 8 * peers, 2)
    assert counts["mul_public"] == (n * 8 * peers, 1)
    assert counts["reveal"] == (n * 8 * peers, 1)


def test_large_openings_use_reduce_scatter_for_three_parties():
    n = 1 << 17
    counts = mpc.run_local(_count, 3, args=(n,))[0]
    # party 0 sends the other two slices (n - |slice 0|), then its summed slice to both
    # peers (2 |slice 0|): about 2 (n-1)/n = 4/3 of the tensor, in two rounds
    slice0 = int(np.linspace(0, n, 4).astype(np.int64)[1])
    assert counts["reveal"] == ((n + slice0) * 8, 2)


def _rows(ctx):
    counts = [3, 0, 2, 4, 1][:ctx.n_parties]
    mine = np.full((counts[ctx.pid], 2), float(ctx.pid)) if counts[ctx.pid] else None
    return mpc.share_rows(ctx, mine).reveal()


@pytest.mark.parametrize("n, protocol", WITH_FIVE)
def test_share_rows_unions_each_party_rows_in_order(n, protocol):
    counts = [3, 0, 2, 4, 1][:n]
    want = np.concatenate([np.full((c, 2), float(p)) for p, c in enumerate(counts)])
    for got in mpc.run_local(_rows, n, protocol=protocol):
        np.testing.assert_array_equal(got, want)


def _mul_costs(ctx, x, y):
    xs = mpc.share(ctx, x if ctx.pid == 0 else None, owner=0, shape=x.shape)
    ys = mpc.share(ctx, y if ctx.pid == 1 else None, owner=1, shape=y.shape)
    before = ctx.stats.snapshot(without=("dealer",))
    z = xs * ys
    after = ctx.stats.snapshot(without=("dealer",))
    return z.reveal(), after.bytes_sent - before.bytes_sent, after.rounds - before.rounds


@pytest.mark.parametrize("parties", [2, 3])
def test_large_products_go_in_batches(parties, monkeypatch):
    """Above MUL_CHUNK elements x * y runs in batches (here 3 of at most 1000 elements):
    the same result within the truncation's ulp, the same bytes, 2 rounds per batch."""
    monkeypatch.setattr("mpc.protocols.dealer.protocol.MUL_CHUNK", 1000)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-50, 50, (50, 50)), rng.uniform(-50, 50, (50, 50))
    z, sent, rounds = mpc.run_local(_mul_costs, parties, args=(x, y))[0]
    fixed = mpc.FixedPoint()
    exact = fixed.decode(fixed.encode(x)) * fixed.decode(fixed.encode(y))
    assert np.max(np.abs(z - exact)) < 2.0 ** -16
    assert (sent, rounds) == (3 * x.size * 8 * (parties - 1), 2 * 3)
