"""One benchmark workload as a party script, for runs over emulated links (scripts/wan.sh).

    mpc party --config cluster-0.toml --id 0 scripts/wan_party.py W1 REPS WARMUP

Workloads are bench/workloads.py's (W4 is one SGD step per repetition), plus "ping": opening one
element, i.e. one round and nothing else. Party 0 prints one JSON line: median seconds
and party 0's bytes sent and received and rounds in one repetition.
"""

import json
import statistics
import sys
import time

import numpy as np

import mpc
from bench.workloads import _party, _w4_party


def _ping(ctx, name: str, reps: int, warmup: int) -> dict:
    """The cost of one round: a barrier-free sequence of one-element openings."""
    x = mpc.share_public(ctx, np.zeros(1))
    for _ in range(warmup):
        x.reveal()
    times = []
    for _ in range(reps):
        before, start = ctx.stats.snapshot(), time.perf_counter()
        x.reveal()
        times.append(time.perf_counter() - start)
    after = ctx.stats.snapshot()
    return {"times": times, "bytes_sent": after.bytes_sent - before.bytes_sent,
            "bytes_received": after.bytes_received - before.bytes_received,
            "rounds": after.rounds - before.rounds}


def main(ctx):
    name, reps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if name == "W6":
        raise ValueError("W6 is not run over emulated links: ~8,500 rounds (README)")
    if name == "ping":
        result = _ping(ctx, name, reps, warmup)
    elif name == "W4":
        result = _w4_party(ctx, name, reps, warmup, steps=1)
    else:
        result = _party(ctx, name, reps, warmup)
    if ctx.pid == 0:
        line = {"workload": name, "median_s": statistics.median(result["times"]),
                "reps": len(result["times"])}
        line.update({k: result[k] for k in ("bytes_sent", "bytes_received", "rounds")})
        if "max_abs_err" in result:  # W4 says itself (bench.workloads.w4_check)
            line["correct"] = result.get("correct", result["max_abs_err"] < 2.0 ** -16)
        print(json.dumps(line), flush=True)
