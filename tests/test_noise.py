"""The discrete Gaussian sampler against its exact distribution, and noisy reveals: the
opened noise has the stated mean and variance, is a whole number of grid units, and each
party's share of it is its own."""

import math
import time

import numpy as np
import pytest
from scipy import stats

import mpc
from mpc.noise import _bernoulli_exp, _Words, discrete_gaussian, party_sigma
from mpc.prg import Prg

SEED = bytes(range(16))


def _exact_pmf(sigma, support):
    k = np.arange(-support, support + 1)
    w = np.exp(-k.astype(float) ** 2 / (2 * sigma ** 2))
    return k, w / w.sum()


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.5, 4.0, 12.7])
def test_sampler_matches_the_exact_pmf(sigma):
    """Chi-square goodness of fit over 2*10^5 draws (fixed seed), tails pooled."""
    n = 200_000
    got = discrete_gaussian(sigma, (n,), Prg(SEED))
    k, pmf = _exact_pmf(sigma, int(12 * sigma) + 2)
    counts = np.array([(got == v).sum() for v in k])
    assert counts.sum() == n  # nothing outside 12 sigma
    expected = n * pmf
    big = expected >= 20
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    assert stats.chisquare(obs[keep], exp[keep]).pvalue > 1e-4


@pytest.mark.parametrize("sigma", [2.0 ** 16, 2.0 ** 20, 3.3e7])
def test_large_sigma_moments(sigma):
    """Mean within 5 standard errors of 0, variance within 5 of sigma^2 (n = 10^5)."""
    n = 100_000
    got = discrete_gaussian(sigma, (n,), Prg(SEED)).astype(np.float64)
    assert abs(got.mean()) < 5 * sigma / math.sqrt(n)
    assert abs(got.var() / sigma ** 2 - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.kurtosis(got)) < 5 * math.sqrt(24 / n)  # Gaussian, not Laplace (3)


def test_fast_enough_for_dp_sgd():
    start = time.perf_counter()
    discrete_gaussian(2.0 ** 20, (100_000,))
    assert time.perf_counter() - start < 1.0


def test_seeded_is_reproducible_and_fresh_seeds_differ():
    a = discrete_gaussian(100.0, (1000,), Prg(SEED))
    np.testing.assert_array_equal(a, discrete_gaussian(100.0, (1000,), Prg(SEED)))
    assert not np.array_equal(discrete_gaussian(100.0, (1000,)),
                              discrete_gaussian(100.0, (1000,)))
    assert a.dtype == np.int64 and discrete_gaussian(0.0, (2, 3)).tolist() == [[0] * 3] * 2


@pytest.mark.parametrize("bad", [-1.0, float("nan"), 2.0 ** 41])
def test_bad_sigma_is_refused(bad):
    with pytest.raises(ValueError, match="sigma"):
        discrete_gaussian(bad, (3,))


