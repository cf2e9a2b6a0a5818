"""The `mpc` command: run, party, dealer, share, keys, bench.

    mpc run -n 3 script.py            all parties and the dealer as local processes
    mpc run -n 3 --protocol replicated script.py   three parties, no dealer
    mpc party --config cluster.toml --id 1 script.py
    mpc dealer --config cluster.toml
    mpc share --config cluster.toml --owner hospital_a data.npz [--receive model.npz]
    mpc keys --parties 3 --out cluster/   key pairs and a cluster.toml template
    mpc keys --protocol replicated --out cluster/   the same for 3 parties and no dealer
    mpc bench --workload W1 --parties 2   benchmark workloads as JSON lines
    mpc bench --scale                     W1, W3, W7 from 10^4 to 10^7 elements, 2 to 8 parties
    mpc bench --crypten --workload W2b    ours and CrypTen interleaved, the ratio if quiet

A script defines `main(ctx)`; the launcher decides where the parties live.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from mpc.config import load_config
from mpc.harness import PartyFailed
from mpc.protocols import PROTOCOLS, PROVIDERS, check_settings, needs_dealer

EXIT_CODES = """exit codes:
  0        success
  1        a party, the dealer or an owner failed: the member that caused it is named
           first, then its traceback
  2        arguments that cannot work (nothing was started)
  128 + N  stopped by signal N (130: Ctrl-C, 143: SIGTERM); `mpc run` stops every
           party and the dealer first
"""


class Interrupted(BaseException):
    """SIGTERM (or another signal) asked `mpc` to stop; like KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum, frame):
    raise Interrupted(signum)


def _show(value, limit: int = 2000) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _summary(who: str, stats: dict) -> str:
    total = stats["total"]
    lines = [f"{who}: sent {total['bytes_sent']:,} B, received {total['bytes_received']:,} B, "
             f"{total['rounds']} rounds"]
    for op, c in stats["by_op"].items():
        lines.append(f"    {op:<14} sent {c['bytes_sent']:>14,} B  rounds {c['rounds']:>5}")
    return "\n".join(lines)


def check_run(args) -> str | None:
    """Why `mpc run` with these arguments cannot work, before anything starts."""
    from mpc.launcher import ScriptTarget
    if args.timeout <= 0:
        return f"--timeout {args.timeout:g}: must be positive"
    if args.time_limit is not None and args.time_limit <= 0:
        return f"--time-limit {args.time_limit:g}: must be positive"
    try:
        check_settings(args.protocol, args.parties, args.truncation, args.provider)
    except ValueError as e:
        return f"-n {args.parties}: {e}" if args.parties < 2 else str(e)
    return ScriptTarget(args.script).problem()


def check_party(args) -> str | None:
    """Why `mpc party` with these arguments cannot work, before it connects."""
    from mpc.launcher import ScriptTarget
    try:
        config = load_config(args.config)
        check_settings(config.protocol, config.n_parties, args.truncation, args.provider)
    except (ValueError, OSError) as e:
        return str(e)
    if not 0 <= args.id < config.n_parties:
        return f"--id {args.id}: {args.config} has parties 0 to {config.n_parties - 1}"
    return ScriptTarget(args.script).problem()


def check_keys(args) -> str | None:
    """Why `mpc keys` with these arguments cannot work, before any key is written."""
    try:
        check_settings(args.protocol, args.parties if args.parties is not None else 3)
    except ValueError as e:
        return str(e)
    return None


def check_bench(args) -> str | None:
    """Why `mpc bench` with these arguments cannot work, before anything starts."""
    if args.reps is not None and args.reps < 1:
        return f"--reps {args.reps}: at least 1 timed repetition"
    if args.scale and (args.crypten or args.spu):
        return "--scale measures ours alone: leave out --crypten and --spu"
    if args.scale and args.protocol != "dealer":
        return (f"--scale measures the dealer protocol (at 2 to 8 parties, the dealer's "
                f"memory included), not {args.protocol}: leave out --scale")
    if args.scale:
        return None
    if (args.crypten or args.spu) and args.runs < 2:
        return f"--runs {args.runs}: at least 2 runs of each system, to interleave them"
    if (args.crypten or args.spu) and args.cooldown < 0:
        return f"--cooldown {args.cooldown:g}: must be 0 or more"
    try:
        check_settings(args.protocol, args.parties, args.truncation)
        for anchor in _anchors(args):
            if anchor.problem():
                return anchor.problem()
    except ValueError as e:
        return str(e)
    return None


