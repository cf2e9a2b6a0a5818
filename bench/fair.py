"""Ours beside another system, measured fairly: `mpc bench --crypten` / `--spu`.

For each workload the systems run in turn, `runs` times each (ours, theirs, ours, theirs,
...), so that a change of load during the invocation falls on both. The 1-minute load
average (os.getloadavg) is recorded just before every run; while all of the workload's
loads so far are below QUIET_LOAD, each run first waits (up to `cooldown` s, and not at
all if the load cannot decay that far in that time) for the load to fall below it again,
since a run's own processes raise it for a minute after.

Every line carries the CPU model and its load. After a workload's runs, a comparison line
gives `ratio` (the median of our runs' medians over the median of theirs) only when every
load recorded for it was below QUIET_LOAD and both systems were correct; otherwise
`"ratio": null`, `"quiet"`, `"load"` and `why`. A loaded machine slows a PyTorch or XLA
process with its threads far more than ours (issue 11: CrypTen up to ten times), so a
ratio from one is not a figure. `bytes_ratio` (the fewest bytes our party 0 sent in a run
over the fewest of theirs: SPU's count moves between runs) is given either way: the byte
counts do not depend on the load.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

QUIET_LOAD = 0.5
OURS = "mpc-dl"


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first `model name` of /proc/cpuinfo, with the number of CPUs."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0]} x {len(names)}" if names else platform.machine()


def load_1min() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(load: Callable[[], float], sleep: Callable[[float], None],
                   cooldown: float, every: float = 5.0) -> float:
    """The load once it is below QUIET_LOAD, or when `cooldown` s of waiting cannot get it
    there: with nothing running, the 1-minute load decays as exp(-t / 60), no faster."""
    waited, now = 0.0, load()
    hopeless = lambda: now * math.exp(-(cooldown - waited) / 60) >= QUIET_LOAD  # noqa: E731
    if now >= QUIET_LOAD and not hopeless():
        print(f"waiting up to {cooldown:g} s for the 1-minute load ({now:.2f}) to fall "
              f"below {QUIET_LOAD}", file=sys.stderr, flush=True)
    while now >= QUIET_LOAD and not hopeless():
        sleep(every)
        waited += every
        now = load()
    return now


def interleave(runners: list[tuple[str, Callable[[], dict]]], runs: int, cpu: str,
               load: Callable[[], float] = load_1min, sleep: Callable[[float], None] = time.sleep,
               cooldown: float = 0.0) -> Iterator[tuple[str, dict]]:
    """(system, line) for each run: every runner once per round, `runs` rounds; each line
    gets `run` (1-based), `load` (before it) and `cpu`."""
    loads: list[float] = []
    for run in range(1, runs + 1):
        for system, runner in runners:
            quiet_so_far = all(value < QUIET_LOAD for value in loads)
            now = round(wait_for_quiet(load, sleep, cooldown) if quiet_so_far else load(), 2)
            loads.append(now)  # decided on as printed
            line = runner()
            line.update(run=run, load=now, cpu=cpu)
            yield system, line


def comparison(ours: list[dict], theirs: list[dict], label: str, bytes_field: str,
               loads: list[float], cpu: str) -> dict:
    """The comparison line of one workload (module docstring): `loads` are every load
    recorded for it, in run order."""
    first = ours[0]
    line = {"system": f"ratio {OURS}/{label}", "workload": first["workload"],
            "parties": first["parties"], "ours": f"{OURS} {first['protocol']}",
            "theirs": label, "quiet": all(value < QUIET_LOAD for value in loads),
            "load": [round(value, 2) for value in loads], "cpu": cpu, "ratio": None}
    ours_bytes, their_bytes = (min((one.get(field) or 0 for one in lines), default=0)
                               for field, lines in (("bytes_sent_party0", ours),
                                                    (bytes_field, theirs)))
    line["bytes_ratio"] = round(ours_bytes / their_bytes, 3) if ours_bytes and their_bytes \
        else None
    line["rounds"] = [first.get("rounds"), theirs[0].get("rounds")]
    failed = [t["error"] for t in theirs if t.get("error")]
    wrong = [f"{who} run {i}" for who, lines in ((OURS, ours), (label, theirs))
             for i, one in enumerate(lines, 1) if one.get("correct") is False]
    if failed:
        line["why"] = f"{label} failed: {failed[0]}"
    elif wrong:
        line["why"] = f"not correct: {', '.join(wrong)}; no ratio of a wrong result"
    elif not line["quiet"]:
        loud = max(loads)
        line["why"] = (f"not quiet: a load of {loud:.2f} was recorded (every run needs a "
                       f"1-minute load below {QUIET_LOAD}); a loaded machine slows the "
                       f"systems unequally, so no ratio is given")
    else:
        ours_median = statistics.median(one["median_s"] for one in ours)
        their_median = statistics.median(one["median_s"] for one in theirs)
        line.update(ratio=round(ours_median / their_median, 3), ours_median_s=ours_median,
                    theirs_median_s=their_median)
    return line


def compare(name: str, parties: int, anchors: list, run_ours: Callable[[], dict], reps: int,
            runs: int, cooldown: float, load: Callable[[], float] = load_1min,
            sleep: Callable[[float], None] = time.sleep) -> Iterator[dict]:
    """Every line of workload `name` beside `anchors` (bench.anchors.Anchor): each run as
    it ends, then one comparison line per anchor. An anchor without this workload gets
    only a comparison line saying so, and nothing runs for it."""
    cpu = cpu_model()
    runnable = [a for a in anchors if not a.unsupported(name, parties)]
    for skipped in (a for a in anchors if a.unsupported(name, parties)):
        yield {"system": f"ratio {OURS}/{skipped.label}", "workload": name,
               "parties": parties, "theirs": skipped.label, "ratio": None, "cpu": cpu,
               "quiet": None,
               "load": [round(load(), 2)], "why": skipped.unsupported(name, parties)}
    if not runnable:
        return
    runners = [(OURS, run_ours)] + [
        (a.label, lambda a=a: a.run(name, parties, reps)) for a in runnable]
    lines: dict[str, list[dict]] = {system: [] for system, _ in runners}
    loads = []
    for system, line in interleave(runners, runs, cpu, load, sleep, cooldown):
        lines[system].append(line)
        loads.append(line["load"])
        yield line
    for a in runnable:
        yield comparison(lines[OURS], lines[a.label], a.label, a.bytes_field, loads, cpu)
