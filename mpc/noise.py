"""Differential-privacy noise on the fixed-point grid: a discrete Gaussian sampler driven by
the AES-CTR generator, and noisy openings built on it.

Why not numpy's (or any) floating-point Gaussian: a float sample x + noise has low bits
whose pattern depends on x, and Mironov (CCS 2012, "On significance of the least
significant bits for differential privacy") recovers x from them; float samplers also
draw from generators that are not cryptographic. Here the noise is an integer k (meaning
k * 2^-f), drawn by Canonne, Kamath and Steinke's rejection sampler (NeurIPS 2020, "The
Discrete Gaussian for Differential Privacy", Algorithms 1-3) from 128-bit OS seeds, and
added to a share in the ring: every integer is a possible output whatever x is, so there
are no low bits to leak. Its privacy is that of the continuous Gaussian of the same sigma
(CKS 2020, Thm. 4: rho = Delta^2 / (2 sigma^2) zero-concentrated DP for integer shifts).

Exactness: the discrete Laplace proposal (uniform integers by rejection, Bernoulli(e^-g)
for rational g by Algorithm 1) is exact integer arithmetic. Only the last acceptance test,
Bernoulli(exp(-(|y| - sigma^2/t)^2 / (2 sigma^2))), uses float64: a 53-bit uniform integer
is compared with the computed probability times 2^53, which errs by at most 2^-49 in
absolute terms (argument rounding, <= 4 ulp in exp, the 2^-53 grid). Coupling each test
with an exact one, the output's statistical distance from the discrete Gaussian is at
most 2^-49 times the expected number of tests (1 / acceptance, computed: <= 2.25 for sigma
in [0.05, 2^40], 1.32 for sigma >= 10): under 2^-47 = 7.1e-15 per sample. An
(eps, delta)-DP release of m samples is therefore (eps, delta + (1 + e^eps) m 2^-47)-DP
with this sampler.
"""

from __future__ import annotations

import math

import numpy as np

from mpc.prg import Prg, new_seed
from mpc.ring import DTYPE

MAX_SIGMA = float(2 ** 40)  # grid units; keeps every draw far inside int64 and float64's 2^53


class _Words:
    """Uniform uint64 words handed out from blocks of one generator (a fresh nonce per
    block), so the many small draws of the rejection loops cost one AES call each block."""

    BLOCK = 1 << 16

    def __init__(self, prg: Prg):
        self._prg, self._nonce = prg, 0
        self._block, self._used = np.empty(0, DTYPE), 0

    def __call__(self, count: int) -> np.ndarray:
        if self._used + count > self._block.size:
            self._nonce += 1
            self._block, self._used = self._prg.ring(self._nonce, max(count, self.BLOCK)), 0
        self._used += count
        return self._block[self._used - count:self._used]


def _uniform_below(words: _Words, m: np.ndarray) -> np.ndarray:
    """Exactly uniform integers in [0, m) (uint64, 0 < m < 2^63): r mod m for 64-bit r,
    redrawing the r below 2^64 mod m (probability < m / 2^64) so every residue is equally
    likely."""
    r = words(m.size).reshape(m.shape)
    out = r % m
    skip = np.negative(m) % m  # 2^64 mod m
    redo = np.flatnonzero(r < skip)
    while redo.size:
        r = words(redo.size)
        ok = r >= skip[redo]
        out[redo[ok]] = r[ok] % m[redo[ok]]
        redo = redo[~ok]
    return out


