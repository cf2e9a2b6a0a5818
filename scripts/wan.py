"""Helpers of scripts/wan.sh: cluster files for namespaced members, and the results table.

    python scripts/wan.py configs DIR N_PARTIES   keys, cluster-<m>.toml, proxies-<m>.txt
    python scripts/wan.py table RESULTS.jsonl     markdown table with a latency/bandwidth fit

Member m (parties 0..n-1, the dealer n) lives in its own network namespace at
10.77.0.(10+m) and binds tcp://10.77.0.(10+m):7000. It reaches peer j through a delay
proxy in its own namespace at 127.0.0.1:(7100+j), so each member gets its own cluster file:
its own real address, and its proxies' addresses for everyone else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mpc.config import load_config, write_config
from mpc.launcher import make_keys


def real_address(member: int) -> str:
    return f"10.77.0.{10 + member}:7000"


def proxy_address(peer: int) -> str:
    return f"127.0.0.1:{7100 + peer}"


def configs(directory: Path, n_parties: int, timeout: float = 60.0) -> None:
    """Keys plus, for every member, its cluster file and its proxies' LISTEN=TARGET list."""
    members = range(n_parties + 1)
    common = make_keys(directory, n_parties, [f"tcp://{real_address(m)}" for m in members],
                       timeout)
    config = load_config(common)
    keys = [p.public_key for p in config.parties] + [config.dealer.public_key]
    for m in members:
        addresses = [f"tcp://{real_address(j) if j == m else proxy_address(j)}"
                     for j in members]
        write_config(directory / f"cluster-{m}.toml", addresses, keys, timeout)
        links = [f"{proxy_address(j)}={real_address(j)}" for j in config.links(m) if j != m]
        (directory / f"proxies-{m}.txt").write_text(" ".join(links) + "\n")


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.2f}"


def table(path: Path) -> str:
    """One row per workload and profile: measured seconds next to a fit, compute (LAN
    seconds less the LAN's two terms) + rounds x one-way delay (in a round both parties
    send, then wait) + bytes of party 0's busier direction / bandwidth."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lan = {r["result"]["workload"]: r for r in rows if r["profile"] == "lan"}

    def terms(r: dict) -> tuple[float, float]:
        res = r["result"]
        return (res["rounds"] * r["rtt_ms"] / 2e3,
                max(res["bytes_sent"], res["bytes_received"]) * 8 / (r["rate_mbit"] * 1e6))

    out = ["| workload | profile | load (1 min) | seconds | MB sent | MB received | rounds "
           "| rounds x one-way delay | bytes / bandwidth | fit | bound by |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        res, (latency, transfer) = r["result"], terms(r)
        base = lan.get(res["workload"])
        parts = {"rounds": latency, "bytes": transfer}
        if base is not None:
            parts["compute"] = max(0.0, base["result"]["median_s"] - sum(terms(base)))
        fit = f"{sum(parts.values()):.4f}" if base is not None else "-"
        bound = max(parts, key=parts.get)
        out.append(f"| {res['workload']} | {r['profile']} | {r['load'].split()[0]} | "
                   f"{res['median_s']:.4f} | {_mb(res['bytes_sent'])} | "
                   f"{_mb(res['bytes_received'])} | {res['rounds']} | {latency:.4f} | "
                   f"{transfer:.4f} | {fit} | {bound} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "configs":
        configs(Path(argv[1]), int(argv[2]))
    elif len(argv) == 2 and argv[0] == "table":
        print(table(Path(argv[1])))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