@pytest.mark.parametrize("num,den", [(0, 1), (3, 10), (7, 7), (999_999, 1_000_000)])
def test_bernoulli_exp_frequency(num, den):
    n = 200_000
    hits = _bernoulli_exp(_Words(Prg(SEED)), np.full(n, num, np.uint64),
                          np.full(n, den, np.uint64)).mean()
    p = math.exp(-num / den)
    assert abs(hits - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12


def test_party_sigma_split_and_validation():
    assert party_sigma(2.0, 3, None) == 2.0  # default: n - 1 colluders, full noise each
    assert party_sigma(2.0, 5, 1) == pytest.approx(1.0)  # 4 outsiders of variance 1 each
    for bad in (0, 3):
        with pytest.raises(ValueError, match="colluders"):
            party_sigma(1.0, 3, bad)


REVEALS, SIZE = 40, 500


def _noisy_reveals(ctx, std, colluders):
    x = mpc.share(ctx, np.full(SIZE, 3.25) if ctx.pid == 0 else None, owner=0, shape=(SIZE,))
    opened = np.stack([x.reveal(noise=std, colluders=colluders) for _ in range(REVEALS)])
    mine = mpc.add_noise(x, std, colluders).share - x.share  # this party's own draw
    return opened, mine, mpc.reveal(x, to=0, noise=std)


@pytest.mark.parametrize("n,colluders", [(2, None), (3, None), (3, 1), (4, 2)])
def test_noisy_reveal_has_the_stated_distribution(n, colluders):
    """x + e with e a sum of the parties' discrete Gaussians: mean 0 and variance
    n std^2 / (n - colluders) within 6 standard errors over 2*10^4 openings; e is an
    integer multiple of 2^-16; every party opens the same value; shares of e differ."""
    std = 0.01
    results = mpc.run_local(_noisy_reveals, n, args=(std, colluders))
    opened = results[0][0]
    for other in results[1:]:
        np.testing.assert_array_equal(other[0], opened)
    noise = opened - 3.25
    grid = noise * 2 ** 16
    np.testing.assert_array_equal(grid, np.round(grid))
    c = n - 1 if colluders is None else colluders
    var = n * std ** 2 / (n - c)
    m = noise.size
    # 6 standard errors (8 asserts over the cases: a false failure below 2e-8 a run; 5
    # gave 5e-6); the variance is still checked to 6%
    assert abs(noise.mean()) < 6 * math.sqrt(var / m)
    assert abs(noise.var() / var - 1) < 6 * math.sqrt(2 / m)
    draws = [r[1] for r in results]
    assert all(not np.array_equal(draws[0], d) for d in draws[1:])
    assert results[0][2] is not None and all(r[2] is None for r in results[1:])


def _replicated_noise(ctx, std):
    """Each server's own draw (as add_noise makes it) and the opened x + e, 20 times."""
    from mpc.noise import party_sigma as sigma_of
    x = mpc.share(ctx, np.full(SIZE, 3.25) if ctx.pid == 0 else None, owner=0, shape=(SIZE,))
    sigma = sigma_of(std, 3, None, ctx.protocol.max_colluders(3)) * ctx.fixed.scale
    mine, opened = [], []
    for _ in range(20):
        draw = discrete_gaussian(sigma, (SIZE,))
        noisy = ctx.protocol.add_private(ctx, x.share, draw.view(np.uint64))
        mine.append(draw)
        opened.append(ctx.fixed.decode(ctx.open(noisy)))
    return np.stack(mine) / ctx.fixed.scale, np.stack(opened)


def test_replicated_noise_protects_against_any_one_corrupt_server():
    """Under the replicated protocol (one corrupt server at most) each server adds
    std / sqrt(2): whichever server is corrupt and subtracts its own draw, the other two
    leave variance std^2; the opened noise has variance 1.5 std^2; colluders=2 refused."""
    std = 0.01
    results = mpc.run_local(_replicated_noise, 3, args=(std,), protocol="replicated")
    opened = results[0][1]
    for r in results[1:]:
        np.testing.assert_array_equal(r[1], opened)
    noise = opened - 3.25
    m = noise.size
    assert abs(noise.var() / (1.5 * std ** 2) - 1) < 6 * math.sqrt(2 / m)  # as above
    np.testing.assert_allclose(noise, sum(r[0] for r in results), atol=1e-12)
    for corrupt in range(3):
        left = noise - results[corrupt][0]
        assert abs(left.var() / std ** 2 - 1) < 6 * math.sqrt(2 / m), corrupt
    reveal = mpc.run_local(lambda ctx: mpc.share(ctx, np.ones(3) if ctx.pid == 0 else None, 0,
                                                 shape=(3,)).reveal(noise=std), 3,
                           protocol="replicated")
    assert all(np.all(np.abs(r - 1) < 10 * std) for r in reveal)
    with pytest.raises(mpc.PartyFailed, match="at most 1 colluding"):
        mpc.run_local(lambda ctx: mpc.share_public(ctx, np.ones(3)).reveal(noise=std,
                                                                           colluders=2),
                      3, protocol="replicated")
