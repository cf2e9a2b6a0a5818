"""Parties and the dealer as real OS processes over ZeroMQ (CURVE on).

`run_processes(fn, n)` is the multi-process harness behind `mpc run` and the process tests:
it makes throw-away keys and a cluster file on free loopback ports, starts one process per
party plus the dealer, collects every result before joining, and on the first failure stops
every process and raises PartyFailed naming the member that caused it. No hang: every wait
for a peer has a deadline. No orphan: the children die with the launcher, however it ends
(a parent-death signal on Linux, and a pipe each child watches everywhere).

The processes are spawned, so each one imports the caller's main module again: a script
that calls run_processes must do so under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import ast
import ctypes
import io
import multiprocessing as mp
import os
import queue
import runpy
import signal
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from net import NetError, ZmqMesh, free_tcp_addresses, load_secret, write_keypair

from mpc.config import ClusterConfig, load_config, write_config
from mpc.fixedpoint import FixedPoint
from mpc.harness import PartyFailed, run_party
from mpc.owners import encode_inputs, owner_session
from mpc.protocols import check_settings, needs_dealer, protocol_class
from mpc.protocols.dealer.providers.dealer import serve_dealer
from mpc.relay import OutputRelay


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
              heartbeat: float | None = None, protocol: str = "dealer") -> Path:
    """Key pairs for n parties, the dealer (with_dealer) and the named owners plus a
    cluster file for `protocol` (the addresses in that order); returns its path."""
    check_settings(protocol, n_parties)
    keys = directory / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    names = [f"party{i}" for i in range(n_parties)] + (["dealer"] if with_dealer else []) \
        + list(owners)
    publics = [load_secret(write_keypair(keys, name)[1])[0] for name in names]
    path = directory / "cluster.toml"
    write_config(path, addresses, publics, timeout, frac_bits, with_dealer, owners, heartbeat,
                 protocol)
    return path


def make_local_cluster(directory: Path, n_parties: int, timeout: float = 60.0,
                       frac_bits: int = 16, with_dealer: bool = True,
                       owners: list[str] = (), heartbeat: float | None = None,
                       protocol: str = "dealer") -> Path:
    """Throw-away keys and a cluster file on free loopback ports."""
    members = n_parties + (1 if with_dealer else 0) + len(owners)
    return make_keys(directory, n_parties, free_tcp_addresses(members), timeout, frac_bits,
                     with_dealer, owners, heartbeat, protocol)


def open_mesh(config: ClusterConfig, member_id: int, key_file: str | Path | None = None,
              curve: bool = True, timeout: float | None = None,
              announce_after: float | None = None) -> ZmqMesh:
    """Connect member `member_id` (a party, or the dealer at n_parties) to the mesh. With
    `announce_after`, say on stderr whom it waits for if connecting takes that long (0: at
    once)."""
    peers = config.mesh_peers()
    if not curve and protocol_class(config.protocol).needs_encryption:
        raise ValueError(f"the {config.protocol} protocol refuses plaintext links: any two "
                         f"links' traffic would reveal the secrets (keep CURVE on)")
    if member_id not in peers:
        raise ValueError(f"id {member_id} is not in the cluster (members {sorted(peers)})")
    key_file = Path(key_file) if key_file else config.default_key_file(member_id)
    public, secret = load_secret(key_file, expected_public=peers[member_id][1])
    mesh = ZmqMesh(member_id, peers, secret, public, timeout=timeout or config.timeout,
                   connect_timeout=config.timeout, curve=curve,
                   talks_to=config.links(member_id), late_peers=config.owner_ids().values(),
                   late_timeout=config.owner_timeout, heartbeat=config.heartbeat,
                   key_file=str(key_file), peers_file=config.source and str(config.source),
                   mailbox_bytes=config.mailbox_bytes, names=config.member_names())
    notice = None
    if announce_after is not None:
        notice = threading.Timer(announce_after, print, (waiting_line(config, member_id),),
                                 {"file": sys.stderr, "flush": True})
        notice.daemon = True
        notice.start()
    try:
        mesh.start()
    finally:
        if notice is not None:
            notice.cancel()
    return mesh


def member_name(config: ClusterConfig, member_id: int) -> str:
    """"party 1", "the dealer" or "owner hospital_a"."""
    if member_id < config.n_parties:
        return f"party {member_id}"
    if config.dealer is not None and member_id == config.dealer_id:
        return "the dealer"
    names = {i: name for name, i in config.owner_ids().items()}
    return f"owner {names[member_id]}" if member_id in names else f"member {member_id}"


def waiting_line(config: ClusterConfig, member_id: int) -> str:
    """The start-up notice: "party 1: waiting for party 0 at tcp://..., ... and the
    dealer at tcp://... to connect (up to 60 s)"."""
    owners = set(config.owner_ids().values())
    awaited = [p for p in config.links(member_id) if p != member_id and p not in owners]
    addresses = config.mesh_peers()
    named = [f"{member_name(config, p)} at {addresses[p][0]}" for p in awaited]
    listed = ", ".join(named[:-1]) + " and " + named[-1] if len(named) > 1 else named[0]
    return (f"{member_name(config, member_id)}: waiting for {listed} to connect "
            f"(up to {config.timeout:g} s)")


