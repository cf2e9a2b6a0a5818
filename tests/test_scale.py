"""Scale: 8 parties over real processes (ZeroMQ, CURVE) compute as correctly as 2, and
`mpc bench --scale` prints one JSON line per point with time, bytes and peak memory."""

import json
import subprocess
import sys

import numpy as np

import mpc
from mpc.launcher import run_processes

SIZE = 70_000  # above mpc.protocols.dealer.opening.LARGE_OPEN: the openings go by reduce-scatter


def _inputs():
    rng = np.random.default_rng(8)
    return rng.uniform(-100, 100, SIZE), rng.uniform(-100, 100, SIZE)


def mul_and_compare(ctx):
    x, y = _inputs()
    last = ctx.n_parties - 1
    xs = mpc.share(ctx, x if ctx.pid == 0 else None, owner=0, shape=x.shape)
    ys = mpc.share(ctx, y if ctx.pid == last else None, owner=last, shape=y.shape)
    return (xs * ys).reveal(), (xs < ys).reveal()


def test_eight_parties_multiply_and_compare_like_numpy():
    results = run_processes(mul_and_compare, 8, timeout=60)
    fixed = mpc.FixedPoint()
    x, y = (fixed.decode(fixed.encode(v)) for v in _inputs())
    assert len(results) == 8
    for product, less in results:
        assert np.max(np.abs(product - x * y)) < 2.0 ** -16
        np.testing.assert_array_equal(less, (x < y).astype(float))


def test_bench_scale_prints_a_line_per_point():
    out = subprocess.run([sys.executable, "-m", "mpc", "bench", "--scale", "--workload", "W7",
                          "--sizes", "2000", "--party-counts", "3", "--reps", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    (line,) = [json.loads(text) for text in out.stdout.splitlines()]
    assert (line["workload"], line["parties"], line["elements"]) == ("W7", 3, 2000)
    assert line["correct"] and line["rounds"] == 8
    assert line["peak_mb_max_party"] > 100 and line["peak_mb_dealer"] > 50
