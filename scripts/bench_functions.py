"""Seconds, rounds, bytes per element and measured error of every comparison and
non-linear function, each party in its own process over ZeroMQ (CURVE on).

    .venv/bin/python scripts/bench_functions.py --parties 2 --size 100000

One JSON line per function. Inputs span the function's stated domain; the error is
against float64 numpy on the same fixed-point inputs.
"""

import argparse
import json
import time

import numpy as np

import mpc
from mpc.launcher import run_processes

DOMAINS = {
    "compare": (lambda n: np.linspace(-100, 100, n), lambda x: x < 0.5,
                lambda v: (v < 0.5).astype(float)),
    "relu": (lambda n: np.linspace(-100, 100, n), lambda x: x.relu(), lambda v: np.maximum(v, 0)),
    "reciprocal": (lambda n: np.geomspace(2**-10, 2**15 - 1, n), mpc.reciprocal, lambda v: 1 / v),
    "exp": (lambda n: np.linspace(-64, 20, n), mpc.exp, np.exp),
    "exp_nonpositive": (lambda n: np.linspace(-64, 0, n), mpc.exp_nonpositive, np.exp),
    "sigmoid": (lambda n: np.linspace(-50, 50, n), mpc.sigmoid,
                lambda v: 0.5 + 0.5 * np.tanh(v / 2)),
    "tanh": (lambda n: np.linspace(-20, 20, n), mpc.tanh, np.tanh),
    "sqrt": (lambda n: np.geomspace(4.0**-5, 4.0**8 - 1, n), mpc.sqrt, np.sqrt),
    "inv_sqrt": (lambda n: np.geomspace(4.0**-5, 4.0**8 - 1, n), mpc.inv_sqrt,
                 lambda v: 1 / np.sqrt(v)),
    "log": (lambda n: np.geomspace(2**-10, 2**15 - 1, n), mpc.log, np.log),
    "softmax10": (lambda n: np.random.default_rng(0).normal(0, 4, (n // 10, 10)),
                  lambda x: mpc.softmax(x, axis=1),
                  lambda v: np.exp(v - v.max(1, keepdims=True))
                  / np.exp(v - v.max(1, keepdims=True)).sum(1, keepdims=True)),
}


def _party(ctx, name, size):
    make, op, reference = DOMAINS[name]
    values = make(size)
    x = mpc.share(ctx, values if ctx.pid == 0 else None, 0, shape=values.shape)
    op(x)  # warm-up (numba, caches)
    before = ctx.stats.snapshot(without=("dealer",))
    start = time.perf_counter()
    out = op(x)
    seconds = time.perf_counter() - start
    after = ctx.stats.snapshot(without=("dealer",))
    got = out.reveal()
    want = reference(ctx.fixed.decode(ctx.fixed.encode(values)))
    err = np.abs(got - want)
    large = np.abs(want) > 0.01
    return {"function": name, "parties": ctx.n_parties, "elements": int(values.size),
            "seconds": round(seconds, 4), "rounds": after.rounds - before.rounds,
            "bytes_per_element_party0": round((after.bytes_sent - before.bytes_sent)
                                              / values.size, 2),
            "max_abs_err": float(err.max()),
            "max_rel_err_where_abs_over_0.01": float(np.max(err[large] / np.abs(want[large]),
                                                            initial=0.0))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parties", type=int, default=2)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--only", default=",".join(DOMAINS))
    args = parser.parse_args()
    for name in args.only.split(","):
        print(json.dumps(run_processes(_party, args.parties, args=(name, args.size))[0]),
              flush=True)


if __name__ == "__main__":
    main()
