"""The accepting side of a member: who may connect, and a trace of who was turned away.

A Gatekeeper thread answers ZAP requests (ZeroMQ's authentication protocol, RFC 27) for
the member's CURVE server socket, admitting only the peers' public keys and labelling each
admitted connection with the peer's id, and watches that socket's monitor events. Every
refused connection is logged on the `net` logger (a warning, so on stderr even when the
program configures no logging), one line per source address and cause, rate-limited:

- an unknown public key (the ZAP handler refused it);
- a CURVE handshake that failed to decrypt (the client holds a wrong key for us), or a
  client that does not speak ZMTP or CURVE (garbage bytes, a plaintext peer);
- a connection closed before any handshake (a port scan, a health check, garbage);
- on the bulk port (see net.bulk), which speaks plaintext ZMTP, a client that does not
  speak ZMTP, and (logged by the mesh) every frame that fails authentication.

The monitor names accepted connections by file descriptor only (EVENT_ACCEPTED's value),
so the source address is read with getpeername when the connection is accepted (one that
is already closed by then is logged as from "an unknown address"); a
connection's failure is the HANDSHAKE_FAILED event emitted right before its DISCONNECTED
(a refused key's DISCONNECTED may come later: the ZAP handler has logged those). A
connection that closes with no handshake event is logged only if no handshake succeeded
and no key was refused since it was accepted (successes carry no descriptor): rather a
missed line than a false one.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import zmq
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from net.links import protocol_error

log = logging.getLogger("net")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
LOG_INTERVAL = 10.0
"""Seconds between two log lines for the same source address and cause."""
MAX_SOURCES = 256
"""Distinct (address, cause) pairs tracked at once; more are counted together."""
ROUTER_EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                 | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                 | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class RefusalLog:
    """Warnings about refused connections, at most one per (address, cause) every
    `interval` s; the ones held back are counted and reported with the next line for that
    source, or by flush(). `recent` keeps the last few lines for error messages."""

    def __init__(self, who: str, interval: float = LOG_INTERVAL, max_sources: int = MAX_SOURCES):
        self.who = who
        self.interval = interval
        self.max_sources = max_sources
        self.recent: collections.deque[str] = collections.deque(maxlen=8)
        self._sources: dict[tuple[str, str], list] = {}   # -> [last logged at, held back]
        self._lock = threading.Lock()

    def refused(self, address: str, cause: str, detail: str = "", now: float | None = None,
                what: str = "a connection") -> None:
        """One refused connection (or `what` else: "a bulk frame") from `address` (an IP,
        perhaps with a port) for `cause` (a short phrase; `detail` adds what varies, such
        as the key)."""
        now = time.monotonic() if now is None else now
        host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
        line = f"{self.who} refused {what} from {address}: {cause}{detail}"
        with self._lock:
            self.recent.append(line)
            key = (host, cause)
            if key not in self._sources and len(self._sources) >= self.max_sources:
                self._forget(now)
                if len(self._sources) >= self.max_sources:
                    key = ("other addresses", cause)
            entry = self._sources.get(key)
            if entry is not None and now - entry[0] < self.interval:
                entry[1] += 1
                return
            held = entry[1] if entry else 0
            self._sources[key] = [now, 0]
        log.warning(line + (f" ({held} more like it from {host} in the last "
                            f"{now - entry[0]:.0f} s)" if held else ""))

    def flush(self, now: float | None = None, force: bool = False) -> None:
        """Report the connections held back for longer than the interval (all: `force`)."""
        now = time.monotonic() if now is None else now
        lines = []
        with self._lock:
            for (host, cause), entry in self._sources.items():
                if entry[1] and (force or now - entry[0] >= self.interval):
                    lines.append(f"{self.who} refused {entry[1]} more connection(s) from {host} "
                                 f"in the last {now - entry[0]:.0f} s: {cause}")
                    entry[:] = [now, 0]
            self._forget(now)
        for line in lines:
            log.warning(line)

    def _forget(self, now: float) -> None:
        for key in [k for k, e in self._sources.items()
                    if not e[1] and now - e[0] >= self.interval]:
            del self._sources[key]


class Gatekeeper(threading.Thread):
    """ZAP handler and refusal logger for one member's listening socket.

    Create it before the socket is bound (it binds the ZAP endpoint at once: without a ZAP
    handler, libzmq's CURVE server admits every key), `watch` the socket's monitor, then
    start() it; stop() after the socket is closed. `admitted` maps the z85 public keys
    admitted to their member ids; `members` every member's key, to name a refused one.
    With `curve=False` there is no ZAP handler (plaintext admits anyone): only the log.
    `name` says how the log calls a member ("party 2", "dealer")."""

    def __init__(self, ctx: zmq.Context, me: int, admitted: Mapping[bytes, int],
                 members: Mapping[bytes, int], listen: str, curve: bool = True,
                 name: Callable[[int], str] = "party {}".format):
        super().__init__(name=f"net-gate-{me}", daemon=True)
        self.me = me
        self._name = name
        self.log = RefusalLog(name(me))
        self._admitted = dict(admitted)
        self._members = dict(members)
        self._listen = listen
        self._zap = None
        if curve:
            self._zap = ctx.socket(zmq.REP)
            self._zap.linger = 0
            self._zap.bind(ZAP_ENDPOINT)
        self._wake = ctx.socket(zmq.PAIR)
        self._wake.linger = 0
        self._wake_end = f"inproc://net-gate-{id(self)}"
        self._wake.bind(self._wake_end)
        self._waker = ctx.socket(zmq.PAIR)
        self._waker.linger = 0
        self._waker.connect(self._wake_end)
        self._watched: dict[zmq.Socket, _Watched] = {}

    def watch(self, monitor: zmq.Socket, listen: str | None = None) -> None:
        """A listening socket's monitor (ROUTER_EVENTS), read by this thread from now on;
        `listen` is that socket's address if it is not the member's own (the bulk port)."""
        port = (listen or self._listen).rpartition(":")[2]
        self._watched[monitor] = _Watched(int(port) if port.isdigit() else None)

    def stop(self) -> None:
        """End the thread, close its sockets and report what the log held back."""
        if self.is_alive():
            self._waker.send(b"")
            self.join()
        else:
            self._close()
        self._waker.close()

    def run(self) -> None:
        poller = zmq.Poller()
        for sock in (self._zap, self._wake, *self._watched):
            if sock is not None:
                poller.register(sock, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll(1000))
                if self._wake in ready:
                    return
                if self._zap in ready:
                    self._zap.send_multipart(self._answer(self._zap.recv_multipart()))
                for monitor, watched in self._watched.items():
                    while monitor in ready and monitor.poll(0):
                        try:
                            self._watch(watched, parse_monitor_message(monitor.recv_multipart()))
                        except Exception:  # noqa: BLE001 - the log must not stop the gate
                            log.exception("party %d: could not read a socket event", self.me)
                self.log.flush()
        finally:
            self._close()

    def _close(self) -> None:
        for sock in (self._zap, self._wake, *self._watched):
            if sock is not None:
                sock.close(0)
        self.log.flush(force=True)

    # -- ZAP ---------------------------------------------------------------------------------

    def _answer(self, request: list[bytes]) -> list[bytes]:
        """The reply to one ZAP request: 200 with the peer's id as User-Id, or 400."""
        if len(request) < 6:   # not from libzmq; a REP socket must answer all the same
            return [b"1.0", request[1] if len(request) > 1 else b"", b"400", b"Bad request",
                    b"", b""]
        version, request_id, _domain, address, _identity, mechanism = request[:6]
        key = z85.encode(request[6]) if mechanism == b"CURVE" and len(request) == 7 and \
            len(request[6]) == 32 else None
        peer = self._admitted.get(key)
        if peer is not None:
            return [version, request_id, b"200", b"OK", str(peer).encode(), b""]
        try:
            self._log_refused(address, mechanism, key)
        except Exception:  # noqa: BLE001 - refuse all the same
            log.exception("party %d: could not log a refused key", self.me)
        return [version, request_id, b"400", b"Unknown key", b"", b""]

    def _log_refused(self, address: bytes, mechanism: bytes, key: bytes | None) -> None:
        source = address.decode("latin-1") or "an unknown address"
        if key is None:
            self.log.refused(source, f"{mechanism.decode('latin-1')} is not CURVE")
        elif key in self._members:
            self.log.refused(source, "the key of a member it does not link to",
                             f" ({self._name(self._members[key])}, key {key.decode()})")
        else:
            self.log.refused(source, "a public key that is not in its peers config",
                             f" ({key.decode()})")

    # -- the listening socket's events ---------------------------------------------------

    def _watch(self, w: "_Watched", event: dict) -> None:
        kind, value = event["event"], event["value"]
        if kind == zmq.EVENT_ACCEPTED:
            w.accepted[value] = (self._source(value, w.port), w.successes)
        elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            w.successes += 1
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            w.refused_keys += 1   # its DISCONNECTED may come later (after an ERROR)
        elif kind in (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
            w.last_failure = (kind, value)
            return
        elif kind == zmq.EVENT_DISCONNECTED:
            source, successes = w.accepted.pop(value, (None, None))
            failure, w.last_failure = w.last_failure, None
            if source is None:
                return
            if failure is not None:
                self._failed(source, *failure)
            elif w.refused_keys:
                w.refused_keys -= 1   # most likely a key the ZAP handler refused (logged)
            elif successes == w.successes:
                self.log.refused(source, "it closed the connection before any handshake "
                                         "(not a ZeroMQ peer: garbage, a port scan or a "
                                         "health check?)")
            return
        w.last_failure = None

    def _failed(self, source: str, kind: int, value: int) -> None:
        if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self.log.refused(source, protocol_error(value))
        else:
            name = errno.errorcode.get(value, str(value))
            self.log.refused(source, f"its handshake did not complete ({name}: it hung up "
                                     f"or stalled)")

    @staticmethod
    def _source(fd: int, port: int | None) -> str:
        """"ip:port" of the client on accepted descriptor `fd` (still libzmq's: read it
        through a duplicate), if `fd` is still a connection to listening port `port`."""
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                local, remote = sock.getsockname(), sock.getpeername()
        except OSError:
            return "an unknown address"
        if port is not None and local[1] != port:
            return "an unknown address"
        return f"{remote[0]}:{remote[1]}"


@dataclass
class _Watched:
    """What the gatekeeper tracks of one listening socket's connections."""

    port: int | None
    accepted: dict[int, tuple[str, int]] = field(default_factory=dict)  # fd -> (source,
    successes: int = 0                                                  # successes then)
    refused_keys: int = 0   # refused by ZAP, their disconnection not seen yet
    last_failure: tuple[int, int] | None = None