def run_cluster_party(config: ClusterConfig, pid: int, fn, args=(), key_file=None,
                      provider: str = "dealer", announce_after: float | None = 0.0,
                      **ctx_options):
    """One party's whole life under the cluster file's protocol: connect, run
    `fn(ctx, *args)`, disconnect. Returns (result, communication stats as a dict). With
    `announce_after`, it says whom it waits for if connecting takes that long."""
    check_settings(config.protocol, config.n_parties, ctx_options.get("truncation", "exact"),
                   provider)
    if needs_dealer(config.protocol, provider) and config.dealer is None:
        raise ValueError(f"the {config.protocol} protocol with provider {provider!r} needs a "
                         f"[dealer] entry in the cluster file")
    with _leaving(open_mesh(config, pid, key_file, announce_after=announce_after)) as mesh:
        ctx_options.setdefault("fixed", FixedPoint(config.frac_bits))
        ctx_options.setdefault("owners", config.owner_ids())
        result = run_party(fn, pid, config.n_parties, mesh, provider, args, config.protocol,
                           **ctx_options)
        return result, mesh.stats.as_dict()


def run_cluster_dealer(config: ClusterConfig, key_file=None,
                       announce_after: float | None = 0.0) -> int:
    """The dealer's whole life; returns the number of items served."""
    with _leaving(open_mesh(config, config.dealer_id, key_file,
                            announce_after=announce_after)) as mesh:
        return serve_dealer(mesh, config.n_parties, idle_timeout=max(config.timeout, 600.0))


def run_owner(config: ClusterConfig, name: str, arrays: dict, receive: bool,
              key_file=None, wait: float = 86400.0) -> dict | None:
    """An owner's whole life (`mpc share`): connect to the parties, share `arrays`, and
    with `receive` wait up to `wait` s (training takes what it takes; a party that dies
    meanwhile is still noticed at once, and a frozen one by heartbeat) for its results."""
    owner, fixed = config.owner(name), FixedPoint(config.frac_bits)
    encoded = encode_inputs(fixed, arrays)
    with _leaving(open_mesh(config, owner.id, key_file, timeout=wait,
                            announce_after=0.0)) as mesh:
        return owner_session(mesh, config.n_parties, fixed, encoded, receive, config.protocol)


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

    def problem(self) -> str | None:
        """Why this script cannot work as a party (no such file, a syntax error, no
        top-level main), found without running it; None when it looks runnable."""
        path = Path(self.path)
        if not path.is_file():
            return f"{self.path}: {'not a file' if path.exists() else 'no such file'}"
        try:
            tree = ast.parse(path.read_bytes(), filename=self.path)
        except SyntaxError as e:
            return f"{self.path}, line {e.lineno}: {e.msg}"
        except (OSError, ValueError) as e:
            return f"{self.path}: {e}"
        names = _top_level_names(tree)
        if "main" not in names and "*" not in names:
            return f"{self.path} defines no main(ctx) function, which every party calls"
        return None

    def __call__(self, ctx):
        sys.argv = [self.path] + self.argv
        namespace = runpy.run_path(self.path, run_name="__mpc_party__")
        if "main" not in namespace:
            raise AttributeError(f"{self.path} defines no main(ctx) function")
        return namespace["main"](ctx)


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds outside functions and classes ("*" for a star import)."""
    names, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        else:  # if, try, with, for, while: their blocks run at the top level too
            for block in ("body", "orelse", "finalbody", "handlers"):
                todo += getattr(node, block, [])
    return names


CHILD_NOTICE = 5.0
"""Seconds after which a member of `mpc run` that is still connecting says whom it waits
for (members started one per terminal say so at once)."""

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class _Plumbing:
    """What ties a child to its launcher: the launcher's pid, the read end of a pipe only
    the launcher holds open for writing (it never writes; the end closes when it dies),
    and pipes replacing the child's stdout and stderr (None: inherited as they are)."""
    launcher: int
    lifeline: Connection
    stdout: Connection | None
    stderr: Connection | None
    terminals: frozenset[str]


