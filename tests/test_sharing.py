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


def _share_declaring(ctx, declared):
    """Party 0 owns a (3,) vector; party p declares declared[p] (None: no shape)."""
    try:
        x = mpc.share(ctx, np.ones(3) if ctx.pid == 0 else None, owner=0,
                      shape=declared[ctx.pid])
        return "ok", x.sum().reveal()
    except mpc.ShapeError as exc:
        return "ShapeError", str(exc)


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_every_party_refuses_a_declared_shape_that_differs_from_the_owners(n, protocol):
    """Party 1 declares (4,) for party 0's (3,) vector: every party raises the same
    ShapeError naming both parties and both shapes (before: garbage, exit 0)."""
    declared = [(3,), (4,), (3,)][:n]
    results = mpc.run_local(_share_declaring, n, args=(declared,), timeout=10,
                            protocol=protocol)
    assert len(set(results)) == 1, results
    kind, message = results[0]
    assert kind == "ShapeError"
    assert "party 0's value has shape (3,)" in message and "party 1 declared shape (4,)" \
        in message


def test_owner_shape_must_match_its_own_declared_shape():
    results = mpc.run_local(_share_declaring, 3, args=([(2,), None, None],), timeout=10)
    assert results == [("ShapeError", "share: party 0's value has shape (3,), but it "
                                      "declared shape (2,)")] * 3


def test_declared_shapes_that_agree_cost_one_small_round():
    def fn(ctx):
        before = ctx.stats.snapshot(without=("dealer",))
        x = mpc.share(ctx, np.ones((2, 3)) if ctx.pid == 0 else None, owner=0,
                      shape=None if ctx.pid == 2 else (2, 3))
        after = ctx.stats.snapshot(without=("dealer",))
        return x.reveal(), after.rounds - before.rounds, after.bytes_sent - before.bytes_sent
    for pid, (value, rounds, sent) in enumerate(mpc.run_local(fn, 3)):
        np.testing.assert_array_equal(value, np.ones((2, 3)))
        held = 3 if pid == 0 else 1       # [2, 2, 3] or [-1]
        said = 1 if pid == 2 else 3       # [-1] or [2, 2, 3]
        assert (rounds, sent) == (1, 8 * (held + said + 2) * 2)  # + the owner's id


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
    counts = mpc.run_local(_count, parties, args=(n,), check=False)[0]  # the ops' own costs
    assert counts["mul"] == (3 * n * 8 * peers, 2)
    assert counts["square"] == (2 * n * 8 * peers, 2)
    assert counts["mul_public"] == (n * 8 * peers, 1)
    assert counts["reveal"] == (n * 8 * peers, 1)


def test_large_openings_use_reduce_scatter_for_three_parties():
    n = 1 << 17
    counts = mpc.run_local(_count, 3, args=(n,), check=False)[0]
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


def _rows_of(ctx, blocks):
    try:
        before = ctx.stats.snapshot(without=("dealer",))
        x = mpc.share_rows(ctx, blocks[ctx.pid])
        return "ok", ctx.stats.snapshot(without=("dealer",)).rounds - before.rounds, \
            x.reveal().tolist()
    except (mpc.ShapeError, ValueError) as exc:
        return type(exc).__name__, str(exc)


def test_share_rows_takes_one_round_for_every_party():
    blocks = [np.ones((2, 2)), None, np.zeros((1, 2))]
    results = mpc.run_local(_rows_of, 3, args=(blocks,))
    assert results == [("ok", 1, [[1, 1], [1, 1], [0, 0]])] * 3


@pytest.mark.parametrize("blocks, message", [
    ([np.ones((2, 2)), np.ones((1, 3)), None],
     "share_rows: party 1's block has shape (1, 3), party 0's (2, 2): only axis 0 may differ"),
    ([np.ones((2, 2)), None, np.float64(1.0)],
     "share_rows: party 2's block has shape (); it needs an axis 0 to join along"),
    ([None, None, None], "share_rows: no party contributed anything")])
def test_share_rows_misfits_are_refused_by_every_party_alike(blocks, message):
    results = mpc.run_local(_rows_of, 3, args=(blocks,), timeout=10)
    assert len(set(results)) == 1 and results[0][1] == message, results


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


def _share_as_own(ctx):
    try:
        mpc.share(ctx, np.full(3, ctx.pid + 1.0), owner=ctx.pid, shape=(3,))
        return "ok"
    except mpc.ShapeError as exc:
        return str(exc)


@pytest.mark.parametrize("n, protocol", SETTINGS)
def test_parties_naming_different_owners_are_refused(n, protocol):
    """Every party passing owner=ctx.pid (a mix-up with share_rows) gave garbage, exit 0."""
    for pid, message in enumerate(mpc.run_local(_share_as_own, n, protocol=protocol,
                                                timeout=10)):
        assert f"party {pid} shares party {pid}'s value, but party" in message, message
