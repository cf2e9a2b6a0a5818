"""The replicated comparison (mpc.protocols.replicated.compare) against numpy: [x < 0] and
x [x < 0] exact on random and edge values of the whole signed ring, in batches, with the
rounds and bytes its docstring states by role from the transport's own counters, and what
one party receives distributed the same for two different secrets.

The replicated shares of test inputs are made here from a known split x = x_0 + x_1 + x_2
(party i holds (x_i, x_{i+1})), independently of the protocol's own input sharing.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mpc
from mpc.protocols.replicated import compare

EDGES = np.array([0, 1, -1, 2**63 - 1, -2**63, 2**62, -2**62, 2**62 - 1, -2**62 - 1,
                  2**62 + 1, -2**62 + 1, 2**16, -2**16, 15, 16, -16, -17], dtype=np.int64)


def split(x: np.ndarray, rng) -> list[np.ndarray]:
    """Each party's replicated share (2, m) of the int64 values x."""
    comps = [rng.integers(0, 2**64, x.size, dtype=np.uint64, endpoint=False) for _ in range(2)]
    comps.append(x.astype(np.int64).view(np.uint64) - comps[0] - comps[1])
    return [np.stack([comps[i], comps[(i + 1) % 3]]) for i in range(3)]


def combine(shares: list[np.ndarray]) -> np.ndarray:
    """The value of replicated shares, after checking that each component is replicated."""
    for i in range(3):
        np.testing.assert_array_equal(shares[i][1], shares[(i + 1) % 3][0])
    return shares[0][0] + shares[1][0] + shares[2][0]


def _run(ctx, shares, select, chunk):
    before = ctx.stats.snapshot()
    bit, picked = compare.less_than_zero(ctx, shares[ctx.pid], select=select, chunk=chunk)
    after = ctx.stats.snapshot()
    return bit, picked, after.bytes_sent - before.bytes_sent, after.rounds - before.rounds


def run(x: np.ndarray, select: bool, chunk: int = compare.CHUNK, seed: int = 0):
    out = mpc.run_local(_run, 3, args=(split(x, np.random.default_rng(seed)), select, chunk))
    bit = combine([o[0] for o in out])
    picked = combine([o[1] for o in out]) if select else None
    return bit, picked, [o[2] for o in out], [o[3] for o in out]


def check(x: np.ndarray, select: bool, **kw):
    bit, picked, _, _ = run(x, select, **kw)
    negative = x < 0
    np.testing.assert_array_equal(bit, negative.astype(np.uint64))
    if select:
        np.testing.assert_array_equal(picked.view(np.int64), np.where(negative, x, 0))


@given(x=hnp.arrays(np.int64, st.integers(1, 300),
                    elements=st.one_of(st.integers(-2**63, 2**63 - 1),
                                       st.sampled_from(EDGES.tolist()),
                                       st.integers(-2**20, 2**20))),
       select=st.booleans(), seed=st.integers(0, 2**32))
def test_exact_on_random_values(x, select, seed):
    check(x, select, seed=seed)


def test_exact_at_the_edges():
    x = np.concatenate([EDGES + d for d in (0, 1, -1)])  # int64 wraps at the extremes
    check(x, True)
    check(x, False)


def test_every_bit_position_decides():
    """Values that differ from the 2^63 boundary in one low bit each, both signs."""
    powers = np.left_shift(np.int64(1), np.arange(63, dtype=np.int64))
    x = np.concatenate([powers, -powers, np.int64(2**63 - 1) - powers, powers + np.int64(-2**63)])
    check(x, True)


@pytest.fixture(params=["7-round", "4-round"])
def variant(request, monkeypatch):
    """Both variants whatever the size: the 7-round one forced for small batches too."""
    if request.param == "7-round":
        monkeypatch.setattr(compare, "FEW_ROUNDS_BELOW", 0)
    return request.param


def test_batches_equal_one_batch(variant):
    """3 batches of at most 384 elements: the same results, 7 (or 4) rounds each, the same
    bytes from every party (each plays each role on a third of each batch)."""
    x = np.random.default_rng(3).integers(-2**63, 2**63, 3 * 384, dtype=np.int64)
    bit, picked, sent, rounds = run(x, True, chunk=384)
    np.testing.assert_array_equal(bit, (x < 0).astype(np.uint64))
    np.testing.assert_array_equal(picked.view(np.int64), np.where(x < 0, x, 0))
    assert rounds == ([21] * 3 if variant == "7-round" else [12] * 3)
    assert sent == [(31.625 if variant == "7-round" else 156.25) * x.size] * 3