def _bernoulli_exp(words: _Words, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Exact Bernoulli(exp(-num/den)) for 0 <= num <= den (CKS Algorithm 1): draw
    Bernoulli(g/k) for k = 1, 2, ... until one fails; true iff it failed at an odd k."""
    shape, num, den = num.shape, num.reshape(-1), den.reshape(-1)
    k = np.ones(num.size, DTYPE)
    out = np.empty(num.size, bool)
    todo = np.arange(num.size)
    while todo.size:
        success = _uniform_below(words, den[todo] * k[todo]) < num[todo]
        stop = todo[~success]
        out[stop] = (k[stop] & np.uint64(1)) == 1
        todo = todo[success]
        k[todo] += np.uint64(1)
    return out.reshape(shape)


def _geometric_exp1(words: _Words, count: int, width: int = 4) -> np.ndarray:
    """Number of successes of Bernoulli(1/e) before the first failure (int64), drawn
    `width` trials at a time (all succeed with probability e^-4, and only then go on)."""
    v = np.zeros(count, np.int64)
    todo = np.arange(count)
    while todo.size:
        one = np.ones((todo.size, width), DTYPE)
        success = _bernoulli_exp(words, one, one)
        run = np.where(success.all(axis=1), width, np.argmin(success, axis=1))
        v[todo] += run
        todo = todo[run == width]
    return v


def _discrete_laplace(words: _Words, t: int, count: int) -> np.ndarray:
    """Exact discrete Laplace, P(y) proportional to exp(-|y|/t) (CKS Algorithm 2, s = 1):
    U uniform below t kept with probability e^(-U/t), plus t times a Geometric(1 - 1/e),
    with a random sign (rejecting -0)."""
    out = np.empty(count, np.int64)
    todo = np.arange(count)
    tt = np.full(count, t, DTYPE)
    while todo.size:
        u = _uniform_below(words, tt[:todo.size])
        kept = np.flatnonzero(_bernoulli_exp(words, u, tt[:todo.size]))
        x = u[kept].astype(np.int64) + t * _geometric_exp1(words, kept.size)
        negative = (words(kept.size) & np.uint64(1)) == 1
        ok = ~(negative & (x == 0))
        out[todo[kept[ok]]] = np.where(negative, -x, x)[ok]
        done = np.zeros(todo.size, bool)
        done[kept[ok]] = True
        todo = todo[~done]
    return out


def discrete_gaussian(sigma: float, shape, prg: Prg | None = None) -> np.ndarray:
    """int64 samples of the discrete Gaussian on the integers, P(k) ~ exp(-k^2 / (2 sigma^2)),
    sigma in grid units (0 <= sigma <= 2^40); a fresh OS seed unless `prg` is given (tests).

    CKS Algorithm 3: y from the discrete Laplace of scale t = floor(sigma) + 1, kept with
    probability exp(-(|y| - sigma^2/t)^2 / (2 sigma^2)). See the module docstring for the
    one float64 step and its bound (statistical distance < 2^-47 per sample).
    Example:
        noise = discrete_gaussian(1.5 * 2**16, (3, 4))   # std 1.5 in fixed point, f = 16
    """
    sigma = float(sigma)
    if not 0.0 <= sigma <= MAX_SIGMA:
        raise ValueError(f"sigma must be in [0, 2^40] grid units, got {sigma!r}")
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(shape)
    count = math.prod(shape)
    if sigma == 0.0:
        return np.zeros(shape, np.int64)
    words = _Words(prg if prg is not None else Prg(new_seed()))
    t = math.floor(sigma) + 1
    out = np.empty(count, np.int64)
    todo = np.arange(count)
    while todo.size:
        y = _discrete_laplace(words, t, todo.size)
        p = np.exp(-np.square(np.abs(y) - sigma * sigma / t) / (2 * sigma * sigma))
        keep = (words(todo.size) >> np.uint64(11)).astype(np.float64) < p * 2.0 ** 53
        out[todo[keep]] = y[keep]
        todo = todo[~keep]
    return out.reshape(shape)


def party_sigma(std: float, n_parties: int, colluders: int | None,
                max_colluders: int | None = None) -> float:
    """Each party's standard deviation so that the noise of the parties outside any
    coalition of `colluders` has variance std^2: std / sqrt(n - colluders). The default
    and the largest allowed is `max_colluders`, the largest coalition the protocol keeps
    secrets from (n - 1 by default; 1 for the replicated protocol, where two parties
    together see x itself and noise would protect nothing)."""
    top = n_parties - 1 if max_colluders is None else int(max_colluders)
    colluders = top if colluders is None else int(colluders)
    if not 1 <= colluders <= top:
        raise ValueError(f"colluders must be in 1..{top} (a party always knows its own "
                         f"noise; the protocol is secure against at most {top} colluding "
                         f"parties), got {colluders}")
    if not std >= 0:
        raise ValueError(f"noise std must be >= 0, got {std!r}")
    return std / math.sqrt(n_parties - colluders)


def add_noise(x, std: float, colluders: int | None = None):
    """[x + e]: every party adds its own discrete Gaussian (with the dealer protocol to its
    share, locally; see the protocol's add_private); e is never known to anyone as a
    whole, so opening [x + e] shows no party x.

    `std` (real units) is what any coalition of up to `colluders` parties cannot remove:
    each party adds std / sqrt(n - colluders), so the parties outside the coalition
    together contribute variance std^2 (CKS 2020 and Kairouz, Liu, Steinke ICML 2021:
    a sum of discrete Gaussians of >= 1 grid unit is, for privacy, a discrete Gaussian of
    the summed variance up to a negligible term). Utility cost, variance of e:
    n std^2 with the dealer protocol's default colluders = n - 1 (safe against all but one
    party), n / (n - c) std^2 for colluders = c; 1 is the least (n / (n - 1) std^2).
    The replicated protocol (3 servers, at most one corrupt) defaults to colluders = 1,
    its threat model: each server adds std / sqrt(2), the two honest ones together std^2
    whichever one is corrupt, and the total variance is 1.5 std^2 (a third of the dealer
    protocol's 3 std^2); colluders = 2 is refused (two servers see x anyway).
    Rounds and comm: the protocol's add_private (dealer: none; replicated: 1 round, each
    party's noise input to the others, one ring element per element to each).
    Example:
        noisy_mean = mpc.add_noise(x.mean(), std=0.1).reveal()
    """
    top = x.ctx.protocol.max_colluders(x.ctx.n_parties)
    sigma = party_sigma(std, x.ctx.n_parties, colluders, top) * x.ctx.fixed.scale
    noise = discrete_gaussian(sigma, x.shape).view(DTYPE)
    return type(x)(x.ctx, x.ctx.protocol.add_private(x.ctx, x.share, noise))