def _anchors(args) -> list:
    """The other systems that --crypten and --spu ask for (ValueError if none fits)."""
    from bench.anchors import anchor, anchors_dir
    systems = [s for s in ("crypten", "spu") if getattr(args, s)]
    if not systems:
        return []
    directory = anchors_dir(args.anchors)
    return [anchor(system, args.protocol, directory) for system in systems]


def cmd_run(args) -> int:
    from mpc.launcher import ScriptTarget, run_processes
    start = time.perf_counter()
    signal.signal(signal.SIGTERM, _interrupt)  # stop every process, then exit 143
    results = run_processes(ScriptTarget(args.script, args.script_args), args.parties,
                            protocol=args.protocol, provider=args.provider,
                            timeout=args.timeout, with_stats=True,
                            total_timeout=args.time_limit, truncation=args.truncation,
                            check=args.checked)
    values = [_show(value) for value, _ in results]
    if values == [_show(None)] * len(values):
        pass  # main returned nothing
    elif values.count(values[0]) == len(values):
        print(f"main returned (every party): {values[0]}")
    else:
        for pid, value in enumerate(values):
            print(f"party {pid}: main returned {value}")
    dealer = " and the dealer" if needs_dealer(args.protocol, args.provider) else ""
    print(f"\n{args.parties} parties{dealer} ({args.protocol} protocol) finished in "
          f"{time.perf_counter() - start:.1f} s (start-up, numba compilation included)",
          file=sys.stderr)
    print("communication:", file=sys.stderr)
    for pid, (_, stats) in enumerate(results):
        print(_summary(f"party {pid}", stats), file=sys.stderr)
    return 0


def cmd_party(args) -> int:
    from mpc.launcher import ScriptTarget, run_cluster_party, tune_allocator
    tune_allocator()
    config = load_config(args.config)
    _, stats = run_cluster_party(config, args.id, ScriptTarget(args.script, args.script_args),
                                 key_file=args.key, provider=args.provider,
                                 truncation=args.truncation, check=args.checked)
    print(_summary(f"party {args.id}", stats), file=sys.stderr)
    return 0


def cmd_dealer(args) -> int:
    from mpc.launcher import run_cluster_dealer, tune_allocator
    tune_allocator()
    config = load_config(args.config)
    if config.dealer is None:
        raise ValueError(f"{args.config}: no [dealer] entry (the {config.protocol} protocol "
                         f"runs without a dealer)")
    served = run_cluster_dealer(config, key_file=args.key)
    print(f"dealer: served {served} items", file=sys.stderr)
    return 0


def cmd_share(args) -> int:
    import numpy as np

    from mpc.launcher import run_owner
    config = load_config(args.config)
    config.owner(args.owner)  # an unknown name fails before the data is read
    with np.load(args.data) as data:
        arrays = {name: data[name] for name in data.files}
    results = run_owner(config, args.owner, arrays, receive=args.receive is not None,
                        key_file=args.key, wait=args.wait)
    shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
    print(f"owner {args.owner}: shared {shapes} with {config.n_parties} parties",
          file=sys.stderr)
    if results is not None:
        np.savez(args.receive, **results)
        print(f"owner {args.owner}: wrote {', '.join(results)} to {args.receive}",
              file=sys.stderr)
    return 0


def cmd_keys(args) -> int:
    from mpc.launcher import make_keys
    out = Path(args.out)
    owners = [o for o in args.owners.split(",") if o]
    parties = args.parties if args.parties is not None else 3
    with_dealer = needs_dealer(args.protocol)
    addresses = [f"tcp://{args.host}:{args.port + i}"
                 for i in range(parties + with_dealer + len(owners))]
    path = make_keys(out, parties, addresses, owners=owners, with_dealer=with_dealer,
                     protocol=args.protocol)
    dealer = "the dealer keys/dealer.key_secret, " if with_dealer else ""
    print(f"wrote {path} ({args.protocol} protocol) and keys in {out / 'keys'}: give each "
          f"party its own keys/partyN.key_secret, {dealer}each owner keys/<name>.key_secret, "
          f"everyone {path.name}; edit the addresses to the real hosts")
    return 0


