"""ZeroMQ transport: a full mesh of encrypted, mutually authenticated TCP links.

Each party binds one ROUTER socket (a CURVE server) and connects one DEALER (a CURVE
client) to every peer's ROUTER: a party sends on its DEALERs and receives everything on
its ROUTER. A ZAP handler admits only the peers' public keys and labels each connection
with the id of the peer owning the key; that label, not the header's sender field, says
who sent a message, so a party with a valid key cannot speak for another.

Control messages (a hello handshake in start(), a goodbye in close()) use op names that
start with "__"; they never enter the data mailbox, so they cannot collide with user seqs.
Byte counters count data messages (header + payload) when they are taken by recv.

A mesh is used by one thread at a time (ZeroMQ sockets are not thread-safe).
"""

from __future__ import annotations

import math
import socket
import time
import warnings
import weakref
from collections.abc import Iterable, Mapping

import numpy as np
import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from net import wire
from net.errors import AuthError, NetError, PeerLost, PeerTimeout, ProtocolError
from net.keys import check_key
from net.stats import CommStats
from net.transport import Transport

CONTROL_PREFIX = "__"
_HELLO = "__hello"
_GOODBYE = "__goodbye"
_NOTHING = np.zeros(0, np.uint8)
MAX_REASON = 500  # bytes of a goodbye's reason (why a member left: an error, or nothing)

CLOSE_GRACE = 2.0
"""Seconds close() waits for links to peers that greeted us but are still connecting."""

LOSS_GRACE = 0.5
"""Seconds a peer's link must stay down before a wait on it fails with PeerLost: time
for its last messages (on the other TCP connection) to arrive, or for a transient
drop to reconnect."""

ZERO_COPY_BYTES = 1 << 20
"""Payloads from this size on are handed to ZeroMQ without a copy (about 8% of a large
multiplication's time on this machine); the sent array is made read-only so that a later
write to it fails loudly instead of changing what goes out."""

_LINK_STATES = {
    zmq.EVENT_CONNECT_DELAYED: "connecting",
    zmq.EVENT_CONNECT_RETRIED: "connection refused or unreachable, retrying",
    zmq.EVENT_CONNECTED: "TCP connected, handshake pending",
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "connected",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed (wrong server key?)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed (not a mesh peer?)",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "handshake failed: our key was rejected",
    zmq.EVENT_DISCONNECTED: "disconnected",
}
_MONITORED = sum(_LINK_STATES)  # distinct bit flags


class _PeerAuthenticator(ThreadAuthenticator):
    """ZAP handler admitting only the given z85 public keys; the User-Id of an admitted
    connection is the id of the peer owning the key."""

    def __init__(self, context: zmq.Context, ids_by_key: Mapping[bytes, int]):
        super().__init__(context)
        self._ids = dict(ids_by_key)
        self.configure_curve_callback("*", self)

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self._ids

    def curve_user_id(self, client_public_key: bytes) -> str:
        return str(self._ids[z85.encode(client_public_key)])


