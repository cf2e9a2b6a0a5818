"""Run one function as every party, in this process (threads, in-memory transport).

For tests and notebooks: `run_local(fn, n_parties=3)` calls `fn(ctx, *args)` once per party
and returns the list of their results. A failure in any party is raised here with the
party's id (the others are stopped through their lost peer, not left hanging).
For real processes over ZeroMQ see mpc.launcher.run_processes.
"""

from __future__ import annotations

import threading
import traceback

from net import MemoryHub

from mpc.context import Context
from mpc.protocols import check_settings, make_protocol, needs_dealer
from mpc.protocols.dealer.providers.dealer import serve_dealer


class PartyFailed(RuntimeError):
    """A party raised; carries its id and its traceback text."""

    def __init__(self, party: str, detail: str):
        super().__init__(f"{party} failed:\n{detail}")
        self.party = party
        self.detail = detail


def run_party(fn, pid: int, n_parties: int, transport, provider: str, args=(),
              protocol: str = "dealer", **ctx_options):
    """Build the context for one party, run `fn(ctx, *args)`, and release the protocol."""
    ctx = Context(pid, n_parties, transport,
                  make_protocol(protocol, pid, n_parties, transport, provider), **ctx_options)
    result = fn(ctx, *args)
    ctx.close()
    return result


def run_local(fn, n_parties: int = 2, *, args=(), protocol: str = "dealer",
              provider: str = "dealer", timeout: float = 60.0, check: bool = True,
              **ctx_options) -> list:
    """Run `fn(ctx, *args)` as each of `n_parties` parties in threads; return their results.
    `protocol` is "dealer" (with `provider`: "dealer", a dealer thread, or the insecure
    "insecure-seeded" for tests) or "replicated" (3 parties, no dealer).

    Checked mode is on by default here (`check=False` to turn it off, e.g. to count an
    operation's own rounds and bytes, or to provoke an overflow on purpose): every
    truncation result is verified to be inside the range (mpc.protocols.range_check), so
    a test whose values overflow fails with FixedPointRangeError instead of comparing
    garbage."""
    check_settings(protocol, n_parties, ctx_options.get("truncation", "exact"), provider)
    with_dealer = needs_dealer(protocol, provider)
    hub = MemoryHub(n_parties + (1 if with_dealer else 0), timeout=timeout)
    results: dict[int, object] = {}
    failures: list[tuple[str, BaseException, str]] = []

    def party(pid: int) -> None:
        transport = hub.transport(pid)
        try:
            results[pid] = run_party(fn, pid, n_parties, transport, provider, args, protocol,
                                     check=check, **ctx_options)
        except BaseException as exc:  # noqa: BLE001 - reported below with the party id
            failures.append((f"party {pid}", exc, traceback.format_exc()))
        finally:
            transport.close()

    def dealer() -> None:
        transport = hub.transport(n_parties)
        try:
            serve_dealer(transport, n_parties)
        except BaseException as exc:  # noqa: BLE001
            failures.append(("dealer", exc, traceback.format_exc()))
        finally:
            transport.close()

    threads = [threading.Thread(target=party, args=(p,), daemon=True) for p in range(n_parties)]
    if with_dealer:
        threads.append(threading.Thread(target=dealer, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    if any(t.is_alive() for t in threads):
        raise TimeoutError(f"run_local: parties still running after {timeout + 5:g} s")
    if failures:
        who, exc, text = failures[0]
        raise PartyFailed(who, text) from exc
    return [results[p] for p in range(n_parties)]
