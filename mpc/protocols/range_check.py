"""Checked mode (Context(check=True), `mpc run --check`, on in mpc.run_local): every
truncation's result is verified, in batches, to lie where a correct truncation puts it.

Why: a truncation by b bits is exact only for inputs |x| < 2^62 (mpc.protocols.truncation).
For the usual b = f that is a product whose value is inside the fixed-point range,
|x * y| <= 2^(62 - 2f) (2^30 at f = 16), and a matmul sum likewise; beyond, the result is
garbage (40000 * 40000 gives -2.69e9, the true value minus 2^(64 - 2f)). A correct
result lies in [-T, T] with T = 2^(62 - b) units; a wrong one (that precondition broken,
or a failed local-probabilistic truncation) lies outside, so counting the results
outside [-T, T] finds every product or sum whose true value v has
2^(62 - 2f) < |v| < 3 * 2^(62 - 2f). Not found: a value that wrapped all the way round
the ring back into the range (|v| within 2^(62 - 2f) of a non-zero multiple of
2^(64 - 2f), so |v| >= 3 * 2^30 at f = 16); such a value usually breaks a later check.

Protocol check(ctx):
  1. After each truncation, its result's shares are queued (a copy) with T, the
     operation's label (the outermost `ctx.operation`) and the call site (the first
     frame outside mpc/).
  2. At the next reveal (before it opens anything: reveal, reveal_to, reveal_to_owner),
     when the context closes, and as soon as MAX_PENDING elements are queued, one batched
     comparison (the protocol's, exact) over every queued y finds y > T or y < -T:
     with the exact truncation, whose every output lies in (-3T, 3T), z = (y + T) 2^b
     (local) is in [0, 2^63) for y in [-T, T) and has its top bit set otherwise, so
     [z < 0] says it (y = T, a result within one unit of the range's top, is reported
     too); with the local-probabilistic one, whose failures are off by 4T,
     [T - y < 0] + [y + T < 0] (two comparisons per element).
  3. The bits are summed locally per (label, site) and the sums opened in one round.
  4. Any non-zero count raises FixedPointRangeError naming the label, the site, the count
     and the bound.
Leak: the counts of step 3, and nothing else: how many results of each operation at each
call site were out of range (all 0 in a healthy computation). That is what a user opts
into with check=True; keep it off where even that is too much.
Rounds: 9 per check of up to MAX_PENDING = 2^19 elements (8 for the comparison, 1 for the
counts); a larger queue compares in batches of 2^20 values, 8 rounds each.
Comm (dealer protocol): 39.625 bytes per checked element to each peer (one comparison;
79.25 with the local-probabilistic truncation) and 8 bytes per (label, site); the dealer
sends the corrected party 32 bytes per element (64). Other protocols: one comparison per
element, at their comparison's cost.
References: the comparison is the protocol's (mpc.protocols.dealer.compare, ...);
nn/guard.py does the same per epoch for a model's layer outputs and parameters, at a
tighter bound (2^15).
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from mpc.ring import DTYPE, signed

MAX_PENDING = 1 << 19  # queued elements that trigger a check (<= 2^20 comparisons)
_MPC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class FixedPointRangeError(ArithmeticError):
    """Checked mode found truncation results outside the range where they are exact;
    `counts` maps (label, site, bound) to the number of such elements."""

    def __init__(self, counts: dict, totals: dict, frac_bits: int):
        self.counts = counts
        parts = [f"{count} of {totals[key]} results of {label} at {site} outside "
                 f"+-{bound * 2.0 ** -frac_bits:g}"
                 for key, count in counts.items() for label, site, bound in [key]]
        super().__init__(
            "fixed-point range check failed: " + "; ".join(parts) + ". A product or a "
            "matrix-product sum beyond the range wraps around the ring and gives garbage: "
            "rescale the inputs (see the README on the fixed-point range)")


def record(ctx, ys: np.ndarray, bits: int) -> None:
    """Queue a truncation's result (this party's share of a flat y, in the protocol's
    layout, with `bits` removed) for the next check."""
    bound = 1 << (62 - bits)
    size = math.prod(ctx.protocol.shape(ys))
    ctx.range_pending.append((ctx.stats.current, _call_site(), bound, size,
                              np.array(ys, dtype=DTYPE)))
    ctx.range_pending_size += size
    if ctx.range_pending_size >= MAX_PENDING:
        check(ctx)


def check(ctx) -> None:
    """Steps 2-4 of the module docstring on everything queued (nothing if empty)."""
    pending, ctx.range_pending, ctx.range_pending_size = ctx.range_pending, [], 0
    if not pending:
        return
    protocol = ctx.protocol
    keys = list(dict.fromkeys(item[:3] for item in pending))
    sizes = [size for *_, size, _ in pending]
    group = np.repeat([keys.index(item[:3]) for item in pending], sizes)
    bounds = np.repeat(np.array([bound for _, _, bound, _, _ in pending], dtype=DTYPE), sizes)
    ys = protocol.local(lambda *parts: np.concatenate(parts), *[s for *_, s in pending])
    shifted = protocol.add_public(ctx, ys, bounds)  # y + T
    with ctx.stats.operation("range-check", apart=True):  # its own line in the stats
        if ctx.truncation == "exact":
            # (y + T) 2^b is in [0, 2^63) exactly when y is in [-T, T), and its top bit is
            # set for every other output of the exact truncation, all inside (-3T, 3T)
            factor = np.uint64(1 << 62) // bounds
            outside, _ = protocol.less_than_zero(
                ctx, protocol.local(lambda a: a * factor, shifted))
        else:  # a failed local truncation is off by 2^(64-b) = 4T: test both ends
            above = protocol.add_public(ctx, protocol.local(np.negative, ys), bounds)
            bits, _ = protocol.less_than_zero(
                ctx, protocol.local(lambda a, b: np.concatenate([a, b]), above, shifted))
            outside = protocol.local(lambda a: a[:bounds.size] + a[bounds.size:], bits)

        def per_group(a):
            sums = np.zeros(len(keys), dtype=DTYPE)
            np.add.at(sums, group, a)
            return sums
        counts = signed(protocol.open(ctx, protocol.local(per_group, outside), "range-check"))
    totals = dict(zip(keys, np.bincount(group, minlength=len(keys)).tolist()))
    found = {key: int(c) for key, c in zip(keys, counts) if c}
    if found:
        raise FixedPointRangeError(found, totals, ctx.fixed.frac_bits)


def _call_site() -> str:
    """file:line of the first caller outside the mpc package (where the user's code is)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_MPC_DIR):
        frame = frame.f_back
    if frame is None:
        return "mpc"
    folder, name = os.path.split(frame.f_code.co_filename)
    folder = os.path.basename(folder)
    return f"{folder}/{name}:{frame.f_lineno}" if folder else f"{name}:{frame.f_lineno}"