def cmd_bench(args) -> int:
    from bench.workloads import SCALE_WORKLOADS, WORKLOADS, run_workload, scale
    default = ",".join(SCALE_WORKLOADS) if args.scale else "W1"
    names = list(WORKLOADS) if args.workload == "all" else (args.workload or default).split(",")
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(f"unknown workload {unknown}; choose from {', '.join(WORKLOADS)} or all",
              file=sys.stderr)
        return 2
    if args.scale:
        not_elementwise = [n for n in names if n not in SCALE_WORKLOADS]
        if not_elementwise:
            print(f"--scale measures {', '.join(SCALE_WORKLOADS)} only, not {not_elementwise}",
                  file=sys.stderr)
            return 2
        sizes = [int(float(s)) for s in args.sizes.split(",")]
        counts = [int(n) for n in args.party_counts.split(",")]
        for line in scale(names, sizes, counts, reps=args.reps):
            print(json.dumps(line), flush=True)
        return 0
    from bench.fair import compare, cpu_model, load_1min
    reps = args.reps or 5
    anchors = _anchors(args)
    for name in names:
        def ours(name=name):
            return run_workload(name, args.parties, reps=reps, truncation=args.truncation,
                                protocol=args.protocol)
        if not anchors:
            load = round(load_1min(), 2)
            print(json.dumps({**ours(), "load": load, "cpu": cpu_model()}), flush=True)
            continue
        for line in compare(name, args.parties, anchors, ours, reps, args.runs,
                            args.cooldown):
            print(json.dumps(line), flush=True)
    return 0


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's help ends with its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or \
                action.required or not action.option_strings:
            return text
        return f"{text} (default %(default)s)"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--truncation", default="exact", choices=["exact", "local-probabilistic"],
                   help="exact (cannot fail) or local-probabilistic (2 parties only; fails "
                        "with probability |x| / 2^64 per element)")


def _check_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", dest="checked",
                   help="checked mode (default off): before each reveal, verify that every "
                        "product's result is inside the fixed-point range, and fail naming "
                        "the operation and the count otherwise; opens only those counts; "
                        "one comparison per checked value and 9 rounds per check (every "
                        "party must use it)")


def _script(p: argparse.ArgumentParser) -> None:
    p.add_argument("script", help="a Python file defining main(ctx), run by every party")
    p.add_argument("script_args", nargs=argparse.REMAINDER,
                   help="passed to the script as sys.argv[1:]")