def _die_with_launcher(plumbing: _Plumbing) -> None:
    """Make this process end when its launcher does, even when the launcher is killed
    with SIGKILL: a parent-death signal on Linux, and everywhere a thread that ends the
    process when the lifeline pipe closes."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != plumbing.launcher:  # it died before the line above took effect
        os._exit(1)
    threading.Thread(target=watch_lifeline, args=(plumbing.lifeline,), daemon=True,
                     name="lifeline").start()


def watch_lifeline(lifeline: Connection, on_loss=lambda: os._exit(1)) -> None:
    """Wait until the other end of `lifeline` closes (nothing is ever sent on it), then
    call `on_loss` (by default: end this process at once)."""
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    on_loss()


class _Terminal(io.TextIOWrapper):
    """A pipe to the launcher that stands for the launcher's terminal (so that progress
    bars, shown only on terminals, stay on)."""

    def isatty(self) -> bool:
        return True


def _redirect_output(plumbing: _Plumbing) -> None:
    """Point this process's stdout and stderr (the file descriptors, so that C code and
    subprocesses follow) at the launcher's pipes, line-buffered."""
    for name, fd, pipe in (("stdout", 1, plumbing.stdout), ("stderr", 2, plumbing.stderr)):
        if pipe is None:
            continue
        getattr(sys, name).flush()
        os.dup2(pipe.fileno(), fd)
        pipe.close()
        kind = _Terminal if name in plumbing.terminals else io.TextIOWrapper
        setattr(sys, name, kind(open(fd, "wb", closefd=False), encoding="utf-8",
                                errors="backslashreplace", line_buffering=True))


def _child(kind: str, config_path: str, member: int, fn, args, provider, ctx_options,
           out, plumbing: _Plumbing):
    """Entry point of a spawned process: report ("ok", who, result, stats) or ("error",
    who, traceback, the mesh id of the member it blames or None) on `out`."""
    who = "dealer" if kind == "dealer" else f"party {member}"
    _die_with_launcher(plumbing)
    _redirect_output(plumbing)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the launcher stops everyone
    tune_allocator()
    try:
        config = load_config(config_path)
        if kind == "dealer":
            out.put(("ok", who, run_cluster_dealer(config, announce_after=CHILD_NOTICE), None))
        else:
            result, stats = run_cluster_party(config, member, fn, args, None, provider,
                                              CHILD_NOTICE, **ctx_options)
            out.put(("ok", who, result, stats))
    except BaseException as exc:  # noqa: BLE001 - sent to the parent with the traceback
        out.put(("error", who, traceback.format_exc(), blamed_member(exc, member)))
        sys.exit(1)


def blamed_member(exc: BaseException, me: int | None = None) -> int | None:
    """The mesh id of the other member a network error blames (its `culprit`: see
    net.errors), or None: for any other error, and for one that member `me` caused."""
    culprit = getattr(exc, "culprit", None) if isinstance(exc, NetError) else None
    return None if culprit == me else culprit


def run_processes(fn, n_parties: int = 2, *, args=(), protocol: str = "dealer",
                  provider: str = "dealer", timeout: float = 60.0,
                  total_timeout: float | None = None, with_stats: bool = False,
                  relay_output: bool = True, **ctx_options) -> list:
    """Run `fn(ctx, *args)` as each party in its own process over ZeroMQ with CURVE.

    Returns the parties' results (with `with_stats`, (result, stats) pairs). `fn` must be
    importable by name (a module-level function) or a ScriptTarget; a script calling
    this needs `if __name__ == "__main__":` (each process imports the main module).
    `timeout` bounds every wait for a peer: to connect at start, and for each message (a
    dead or frozen peer is noticed sooner, by heartbeat); `total_timeout`, if given, the
    whole run. Each process's output lines come prefixed with its name ("[party 1] ";
    relay_output=False: as they are). Raises PartyFailed naming the member that caused
    the failure; every process is stopped either way, and at once on an interrupt
    (KeyboardInterrupt or any other BaseException). The processes die with this one.
    """
    if getattr(mp.current_process(), "_inheriting", False):
        raise RuntimeError("mpc.launcher.run_processes was called while a party process "
                           "was importing the main module: call it under "
                           "`if __name__ == \"__main__\":`")
    check_settings(protocol, n_parties, ctx_options.get("truncation", "exact"), provider)
    spawn = mp.get_context("spawn")
    out = spawn.Queue()
    terminals = frozenset(name for name in ("stdout", "stderr")
                          if getattr(getattr(sys, name), "isatty", lambda: False)())
    relay = OutputRelay(terminals) if relay_output else None
    lifeline_in, lifeline = spawn.Pipe(duplex=False)
    procs, grace = {}, 2.0
    with_dealer = needs_dealer(protocol, provider)
    with tempfile.TemporaryDirectory(prefix="mpc-cluster-") as tmp:
        config_path = str(make_local_cluster(Path(tmp), n_parties, timeout,
                                             with_dealer=with_dealer, protocol=protocol))
        members = [("party", p) for p in range(n_parties)]
        if with_dealer:
            members.append(("dealer", n_parties))
        try:
            for kind, member in members:
                who = "dealer" if kind == "dealer" else f"party {member}"
                pipes = {stream: _pipe(relay, who, stream) for stream in ("stdout", "stderr")}
                plumbing = _Plumbing(os.getpid(), lifeline_in, pipes["stdout"],
                                     pipes["stderr"], terminals)
                procs[who] = spawn.Process(target=_child, name=who, daemon=True, args=(
                    kind, config_path, member, fn, args, provider, ctx_options, out, plumbing))
                procs[who].start()
                for pipe in pipes.values():
                    if pipe is not None:
                        pipe.close()  # the child has its own copy
            lifeline_in.close()
            reports = _collect(procs, out, total_timeout, n_parties)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                grace = 0.0  # interrupted: no time for goodbyes
            raise
        finally:
            _stop(procs, grace)
            if relay is not None:
                relay.close()
            lifeline.close()
    results = [reports[f"party {p}"] for p in range(n_parties)]
    return results if with_stats else [r for r, _ in results]


