"""Review of the exact truncation's split opening (mpc.protocols.dealer.truncation, `split`):

- the carry / top-bit logic at the edges, with masks r chosen where the carry into bit 63
  flips (random masks essentially never land there), on the kernels the protocol runs,
  against the exact contract y = floor(x / 2^f) + b, b = [(c mod 2^f) < (r mod 2^f)];
- what a party receives: its own part of c and the top bits of the other parts, all of
  them values the unsplit opening reveals to everyone (c itself), nothing else;
- bytes and rounds against the docstrings, and the thresholds against the opening's.
"""

import contextlib

import numpy as np
import pytest

import mpc
from mpc import kernels
from mpc.protocols.dealer import opening, truncation
from mpc.protocols.dealer.kernels import trunc_pair
from oracle import split_shares

F = 16
U64 = np.uint64
OFFSET = 1 << truncation.OFFSET_BITS
LOW63 = (1 << 63) - 1


def edge_cases():
    """(x, r) pairs: x at the edges of |x| < 2^62, r placing x' + (r mod 2^63) on both
    sides of 2^63 (the carry) and of multiples of 2^f (the rounding bit), with m = 0, 1."""
    xs = [0, 1, -1, 2**F - 1, 2**F, -(2**F), -(2**F) + 1, 2**61, -2**61,
          2**62 - 1, -(2**62 - 1), -2**62, 2**62 - 2**F, -(2**62) + 2**F]
    pairs = []
    for x in xs:
        xp = x + OFFSET   # in [0, 2^63)
        lows = {0, 1, 2**F - 1, 2**F, LOW63, LOW63 - 2**F + 1, (1 << 63) - xp,
                (1 << 63) - xp - 1, (1 << 63) - xp + 1, (1 << 63) - xp - 2**F,
                ((1 << 63) - xp) & ~(2**F - 1)}
        for low in lows:
            for m in (0, 1):
                pairs.append((x, (m << 63) | (low & LOW63)))
    return pairs


def dealt(r: np.ndarray, n: int, rng):
    """Each party's shares of (r, t, m) as the dealer makes them: r and t uniform mod
    2^64, m uniform mod 2^f (it is used times 2^(64-f) only)."""
    t, m = trunc_pair(r, F)

    def shares(value, bits):
        mask = U64((1 << bits) - 1) if bits < 64 else U64(2**64 - 1)
        parts = [rng.integers(0, 2**64, value.size, dtype=U64) & mask for _ in range(n - 1)]
        last = value - sum(parts, np.zeros_like(value))
        return parts + [last & mask]
    return shares(r, 64), shares(t, 64), shares(m, F)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_split_finish_is_exact_at_the_carry_and_rounding_edges(n):
    pairs = edge_cases()
    x = np.array([p[0] for p in pairs], dtype=np.int64).view(U64)
    r = np.array([p[1] for p in pairs], dtype=U64)
    rng = np.random.default_rng(1)
    r_sh, t_sh, m_sh = dealt(r, n, rng)
    x_sh = split_shares(x, n, "dealer", rng)
    masked = [x_sh[p] + r_sh[p] + (U64(OFFSET) if p == 0 else U64(0)) for p in range(n)]
    c = sum(masked, np.zeros_like(x))
    bounds = opening.part_bounds(x.size, n)
    y = np.zeros_like(x)
    for owner in range(n):   # part `owner` of c: its owner finishes it, the others use bits
        part = slice(bounds[owner], bounds[owner + 1])
        bits = kernels.top_bits_packed(c[part])
        for p in range(n):
            if p == owner:
                y[part] += kernels.trunc_finish(c[part], t_sh[p][part], m_sh[p][part], F, True)
            else:
                y[part] += kernels.trunc_finish_bits(bits, t_sh[p][part], m_sh[p][part], F)
    unsplit = sum((kernels.trunc_finish(c, t_sh[p], m_sh[p], F, p == 0) for p in range(n)),
                  np.zeros_like(x))
    b = ((c & U64(2**F - 1)) < (r & U64(2**F - 1))).astype(np.int64)
    want = (x.view(np.int64) >> F) + b
    np.testing.assert_array_equal(y.view(np.int64), want)
    np.testing.assert_array_equal(unsplit.view(np.int64), want)


@contextlib.contextmanager
def recording():
    """Record, per party, the c part reduce_scatter gave it and the top bits it got."""
    parts, bits = {}, {}
    original = opening.reduce_scatter

    def scatter(ctx, flat, op):
        bounds, summed = original(ctx, flat, op)
        parts[ctx.pid] = (bounds, summed.copy())
        return bounds, summed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(opening, "reduce_scatter", scatter)
        yield parts, bits


def _split_with_view(ctx, size, bits):
    original = ctx.transport._wait

    def wait(frm, seq):
        op, array = original(frm, seq)
        if op == "trunc:top":
            bits[ctx.pid, frm] = array.copy()
        return op, array

    ctx.transport._wait = wait
    x = np.random.default_rng(ctx.pid).integers(-2**40, 2**40, size).astype(np.int64)
    ticket = truncation.request(ctx, (size,), F)
    truncation.truncate_exact(ctx, x.view(U64), ticket, F, split=True)


@pytest.mark.parametrize("n, size", [(2, 1001), (3, 7), (3, 1000), (5, 23)])
def test_the_top_bits_a_party_receives_are_those_of_the_senders_part_of_c(n, size):
    """The only values a party learns beyond its own part of c are bits of c: a subset
    of what the unsplit opening reveals (all of c). The bits are not masked, and need
    not be: c = x + 2^62 + r is uniform."""
    with recording() as (parts, bits):
        mpc.run_local(_split_with_view, n, args=(size, bits), check=False)
    for (me, frm), got in bits.items():
        bounds, c_part = parts[frm]
        assert c_part.size == bounds[frm + 1] - bounds[frm]
        np.testing.assert_array_equal(got, kernels.top_bits_packed(c_part))
    assert len(bits) == n * (n - 1)


def _cost(ctx, size, split):
    ticket = truncation.request(ctx, (size,), F)
    before = ctx.stats.snapshot(without=("dealer",))
    truncation.truncate_exact(ctx, np.zeros(size, U64), ticket, F, split=split)
    after = ctx.stats.snapshot(without=("dealer",))
    return after.bytes_sent - before.bytes_sent, after.rounds - before.rounds


@pytest.mark.parametrize("n, size", [(2, 13), (3, 13), (5, 100_003), (3, 1 << 16)])
def test_split_bytes_and_rounds_are_as_documented_and_below_the_plain_opening(n, size):
    bounds = opening.part_bounds(size, n)
    for pid, ((sent, rounds), (plain_sent, plain_rounds)) in enumerate(zip(
            mpc.run_local(_cost, n, args=(size, True), check=False),
            mpc.run_local(_cost, n, args=(size, False), check=False))):
        mine = bounds[pid + 1] - bounds[pid]
        assert (sent, rounds) == (8 * (size - mine) + (n - 1) * ((mine + 7) // 8), 2)
        large = n >= 3 and size >= opening.LARGE_OPEN   # open_sum's reduce-scatter
        want_plain = 8 * (size - mine) + 8 * (n - 1) * mine if large else 8 * (n - 1) * size
        assert (plain_sent, plain_rounds) == (want_plain, 2 if large else 1)
        assert sent <= plain_sent


def test_thresholds_agree_with_the_opening():
    """n >= 3 splits exactly where open_sum would take 2 rounds anyway (no round added)."""
    assert truncation.SPLIT_MIN == opening.LARGE_OPEN
    assert truncation.SPLIT_MIN <= truncation.SPLIT_ALWAYS
