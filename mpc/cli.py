"""The `mpc` command: run, party, dealer, keys, bench.

    mpc run -n 3 script.py            all parties and the dealer as local processes
    mpc run -n 3 --protocol replicated script.py   three parties, no dealer
    mpc party --config cluster.toml --id 1 script.py
    mpc dealer --config cluster.toml
    mpc share --config cluster.toml --owner hospital_a data.npz [--receive model.npz]
    mpc keys --parties 3 --out cluster/   key pairs and a cluster.toml template
    mpc keys --protocol replicated --out cluster/   the same for 3 parties and no dealer
    mpc bench --workload W1 --parties 2   benchmark workloads as JSON lines
    mpc bench --scale                     W1, W3, W7 from 10^4 to 10^7 elements, 2 to 8 parties

A script defines `main(ctx)`; the launcher decides where the parties live. Exit code 0 on
success, 1 when a party fails (its traceback is printed), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mpc.config import load_config
from mpc.harness import PartyFailed
from mpc.protocols import PROTOCOLS, PROVIDERS, check_settings, needs_dealer


def _summary(who: str, stats: dict) -> str:
    total = stats["total"]
    lines = [f"{who}: sent {total['bytes_sent']:,} B, received {total['bytes_received']:,} B, "
             f"{total['rounds']} rounds"]
    for op, c in stats["by_op"].items():
        lines.append(f"    {op:<14} sent {c['bytes_sent']:>14,} B  rounds {c['rounds']:>5}")
    return "\n".join(lines)


def cmd_run(args) -> int:
    from mpc.launcher import ScriptTarget, run_processes
    check_settings(args.protocol, args.parties, args.truncation, args.provider)
    start = time.perf_counter()
    results = run_processes(ScriptTarget(args.script, args.script_args), args.parties,
                            protocol=args.protocol, provider=args.provider,
                            timeout=args.timeout, with_stats=True, truncation=args.truncation)
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
                                 truncation=args.truncation)
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
    check_settings(args.protocol, parties)
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
    from bench.workloads import (SCALE_WORKLOADS, WORKLOADS, comparison, crypten_line, run_workload,
                           scale)
    default = ",".join(SCALE_WORKLOADS) if args.scale else "W1"
    names = list(WORKLOADS) if args.workload == "all" else (args.workload or default).split(",")
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(f"unknown workload {unknown}; choose from {', '.join(WORKLOADS)} or all",
              file=sys.stderr)
        return 2
    if args.scale and args.protocol != "dealer":
        print(f"--scale measures the dealer protocol (at 2 to 8 parties, the dealer's memory "
              f"included), not {args.protocol}: leave out --scale", file=sys.stderr)
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
    reps = args.reps or 5
    check_settings(args.protocol, args.parties, args.truncation)
    for name in names:
        ours = run_workload(name, args.parties, reps=reps, truncation=args.truncation,
                            protocol=args.protocol)
        print(json.dumps(ours), flush=True)
        theirs = crypten_line(name, args.parties, reps) if args.crypten else None
        if theirs:
            print(json.dumps(theirs), flush=True)
            print(json.dumps(comparison(ours, theirs)), flush=True)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--truncation", default="exact", choices=["exact", "local-probabilistic"],
                   help="exact (default, cannot fail) or local-probabilistic (2 parties; can fail)")


def _protocol(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", default="dealer", choices=PROTOCOLS,
                   help="dealer (default: n >= 2 parties and a trusted dealer) or replicated "
                        "(exactly 3 parties, honest majority, no dealer)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpc", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a script as every party on this machine")
    p.add_argument("-n", "--parties", type=int, default=3)
    p.add_argument("--provider", default="dealer", choices=PROVIDERS)
    p.add_argument("--timeout", type=float, default=60.0)
    _protocol(p)
    _common(p)
    p.add_argument("script")
    p.add_argument("script_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("party", help="run one party of a cluster")
    p.add_argument("--config", required=True)
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--key", help="secret key file (default keys/party<ID>.key_secret)")
    p.add_argument("--provider", default="dealer", choices=["dealer"])
    _common(p)
    p.add_argument("script")
    p.add_argument("script_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_party)

    p = sub.add_parser("dealer", help="run the dealer of a cluster")
    p.add_argument("--config", required=True)
    p.add_argument("--key", help="secret key file (default keys/dealer.key_secret)")
    p.set_defaults(func=cmd_dealer)

    p = sub.add_parser("share", help="as a data owner, secret-share arrays with the parties")
    p.add_argument("--config", required=True)
    p.add_argument("--owner", required=True, help="this owner's name in the cluster file")
    p.add_argument("--key", help="secret key file (default keys/<owner>.key_secret)")
    p.add_argument("--receive", metavar="OUT.npz",
                   help="then wait for the results revealed to this owner and save them")
    p.add_argument("--wait", type=float, default=86400.0, metavar="SECONDS",
                   help="how long to wait for the parties (default a day)")
    p.add_argument("data", help=".npz file: every array in it is shared under its name")
    p.set_defaults(func=cmd_share)

    p = sub.add_parser("keys", help="make key pairs and a cluster.toml template")
    p.add_argument("--parties", type=int, help="computing parties (default 3)")
    _protocol(p)
    p.add_argument("--owners", default="", help="comma-separated names of data owners")
    p.add_argument("--out", default="cluster")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7000)
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("bench", help="benchmark workloads (JSON lines)")
    p.add_argument("--workload", help="comma-separated ids or all (default W1; with --scale "
                                      "W1,W3,W7)")
    p.add_argument("--parties", type=int, default=2)
    p.add_argument("--reps", type=int, help="timed repetitions (default 5; with --scale 3, "
                                            "and 1 from 10^7 elements)")
    p.add_argument("--scale", action="store_true",
                   help="cost against size and parties: every workload at every --sizes and "
                        "--party-counts, one point at a time, with peak memory per process")
    p.add_argument("--sizes", default="1e4,1e5,1e6,1e7", help="elements, with --scale")
    p.add_argument("--party-counts", default="2,3,5,8", help="party counts, with --scale")
    p.add_argument("--crypten", action="store_true",
                   help="also measure CrypTen (TTP) now with ../shared/anchors/crypten and print "
                        "the ratios")
    _protocol(p)
    _common(p)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
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