def _pipe(relay: OutputRelay | None, who: str, stream: str) -> Connection | None:
    """A new pipe whose read end `relay` copies to `stream`; returns the write end (for
    the child), or None without a relay."""
    if relay is None:
        return None
    read, write = os.pipe()
    relay.add(who, read, stream)
    return Connection(write, readable=False)


def _collect(procs: dict, out, deadline_s: float | None, n_parties: int) -> dict:
    """Drain results until every process reported; on failure raise PartyFailed for the
    most likely root cause (see _root_cause). With `deadline_s`, TimeoutError after that."""
    reports, failures = {}, {}
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    settle_until = None
    while len(reports) + len(failures) < len(procs):
        now = time.monotonic()
        if settle_until is not None and now > settle_until:
            break
        if deadline is not None and now > deadline:
            missing = sorted(set(procs) - set(reports) - set(failures))
            raise TimeoutError(f"no result from {missing} within {deadline_s:g} s")
        try:
            status, who, value, extra = out.get(timeout=0.2)
        except queue.Empty:
            for w, p in procs.items():
                if w not in reports and w not in failures and p.exitcode is not None \
                        and p.exitcode != 0:
                    failures[w] = (f"exited with code {p.exitcode} without reporting a "
                                   "result (killed or crashed; see its output above)",
                                   True, None)
            if failures and settle_until is None:
                settle_until = time.monotonic() + 1.5
            continue
        if status == "error":
            blamed = None if extra is None else \
                f"party {extra}" if extra < n_parties else "dealer"
            failures[who] = (value, False, blamed)
            settle_until = settle_until or time.monotonic() + 1.5
        else:
            reports[who] = (value, extra)
    if failures:
        raise PartyFailed(*_root_cause(failures, procs))
    return reports


def _root_cause(failures: dict, procs: dict) -> tuple[str, str]:
    """(who, detail) of the failure that explains the others: a real error before a silent
    death, and that before the lost-peer and timeout errors the others raise because of
    it. When only such errors are left, follow whom each blames (A lost B, who had lost
    C...) to the member at the end of most chains: it caused the failure, even if it
    reported nothing (frozen, or stuck in local code)."""
    def rank(item):
        text, died, blamed = item[1]
        return 2 if blamed is not None else (1 if died else 0)

    def root(who):
        seen = set()
        while who in failures and failures[who][2] is not None and who not in seen:
            seen.add(who)
            who = failures[who][2]
        return who

    def also(who):
        others = [w for w in failures if w != who]
        return f"\n(then also failed: {', '.join(others)})" if others else ""

    who, (text, _, blamed) = min(failures.items(), key=rank)
    if blamed is None:
        return who, text + also(who)
    roots = [root(w) for w in failures]
    culprit = max(dict.fromkeys(roots), key=roots.count)
    if culprit in failures:
        return culprit, failures[culprit][0] + also(culprit)
    losers = [w for w, (_, _, b) in failures.items() if b == culprit] or list(failures)
    state = _state(procs[culprit]) if culprit in procs else "not a member of this run"
    return culprit, (f"{', '.join(losers)} lost it; it reported no error ({state}).\n"
                     f"{losers[0]}'s error:\n{failures[losers[0]][0]}" + also(culprit))


def _state(proc) -> str:
    """What a child that did not report is doing, as far as the OS says."""
    if proc.exitcode is not None:
        return f"exited with code {proc.exitcode}"
    try:
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "still running"
    return "stopped: SIGSTOP or a debugger" if state in "tT" else \
        "still running, but silent to its peers"


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
