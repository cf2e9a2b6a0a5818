"""Secret Bernoulli bits under the replicated protocol (mpc.protocols.replicated.bernoulli):
[v ^ w > c] exact against numpy for chosen v and w, the frequency against p through
mpc.bernoulli, p = 0 and 1, rounds and bytes, and each party's view the same whatever the
sample."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mpc
from mpc.protocols.replicated import bernoulli, compare
from test_replicated_compare import bit_frequencies, combine

LOW63 = (1 << 63) - 1


class ChosenCoin(bernoulli.Coin):
    """The coin with v and w given (not drawn), so that the sample is known."""

    def __init__(self, c, v, w):
        super().__init__(c)
        self.v, self.w = v, w

    def helper(self, ctx, part, nonce, h):
        return self.v[part], None, None

    def computer(self, ctx, part, nonce, h, first):
        n = part.stop - part.start
        return np.full(n, self.c, dtype=np.uint64), self.w[part], None, None, None


def _chosen(ctx, coin, n, few=None):
    before = ctx.stats.snapshot()
    bits = compare.run_batch(ctx, coin, n, False, few=few)[0]
    after = ctx.stats.snapshot()
    return bits, after.rounds - before.rounds, after.bytes_sent - before.bytes_sent


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400),
       c=st.one_of(st.integers(0, LOW63), st.sampled_from([0, 1, LOW63 - 1, LOW63])))
def test_coin_compares_v_xor_w_with_c(seed, n, c):
    rng = np.random.default_rng(seed)
    v, w = (rng.integers(0, 2**63, n, dtype=np.uint64) for _ in range(2))
    edges = np.array([c, max(c - 1, 0), min(c + 1, LOW63), 0], dtype=np.uint64)[:n]
    v[:edges.size] = edges ^ w[:edges.size]
    out = mpc.run_local(_chosen, 3, args=(ChosenCoin(c, v, w), n), protocol="replicated")
    np.testing.assert_array_equal(combine([o[0] for o in out]),
                                  ((v ^ w) > np.uint64(c)).astype(np.uint64))


def test_rounds_and_bytes():
    """7 rounds, 23.625 bytes per element from every party (n a multiple of 192): the
    comparison's 7-round variant, which bernoulli_bits takes at every size."""
    n = 1920
    rng = np.random.default_rng(1)
    v, w = (rng.integers(0, 2**63, n, dtype=np.uint64) for _ in range(2))
    out = mpc.run_local(_chosen, 3, args=(ChosenCoin(12345, v, w), n, False),
                        protocol="replicated")
    assert [(o[1], o[2]) for o in out] == [(7, 23.625 * n)] * 3


def _draw(ctx, n, p):
    return mpc.bernoulli(ctx, (n,), p).reveal()


@pytest.mark.parametrize("p", [0.1, 0.37, 0.999])
def test_frequency_is_p(p):
    n = 20_000
    bits = mpc.run_local(_draw, 3, args=(n, p), protocol="replicated")[0]
    assert set(np.unique(bits)) <= {0.0, 1.0}
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(bits.mean() - p) < 5 * sigma
    both = (bits[:-1] * bits[1:]).mean()  # independent neighbours: p^2
    assert abs(both - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / (n - 1))


def test_public_probabilities_and_scaled_values():
    assert mpc.run_local(_draw, 3, args=(50, 0.0), protocol="replicated")[0].sum() == 0
    assert mpc.run_local(_draw, 3, args=(50, 1.0), protocol="replicated")[0].sum() == 50
    got = mpc.run_local(lambda ctx: mpc.bernoulli(ctx, (4, 5), 1.0, value=2.5).reveal(), 3,
                        protocol="replicated")[0]
    np.testing.assert_array_equal(got, np.full((4, 5), 2.5))


def _view(ctx, coin, n):
    seen = []
    original = ctx.transport._wait

    def recording(frm, seq):
        op, array = original(frm, seq)
        seen.append(array.reshape(-1).copy())
        return op, array
    ctx.transport._wait = recording
    bits = compare.run_batch(ctx, coin, n, False)[0]
    ctx.transport._wait = original
    return np.concatenate(seen), bits


@pytest.mark.parametrize("pid", [0, 1, 2])
def test_view_same_for_every_or_no_element_sampled(pid):
    n = 19_200
    c = LOW63 // 2
    rng = np.random.default_rng(4)
    views = []
    for u in (np.full(n, c + 1, np.uint64), np.full(n, c - 5, np.uint64)):
        w = rng.integers(0, 2**63, n, dtype=np.uint64)
        out = mpc.run_local(_view, 3, args=(ChosenCoin(c, u ^ w, w), n), protocol="replicated")
        assert combine([o[1] for o in out]).sum() == (n if u[0] > c else 0)
        views.append(out[pid][0])
    assert views[0].size == views[1].size > 0
    fa, fb = bit_frequencies(views[0]), bit_frequencies(views[1])
    sigma = np.sqrt(0.5 / views[0].size)
    assert np.all(np.abs(fa - 0.5) < 6 * sigma), "a received bit is biased"
    assert np.all(np.abs(fa - fb) < 6 * sigma), "received bits depend on the sample"