class ZmqMesh(Transport):
    """The Transport over ZeroMQ. `peers` maps every party id, this one included, to
    (tcp address, z85 public key); `talks_to` limits the links to some of them.
    `late_peers` may come and go: start() does not wait for them, a wait for their
    messages lasts `late_timeout` s, and sending to one that said goodbye raises PeerLost.

    Heartbeats tell slow from dead: every link is pinged (ZMTP PING/PONG, answered by the
    peer's ZeroMQ I/O thread even while its Python code is busy); a link silent for
    `heartbeat` s (default min(timeout, 10)) is dropped, so a frozen process or a vanished
    host is reported as PeerLost then, without waiting out `timeout`. A peer that is only
    slow keeps answering pings and fails nothing until a message is `timeout` s late."""

    def __init__(self, my_id: int, peers: Mapping[int, tuple[str, bytes]],
                 secret_key: bytes, public_key: bytes, *, timeout: float = 30.0,
                 connect_timeout: float = 30.0, curve: bool = True,
                 talks_to: Iterable[int] | None = None, late_peers: Iterable[int] = (),
                 late_timeout: float = 600.0, heartbeat: float | None = None):
        if my_id not in peers:
            raise ValueError(f"party {my_id} is not in the peers config (ids {sorted(peers)})")
        talks = set(peers) if talks_to is None else set(talks_to)
        if talks - set(peers):
            raise ValueError(f"party {my_id}: talks_to names parties {sorted(talks - set(peers))}"
                             f" that are not in the peers config (ids {sorted(peers)})")
        self.my_id = my_id
        self.peer_ids = tuple(sorted(talks - {my_id}))
        self.late_peers = frozenset(late_peers) & set(self.peer_ids)
        self.late_timeout = late_timeout
        self.timeout = timeout
        self.heartbeat = min(timeout, 10.0 if heartbeat is None else heartbeat)
        self.connect_timeout = connect_timeout
        self.stats = CommStats()
        self._peers = dict(peers)
        self._curve = curve
        self._keys = (public_key, secret_key)
        if curve:
            self._check_keys()
        else:
            warnings.warn(f"party {my_id}: ZmqMesh with curve=False: traffic is unencrypted "
                          f"and unauthenticated; use it only for local tests",
                          RuntimeWarning, stacklevel=2)
        self._ctx: zmq.Context | None = None
        self._release: weakref.finalize | None = None
        self._sockets: list[zmq.Socket] = []   # every socket, for _release
        self._router: zmq.Socket | None = None
        self._dealers: dict[int, zmq.Socket] = {}
        self._monitors: dict[zmq.Socket, int] = {}
        self._poller = zmq.Poller()
        self._mailbox: dict[tuple[int, int], tuple[str, np.ndarray, int]] = {}
        self._hello: set[int] = set()
        self._gone: dict[int, str] = {}        # peers that said goodbye -> why they left
        self._down: dict[int, float] = {}      # peer -> when our link to it dropped
        self._link: dict[int, str] = {}        # peer -> state of our link, for error messages
        self._closed = False

    def _check_keys(self) -> None:
        me = self.my_id
        public, secret = self._keys
        check_key(public, f"party {me} public key")
        check_key(secret, f"party {me} secret key")
        if zmq.curve_public(secret) != public:
            raise AuthError(f"party {me}: the public key does not belong to the secret key")
        if self._peers[me][1] != public:
            raise AuthError(f"party {me}: its public key is not the one the peers config "
                            f"lists for party {me}")
        owners: dict[bytes, int] = {}
        for p, (_, key) in self._peers.items():
            check_key(key, f"party {p} public key in the peers config")
            if key in owners:
                raise AuthError(f"parties {owners[key]} and {p} have the same public key")
            owners[key] = p

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "ZmqMesh":
        """Bind, connect to every peer, and wait until each has said hello (at most
        connect_timeout s). Raises PeerTimeout naming the peers that did not."""
        if self._ctx is not None:
            raise NetError(f"party {self.my_id}: mesh already started")
        self._ctx = zmq.Context()
        auth = _PeerAuthenticator(self._ctx, {self._peers[p][1]: p for p in self.peer_ids}) \
            if self._curve else None
        # Runs once: from close(), or when the mesh is garbage-collected unclosed (before
        # pyzmq's own Context finalizer, which can hang on sockets it no longer sees).
        self._release = weakref.finalize(self, _release, self._ctx, self._sockets, auth)
        try:
            if auth is not None:
                auth.start()   # before bind: without a ZAP handler CURVE admits anyone
            self._open_sockets()
            self._handshake()
        except BaseException:
            self.close()
            raise
        return self

    def _socket(self, kind: int) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        self._sockets.append(sock)
        sock.linger = 0
        sock.sndhwm = 0          # unbounded queues: messages are large arrays
        sock.rcvhwm = 0
        sock.sndtimeo = int(self.timeout * 1000)
        return sock

    def _open_sockets(self) -> None:
        me, (public, secret) = self.my_id, self._keys
        self._router = self._socket(zmq.ROUTER)
        if self._curve:
            self._router.curve_server = True
            self._router.curve_secretkey = secret
            self._router.curve_publickey = public
        address = self._peers[me][0]
        try:
            self._router.bind(address)
        except zmq.ZMQError as e:
            raise NetError(f"party {me}: cannot listen on {address}: {e.strerror}") from None
        self._poller.register(self._router, zmq.POLLIN)
        for p in self.peer_ids:
            dealer = self._dealers[p] = self._socket(zmq.DEALER)
            if self._curve:
                dealer.curve_secretkey = secret
                dealer.curve_publickey = public
                dealer.curve_serverkey = self._peers[p][1]
            else:
                dealer.routing_id = str(me).encode()   # the only sender id without CURVE
            dealer.copy_threshold = 0   # let close() track its zero-copy goodbye
            silence = max(1, int(self.heartbeat * 1000))
            dealer.heartbeat_ivl = max(1, silence // 4)
            dealer.heartbeat_timeout = silence
            dealer.heartbeat_ttl = silence
            monitor = dealer.get_monitor_socket(_MONITORED)
            self._sockets.append(monitor)
            self._monitors[monitor] = p
            self._poller.register(monitor, zmq.POLLIN)
            self._link[p] = "not connected yet"
            try:
                dealer.connect(self._peers[p][0])
            except zmq.ZMQError as e:
                raise NetError(f"party {me}: cannot connect to party {p} at "
                               f"{self._peers[p][0]}: {e.strerror}") from None

    def _handshake(self) -> None:
        for p in self.peer_ids:
            self._send(p, 0, _HELLO, _NOTHING)
        deadline = time.monotonic() + self.connect_timeout
        while missing := [p for p in self.peer_ids
                          if p not in self._hello and p not in self.late_peers]:
            left = deadline - time.monotonic()
            if left <= 0:
                links = "; ".join(f"link to {p}: {self._link[p]}" for p in missing)
                raise PeerTimeout(missing[0], (
                    f"party {self.my_id}: peers {missing} did not connect within "
                    f"{self.connect_timeout:g} s (wrong address, wrong key, or not started; "
                    f"{links})"))
            self._pump(left)

    def close(self, reason: str = "") -> None:
        """Say goodbye to the peers still linked, wait until everything queued for them has
        been handed to TCP (at most `timeout` s; no longer once a link drops), then release
        sockets and the auth thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._ctx is None:
            return
        monitors = zmq.Poller()
        for monitor in self._monitors:
            monitors.register(monitor, zmq.POLLIN)
            self._read_monitor(monitor)
        # A peer that said hello may not yet have our own hello (our link to it still
        # connecting): give such links a moment, or leaving at once would lose what is
        # queued for them and leave the peer waiting for a hello that never comes.
        grace = time.monotonic() + min(self.timeout, CLOSE_GRACE)
        while time.monotonic() < grace and any(
                self._link.get(p) != "connected" for p in self._hello
                if p in self._dealers and p not in self._gone and p not in self._down):
            for monitor, _ in monitors.poll(10):
                self._read_monitor(monitor)
        queued = {p: self._goodbye(p, reason) for p in self._dealers
                  if self._link.get(p) == "connected" and p not in self._gone}
        deadline = time.monotonic() + self.timeout
        while any(not done.done and p not in self._down for p, done in queued.items()) \
                and time.monotonic() < deadline:
            for monitor, _ in monitors.poll(10):
                self._read_monitor(monitor)
        self._release()

    def _goodbye(self, peer: int, reason: str) -> zmq.MessageTracker:
        """Queue a goodbye for `peer`. Its tracker is done once the goodbye has left the
        queue, and with it everything sent to `peer` before."""
        text = np.frombuffer(reason.encode()[:MAX_REASON], dtype=np.uint8)
        header, payload = wire.encode(self.my_id, 0, _GOODBYE, text)
        dealer = self._dealers[peer]
        dealer.send(header, zmq.SNDMORE)
        return dealer.send(payload, copy=False, track=True)

    def __enter__(self) -> "ZmqMesh":
        return self if self._ctx is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------

    def send(self, to: int, seq: int, op: str, array: np.ndarray) -> None:
        """Queue `array` for peer `to`. Payloads under ZERO_COPY_BYTES are copied, so the
        caller may reuse them at once; larger arrays go out without a copy and are made
        read-only (do not write to them, or to their base, after sending)."""
        if op.startswith(CONTROL_PREFIX):
            raise ValueError(f"op names starting with {CONTROL_PREFIX!r} are reserved "
                             f"for the mesh: {op!r}")
        self._require_peer(to)
        if to in self._gone:
            raise PeerLost(to, f"party {self.my_id}: cannot send message {seq} to peer {to}, "
                               f"which has left the mesh{self._why(to)}")
        self.stats.sent(self._send(to, seq, op, array))

    def _send(self, to: int, seq: int, op: str, array: np.ndarray) -> int:
        header, payload = wire.encode(self.my_id, seq, op, array)
        dealer = self._dealers[to]
        zero_copy = payload.nbytes >= ZERO_COPY_BYTES
        if zero_copy and isinstance(array, np.ndarray):
            array.flags.writeable = False  # the I/O thread reads it after we return
        try:
            dealer.send_multipart((header, payload), copy=not zero_copy)
        except zmq.Again:
            raise PeerTimeout(to, f"party {self.my_id}: could not queue message {seq} for "
                                  f"party {to} within {self.timeout:g} s") from None
        return len(header) + payload.nbytes

    def _require_peer(self, peer: int) -> None:
        if self._router is None or self._closed:
            raise NetError(f"party {self.my_id}: the mesh is not started or already closed")
        if peer not in self._dealers:
            raise ValueError(f"party {self.my_id} has no link to party {peer} "
                             f"(its peers: {list(self.peer_ids)})")

    # -- receiving -------------------------------------------------------------------------

    def _wait(self, frm: int, seq: int) -> tuple[str, np.ndarray]:
        self._require_peer(frm)
        me, key = self.my_id, (frm, seq)
        patience = self.late_timeout if frm in self.late_peers else self.timeout
        deadline = time.monotonic() + patience
        while key not in self._mailbox:
            now = time.monotonic()
            if frm in self._gone:
                raise PeerLost(frm, f"party {me}: peer {frm} closed the mesh before sending "
                                    f"message {seq}{self._why(frm)}")
            lost = self._down.get(frm)
            if lost is not None and now - lost >= LOSS_GRACE:
                raise PeerLost(frm, f"party {me}: peer {frm} disconnected (process died or "
                                    f"network failed) before sending message {seq}")
            if now >= deadline:
                raise PeerTimeout(frm, f"party {me}: no message {seq} from peer {frm} within "
                                       f"{patience:g} s")
            wake = deadline if lost is None else min(deadline, lost + LOSS_GRACE)
            self._pump(wake - now)
        op, array, nbytes = self._mailbox.pop(key)
        self.stats.received(nbytes)
        return op, array

    def _pump(self, timeout: float) -> None:
        """Wait up to `timeout` s for traffic or link events and file all that arrived."""
        for sock, _ in self._poller.poll(math.ceil(max(timeout, 0) * 1000)):
            if sock is self._router:
                while (frames := self._recv_nowait()) is not None:
                    self._file(frames)
            else:
                self._read_monitor(sock)

    def _recv_nowait(self) -> list[zmq.Frame] | None:
        try:
            return self._router.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None

    def _file(self, frames: list[zmq.Frame]) -> None:
        """Check one received message and put it in the mailbox (or act on a control)."""
        me = self.my_id
        if len(frames) != 3:
            raise ProtocolError(f"party {me}: received a message of {len(frames) - 1} frames, "
                                f"expected 2")
        routing_id, header, payload = frames
        who = self._authenticated_sender(routing_id, header)
        try:
            sender, seq, op, array = wire.decode(header.buffer, payload.buffer)
        except ProtocolError as e:
            raise ProtocolError(f"party {me}: malformed message from party {who}: {e}") from None
        if sender != who:
            raise ProtocolError(f"party {me}: refused message {seq} ('{op}') from party {who}, "
                                f"whose header claims it is from party {sender}")
        if op.startswith(CONTROL_PREFIX):
            self._control(who, op, array)
        elif (who, seq) in self._mailbox:
            raise ProtocolError(f"party {me}: party {who} sent message {seq} twice")
        else:
            self._mailbox[who, seq] = (op, array, len(header) + len(payload))

    def _why(self, peer: int) -> str:
        """' (it said: ...)' when a departed peer gave a reason, so that an error caused
        by another party's loss still names the party lost first."""
        reason = self._gone.get(peer)
        return f" (it said: {reason})" if reason else ""

    def _authenticated_sender(self, routing_id: zmq.Frame, header: zmq.Frame) -> int:
        """The peer id of a message's connection: the ZAP User-Id under CURVE, the DEALER's
        routing id (as unauthenticated as everything else) in plaintext mode."""
        label = header.get("User-Id") if self._curve else routing_id.bytes.decode("latin-1")
        if not (label.isascii() and label.isdigit()) or int(label) not in self._dealers:
            raise ProtocolError(f"party {self.my_id}: message from a connection identified as "
                                f"{label!r}, which is not one of its peers {list(self.peer_ids)}")
        return int(label)

    def _control(self, who: int, op: str, payload: np.ndarray) -> None:
        if op == _HELLO:
            self._hello.add(who)
            self._gone.pop(who, None)
        elif op == _GOODBYE:
            text = bytes(payload[:MAX_REASON]).decode("utf-8", "replace")
            self._gone[who] = "".join(c if c.isprintable() else " " for c in text)
        else:
            raise ProtocolError(f"party {self.my_id}: unknown control message '{op}' from "
                                f"party {who}")

    def _read_monitor(self, monitor: zmq.Socket) -> None:
        """Track the state of our link to one peer from its DEALER's socket events."""
        peer = self._monitors[monitor]
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            failed = self._link[peer].startswith("handshake failed")
            if not failed or event == zmq.EVENT_HANDSHAKE_SUCCEEDED:  # keep the telling state
                self._link[peer] = _LINK_STATES.get(event, self._link[peer])
            if event == zmq.EVENT_DISCONNECTED:
                self._down.setdefault(peer, time.monotonic())
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._down.pop(peer, None)


def _release(ctx: zmq.Context, sockets: list[zmq.Socket],
             auth: _PeerAuthenticator | None) -> None:
    """Close a mesh's sockets (newest first: monitors before their DEALERs), stop its
    authenticator and terminate its context."""
    for sock in reversed(sockets):
        sock.close()
    if auth is not None:
        auth.stop()
    ctx.term()


def free_tcp_addresses(n: int, host: str = "127.0.0.1") -> list[str]:
    """`n` distinct "tcp://host:port" addresses whose ports were free a moment ago (another
    process may still take one before it is bound: fine for tests and local runs)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [f"tcp://{host}:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()
