"""Parties and the dealer as real OS processes over ZeroMQ (CURVE on).

`run_processes(fn, n)` is the multi-process harness behind `mpc run` and the process tests:
it makes throw-away keys and a cluster file on free loopback ports, starts one process per
party plus the dealer, collects every result before joining, and on the first failure stops
every process and raises PartyFailed with that party's traceback. No hang: every wait has a
deadline.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import queue
import runpy
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from net import NetError, ZmqMesh, free_tcp_addresses, load_secret, write_keypair

from mpc.config import ClusterConfig, load_config, write_config
from mpc.fixedpoint import FixedPoint
from mpc.harness import PartyFailed, run_party
from mpc.owners import encode_inputs, owner_session
from mpc.protocols import needs_dealer
from mpc.protocols.dealer.providers.dealer import serve_dealer


def tune_allocator() -> None:
    """Keep freed memory in the heap instead of returning it to the OS (glibc mallopt).

    Protocols allocate many short-lived arrays of several MB; with glibc's defaults each
    one is a fresh mmap whose every page faults on first touch, which on this machine
    costs more than the arithmetic. Called once at the start of each party process.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to tune
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 31)


def make_keys(directory: Path, n_parties: int, addresses: list[str], timeout: float = 60.0,
              frac_bits: int = 16, with_dealer: bool = True, owners: list[str] = (),
              heartbeat: float | None = None) -> Path:
    """Key pairs for n parties, the dealer and the named owners plus a cluster file (the
    addresses in that order); returns its path."""
    keys = directory / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    names = [f"party{i}" for i in range(n_parties)] + (["dealer"] if with_dealer else []) \
        + list(owners)
    publics = [load_secret(write_keypair(keys, name)[1])[0] for name in names]
    path = directory / "cluster.toml"
    write_config(path, addresses, publics, timeout, frac_bits, with_dealer, owners, heartbeat)
    return path


def make_local_cluster(directory: Path, n_parties: int, timeout: float = 60.0,
                       frac_bits: int = 16, with_dealer: bool = True,
                       owners: list[str] = (), heartbeat: float | None = None) -> Path:
    """Throw-away keys and a cluster file on free loopback ports."""
    members = n_parties + (1 if with_dealer else 0) + len(owners)
    return make_keys(directory, n_parties, free_tcp_addresses(members), timeout, frac_bits,
                     with_dealer, owners, heartbeat)


def open_mesh(config: ClusterConfig, member_id: int, key_file: str | Path | None = None,
              curve: bool = True, timeout: float | None = None) -> ZmqMesh:
    """Connect member `member_id` (a party, or the dealer at n_parties) to the mesh."""
    peers = config.mesh_peers()
    if member_id not in peers:
        raise ValueError(f"id {member_id} is not in the cluster (members {sorted(peers)})")
    key_file = Path(key_file) if key_file else config.default_key_file(member_id)
    public, secret = load_secret(key_file, expected_public=peers[member_id][1])
    mesh = ZmqMesh(member_id, peers, secret, public, timeout=timeout or config.timeout,
                   connect_timeout=config.timeout, curve=curve,
                   talks_to=config.links(member_id), late_peers=config.owner_ids().values(),
                   late_timeout=config.owner_timeout, heartbeat=config.heartbeat,
                   key_file=str(key_file), peers_file=config.source and str(config.source),
                   mailbox_bytes=config.mailbox_bytes)
    mesh.start()
    return mesh


def run_cluster_party(config: ClusterConfig, pid: int, fn, args=(), key_file=None,
                      provider: str = "dealer", protocol: str = "dealer", **ctx_options):
    """One party's whole life: connect, run `fn(ctx, *args)`, disconnect. Returns
    (result, communication stats as a dict)."""
    with _leaving(open_mesh(config, pid, key_file)) as mesh:
        ctx_options.setdefault("fixed", FixedPoint(config.frac_bits))
        ctx_options.setdefault("owners", config.owner_ids())
        result = run_party(fn, pid, config.n_parties, mesh, provider, args, protocol,
                           **ctx_options)
        return result, mesh.stats.as_dict()


def run_cluster_dealer(config: ClusterConfig, key_file=None) -> int:
    """The dealer's whole life; returns the number of items served."""
    with _leaving(open_mesh(config, config.dealer_id, key_file)) as mesh:
        return serve_dealer(mesh, config.n_parties, idle_timeout=max(config.timeout, 600.0))


def run_owner(config: ClusterConfig, name: str, arrays: dict, receive: bool,
              key_file=None, wait: float = 86400.0) -> dict | None:
    """An owner's whole life (`mpc share`): connect to the parties, share `arrays`, and
    with `receive` wait up to `wait` s (training takes what it takes; a party that dies
    meanwhile is still noticed at once, and a frozen one by heartbeat) for its results."""
    owner, fixed = config.owner(name), FixedPoint(config.frac_bits)
    encoded = encode_inputs(fixed, arrays)
    with _leaving(open_mesh(config, owner.id, key_file, timeout=wait)) as mesh:
        return owner_session(mesh, config.n_parties, fixed, encoded, receive)