@pytest.mark.parametrize("select", [False, True])
def test_rounds_and_bytes_match_the_docstring(select, variant):
    """7 rounds: each party is the helper of a third (43.625 bytes per element to b, 8 more
    with select) and a or b of the others (13.625 each, 8 more with select). 4 rounds:
    235 bytes to b (427 with select), 12.875 from a and from b (20.875)."""
    m = 1920  # a multiple of 192: each third a whole number of 64-bit words
    _, _, sent, rounds = run(np.arange(-m // 2, m // 2, dtype=np.int64), select)
    if variant == "7-round":
        per_third = 43.625 + 2 * 13.625 + (3 * 8 if select else 0)
        assert rounds == [7, 7, 7]
        assert sent == [per_third * m / 3] * 3 == [(253 if select else 189) * m / 8] * 3
    else:
        per_third = (427 + 2 * 20.875) if select else (235 + 2 * 12.875)
        assert rounds == [4, 4, 4]
        assert sent == [per_third * m / 3] * 3  # 156.25 and 86.92 bytes per element


@pytest.mark.parametrize("m", [100, 5000])
def test_additive_parts_add_up_one_round_sooner(m):
    """With additive: (m,) parts of the three parties that add up to [x < 0] and
    x [x < 0], in 3 rounds (4-round variant) or 6."""
    x = np.random.default_rng(m).integers(-2**63, 2**63, m, dtype=np.int64)
    shares = split(x, np.random.default_rng(1))

    def additive(ctx):
        before = ctx.stats.snapshot()
        out = compare.less_than_zero(ctx, shares[ctx.pid], select=True, additive=True)
        return out, ctx.stats.snapshot().rounds - before.rounds

    out = mpc.run_local(additive, 3)
    bit = sum(o[0][0] for o in out)
    picked = sum(o[0][1] for o in out)
    np.testing.assert_array_equal(bit, (x < 0).astype(np.uint64))
    np.testing.assert_array_equal(picked.view(np.int64), np.where(x < 0, x, 0))
    assert max(o[1] for o in out) == (3 if m < compare.FEW_ROUNDS_BELOW else 6)


def test_batch_size_picks_the_variant():
    """4 rounds below FEW_ROUNDS_BELOW elements, 7 from it on."""
    for m, want in [(compare.FEW_ROUNDS_BELOW - 1, 4), (compare.FEW_ROUNDS_BELOW, 7)]:
        x = np.random.default_rng(m).integers(-2**63, 2**63, m, dtype=np.int64)
        bit, picked, _, rounds = run(x, True)
        np.testing.assert_array_equal(bit, (x < 0).astype(np.uint64))
        np.testing.assert_array_equal(picked.view(np.int64), np.where(x < 0, x, 0))
        assert max(rounds) == want


def test_small_and_uneven_sizes(variant):
    """Fewer elements than three words, and sizes that are not a multiple of 64."""
    for m in (1, 2, 63, 64, 65, 130, 191, 193):
        x = np.random.default_rng(m).integers(-2**63, 2**63, m, dtype=np.int64)
        check(x, True)
        check(x, False)


def test_exact_at_the_edges_in_7_rounds(monkeypatch):
    monkeypatch.setattr(compare, "FEW_ROUNDS_BELOW", 0)
    test_exact_at_the_edges()
    test_every_bit_position_decides()


def test_refuses_other_party_counts_and_shapes():
    def two(ctx):
        compare.less_than_zero(ctx, np.zeros((2, 4), np.uint64))
    with pytest.raises(mpc.harness.PartyFailed, match="needs 3 parties, got 2"):
        mpc.run_local(two, 2)

    def flat(ctx):
        compare.less_than_zero(ctx, np.zeros(4, np.uint64))
    with pytest.raises(mpc.harness.PartyFailed, match=r"shape \(2, m\).*got shape \(4,\)"):
        mpc.run_local(flat, 3)

    def signed(ctx):
        compare.less_than_zero(ctx, np.zeros((2, 4), np.int64))
    with pytest.raises(mpc.harness.PartyFailed, match="dtype int64"):
        mpc.run_local(signed, 3)


def _received(ctx, shares, chunk):
    seen = []
    original = ctx.transport._wait

    def recording(frm, seq):
        got_op, array = original(frm, seq)
        seen.append(array.reshape(-1).copy())
        return got_op, array

    ctx.transport._wait = recording
    compare.less_than_zero(ctx, shares[ctx.pid], select=True, chunk=chunk)
    return np.concatenate(seen)


def bit_frequencies(values):
    return ((values[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).mean(axis=0)


@pytest.mark.parametrize("pid", [0, 1, 2])
@pytest.mark.parametrize("n, chunk", [(2 * 9600, 9600), (4 * 3840, 3840)],
                         ids=["7-round", "4-round"])
def test_view_independent_of_secret(pid, n, chunk):
    """Everything party `pid` receives (as helper, a and b, each on a third of each batch,
    over two batches): every bit of every received word is set half the time, whatever the
    secret (all zeros, or large values of both signs)."""
    rng = np.random.default_rng(11)
    secrets = [np.zeros(n, np.int64), rng.integers(-2**62, 2**62, n, dtype=np.int64)]
    views = [mpc.run_local(_received, 3, args=(split(x, rng), chunk))[pid] for x in secrets]
    assert views[0].size == views[1].size > 0
    fa, fb = bit_frequencies(views[0]), bit_frequencies(views[1])
    sigma = np.sqrt(0.5 / views[0].size)
    assert np.all(np.abs(fa - 0.5) < 6 * sigma), "a received bit is biased"
    assert np.all(np.abs(fa - fb) < 6 * sigma), "received bits depend on the secret"