def _protocol(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", default="dealer", choices=PROTOCOLS,
                   help="dealer (default: n >= 2 parties and a trusted dealer) or replicated "
                        "(exactly 3 parties, honest majority, no dealer)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpc", description=__doc__, epilog=EXIT_CODES,
                                     formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, func, validate=None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text, epilog=EXIT_CODES,
                           formatter_class=_Formatter)
        p.set_defaults(func=func, validate=validate)
        return p

    p = command("run", "run a script as every party (and the dealer) on this machine",
                cmd_run, check_run)
    p.add_argument("-n", "--parties", type=int, default=3, help="number of parties, at least 2")
    p.add_argument("--provider", default="dealer", choices=PROVIDERS,
                   help="where Beaver triples come from: the dealer process, or "
                        "insecure-seeded (tests only: every party can compute them)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long a member waits for a peer: to connect at start-up, and "
                        "then for each message, before failing and naming that peer; a "
                        "dead or frozen peer is noticed sooner, by heartbeat (within "
                        "min(SECONDS, 10) s)")
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop every process and fail after this long in all (default: no "
                        "limit; a long training may take hours)")
    _protocol(p)
    _common(p)
    _check_option(p)
    _script(p)

    p = command("party", "run one party of a cluster", cmd_party, check_party)
    p.add_argument("--config", required=True, help="the cluster file (mpc keys writes one)")
    p.add_argument("--id", type=int, required=True, help="this party's id, 0 to n-1")
    p.add_argument("--key", help="secret key file (default keys/party<ID>.key_secret next "
                                 "to the config)")
    p.add_argument("--provider", default="dealer", choices=["dealer"],
                   help="where Beaver triples come from")
    _common(p)
    _check_option(p)
    _script(p)

    p = command("dealer", "run the dealer of a cluster", cmd_dealer)
    p.add_argument("--config", required=True, help="the cluster file (mpc keys writes one)")
    p.add_argument("--key", help="secret key file (default keys/dealer.key_secret next to "
                                 "the config)")

    p = command("share", "as a data owner, secret-share arrays with the parties", cmd_share)
    p.add_argument("--config", required=True, help="the cluster file (mpc keys writes one)")
    p.add_argument("--owner", required=True, help="this owner's name in the cluster file")
    p.add_argument("--key", help="secret key file (default keys/<owner>.key_secret next to "
                                 "the config)")
    p.add_argument("--receive", metavar="OUT.npz",
                   help="then wait for the results revealed to this owner and save them "
                        "(default: share and leave)")
    p.add_argument("--wait", type=float, default=86400.0, metavar="SECONDS",
                   help="how long to wait for the parties (default a day)")
    p.add_argument("data", help=".npz file: every array in it is shared under its name")

    p = command("keys", "make key pairs and a cluster.toml template", cmd_keys, check_keys)
    p.add_argument("--parties", type=int, help="computing parties (default 3)")
    _protocol(p)
    p.add_argument("--owners", default="", help="comma-separated names of data owners "
                                                "(default none)")
    p.add_argument("--out", default="cluster", help="folder for cluster.toml and keys/")
    p.add_argument("--host", default="127.0.0.1", help="host of every address in the "
                                                       "template (edit them after)")
    p.add_argument("--port", type=int, default=7000, help="first port; members get "
                                                          "consecutive ports")

    p = command("bench", "benchmark workloads (JSON lines)", cmd_bench, check_bench)
    p.add_argument("--workload", help="comma-separated ids or all (default W1; with --scale "
                                      "W1,W3,W7)")
    p.add_argument("--parties", type=int, default=2, help="number of parties")
    p.add_argument("--reps", type=int, help="timed repetitions (default 5; with --scale 3, "
                                            "and 1 from 10^7 elements)")
    p.add_argument("--scale", action="store_true",
                   help="cost against size and parties: every workload at every --sizes and "
                        "--party-counts, one point at a time, with peak memory per process")
    p.add_argument("--sizes", default="1e4,1e5,1e6,1e7", help="elements, with --scale")
    p.add_argument("--party-counts", default="2,3,5,8", help="party counts, with --scale")
    p.add_argument("--crypten", action="store_true",
                   help="interleave runs of CrypTen with its trusted third party (beside the "
                        "dealer protocol; ANCHORS/crypten, venv /tmp/crypten-venv) with ours, "
                        "and print the ratio if the machine was quiet")
    p.add_argument("--spu", action="store_true",
                   help="the same with SecretFlow SPU (ANCHORS/spu, venv /tmp/spu-venv): "
                        "SEMI2K beside the dealer protocol, ABY3 beside replicated")
    p.add_argument("--runs", type=int, default=2,
                   help="with --crypten or --spu: runs of each system per workload, "
                        "alternating (ours, theirs, ours, theirs, ...)")
    p.add_argument("--cooldown", type=float, default=120.0, metavar="SECONDS",
                   help="with --crypten or --spu: before each run, wait up to this long for "
                        "the 1-minute load to fall below 0.5 (no wait once a workload's "
                        "load was above it: its ratio is withheld anyway)")
    p.add_argument("--anchors", metavar="DIR",
                   help="the other systems' scripts (default the first of ../shared/anchors "
                        "beside the checkout and /work/shared/anchors)")
    _protocol(p)
    _common(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = args.validate(args) if args.validate else None
    if problem:
        print(f"mpc {args.command}: error: {problem}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        stopped = "; every party and the dealer stopped" if args.command == "run" else ""
        print(f"mpc {args.command}: interrupted ({signal.Signals(signum).name}){stopped}",
              file=sys.stderr)
        return 128 + signum
    except PartyFailed as exc:
        print(f"mpc: {exc.party} failed:\n{exc.detail}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"mpc: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a net error etc.: say what and who, exit 1
        print(f"mpc: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