@contextmanager
def _leaving(mesh: ZmqMesh):
    """Close the mesh on the way out; after an error, the goodbye says which, so the
    peers' own errors name the party whose loss started it all (and the goodbye carries
    the culprit the error names: this member for an error of its own). Only network errors
    travel with their text (party ids, sequence numbers, ops and shapes: all public);
    any other error sends its class name alone, since its text may quote private data
    (an input refused for its value, say)."""
    try:
        yield mesh
    except BaseException as exc:
        public = isinstance(exc, NetError)
        mesh.close(reason=f"{type(exc).__name__}: {exc}" if public else
                   f"{type(exc).__name__} (details kept by that party)",
                   culprit=getattr(exc, "culprit", None))
        raise
    finally:
        mesh.close()


class ScriptTarget:
    """A script file with `def main(ctx)`, callable as a party function (picklable)."""

    def __init__(self, path: str | Path, argv: list[str] | None = None):
        self.path = str(path)
        self.argv = list(argv or [])

    def __call__(self, ctx):
        sys.argv = [self.path] + self.argv
        namespace = runpy.run_path(self.path, run_name="__mpc_party__")
        if "main" not in namespace:
            raise AttributeError(f"{self.path} defines no main(ctx) function")
        return namespace["main"](ctx)


def _child(kind: str, config_path: str, member: int, fn, args, provider, protocol,
           ctx_options, out):
    """Entry point of a spawned process: report ("ok", ...) or ("error", ...) on `out`."""
    who = "dealer" if kind == "dealer" else f"party {member}"
    tune_allocator()
    try:
        config = load_config(config_path)
        if kind == "dealer":
            out.put(("ok", who, run_cluster_dealer(config), None))
        else:
            result, stats = run_cluster_party(config, member, fn, args, None, provider,
                                              protocol, **ctx_options)
            out.put(("ok", who, result, stats))
    except BaseException:  # noqa: BLE001 - sent to the parent with the traceback
        out.put(("error", who, traceback.format_exc(), None))
        sys.exit(1)


def run_processes(fn, n_parties: int = 2, *, args=(), protocol: str = "dealer",
                  provider: str = "dealer", timeout: float = 60.0,
                  total_timeout: float | None = None, with_stats: bool = False,
                  **ctx_options) -> list:
    """Run `fn(ctx, *args)` as each party in its own process over ZeroMQ with CURVE.

    Returns the parties' results (with `with_stats`, (result, stats) pairs). `fn` must be
    importable by name (a module-level function) or a ScriptTarget. Raises PartyFailed
    with the first failing process's traceback; every process is stopped either way.
    """
    spawn = mp.get_context("spawn")
    out = spawn.Queue()
    with_dealer = needs_dealer(protocol, provider)
    with tempfile.TemporaryDirectory(prefix="mpc-cluster-") as tmp:
        config_path = str(make_local_cluster(Path(tmp), n_parties, timeout,
                                             with_dealer=with_dealer))
        members = [("party", p) for p in range(n_parties)]
        if with_dealer:
            members.append(("dealer", n_parties))
        procs = {}
        for kind, member in members:
            who = "dealer" if kind == "dealer" else f"party {member}"
            procs[who] = spawn.Process(target=_child, name=who, daemon=True, args=(
                kind, config_path, member, fn, args, provider, protocol, ctx_options, out))
            procs[who].start()
        try:
            reports = _collect(procs, out, total_timeout or 10 * timeout)
        finally:
            _stop(procs)
    results = [reports[f"party {p}"] for p in range(n_parties)]
    return results if with_stats else [r for r, _ in results]


def _collect(procs: dict, out, deadline_s: float) -> dict:
    """Drain results until every process reported; on failure raise PartyFailed for the
    most likely root cause (see _root_cause). Every wait has a deadline."""
    reports, failures, deadline = {}, {}, time.monotonic() + deadline_s
    settle_until = None
    while len(reports) + len(failures) < len(procs):
        now = time.monotonic()
        if settle_until is not None and now > settle_until:
            break
        if now > deadline:
            missing = sorted(set(procs) - set(reports) - set(failures))
            raise TimeoutError(f"no result from {missing} within {deadline_s:g} s")
        try:
            status, who, value, stats = out.get(timeout=0.2)
        except queue.Empty:
            for w, p in procs.items():
                if w not in reports and w not in failures and p.exitcode is not None \
                        and p.exitcode != 0:
                    failures[w] = (f"exited with code {p.exitcode} without reporting a "
                                   "result (killed or crashed)", True)
            if failures and settle_until is None:
                settle_until = time.monotonic() + 1.5
            continue
        if status == "error":
            failures[who] = (value, False)
            settle_until = settle_until or time.monotonic() + 1.5
        else:
            reports[who] = (value, stats)
    if failures:
        who = _root_cause(failures)
        others = [w for w in failures if w != who]
        detail = failures[who][0] + (f"\n(then also failed: {', '.join(others)})" if others else "")
        raise PartyFailed(who, detail)
    return reports


def _root_cause(failures: dict) -> str:
    """Prefer a real error over a silent death, and a silent death over the lost-peer and
    timeout errors that the others raise because of it."""
    def rank(item):
        text, died = item[1]
        consequence = "PeerLost" in text or "PeerTimeout" in text
        return 2 if consequence else (1 if died else 0)
    return min(failures.items(), key=rank)[0]


def _stop(procs: dict, grace: float = 2.0) -> None:
    """Give every process `grace` seconds in all to exit, then terminate, then kill."""
    end = time.monotonic() + grace
    for proc in procs.values():
        proc.join(timeout=max(0.0, end - time.monotonic()))
    for proc in procs.values():
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=2.0)
        if proc.is_alive():
            proc.kill()
            proc.join()
