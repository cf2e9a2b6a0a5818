"""ZeroMQ transport: a full mesh of encrypted, mutually authenticated TCP links.

Each party binds one ROUTER socket (a CURVE server) and connects one DEALER (a CURVE
client) to every peer's ROUTER: a party sends on its DEALERs and receives everything on
its ROUTER. A ZAP handler admits only the peers' public keys and labels each connection
with the id of the peer owning the key; that label, not the header's sender field, says
who sent a message, so a party with a valid key cannot speak for another.

Bulk channel: payloads from `bulk_from` bytes (BULK_BYTES, 64 KiB) to 2 GiB skip CurveZMQ's
cipher, the larger part of a party's CPU on large multiplications. Each member also binds
a plaintext (NULL mechanism) ROUTER on an ephemeral port of its own host and, once a peer
has said hello, connects a second DEALER to that peer's bulk port (on the host of the
peer's address, so a proxied or translated address may lead elsewhere: the link's first
frame is a probe, and the link carries data only once the peer has said over CURVE that
it opened it; start() gives both ways BULK_GRACE s to come up). Every bulk message is
sealed on its own with AES-256-GCM (net.bulk: only the sender id and a per-direction
counter are in clear; the header is sealed and binds the payload). The key a peer is to
send on is drawn at random by the receiver and travels, with its bulk port, in the hello
over the CURVE link: confidential, bound to the peer's CURVE identity, used by one process
from counter 0. The receiver takes exactly the next counter from each sender: a frame that
does not open (a stranger's, a wrong key, any flipped bit) or repeats a counter (a
replay) is logged on the `net` logger and dropped, so the honest traffic goes on; an
authentic frame that skips counters (frames lost or reordered) fails the wait with a
ProtocolError naming the sender. Small messages, control messages and everything sent
while a peer's bulk link does not work (not yet up, unreachable, or leading elsewhere) go
on the CURVE link. Loss diagnoses come from the CURVE link alone: a message lost on the
bulk link with its sender ends in the PeerLost or PeerTimeout of that link; one lost or withheld
on the network ends in the PeerTimeout of the wait for it (naming the bulk link as a
cause), or in the ProtocolError of the next frame's gap. close() hands every bulk
frame to TCP before its goodbye and tells the peer how many it sent ("__bulk_sent", on a
link the peer confirmed): a wait on a peer that said goodbye goes on while its bulk frames
are still on the way, and fails naming them if they never come.
Without CURVE (`curve=False`) or with `bulk_from=None` there is no bulk channel.

Control messages (a hello handshake in start(), a goodbye in close()) use op names that
start with "__"; they never enter the data mailbox, so they cannot collide with user seqs.
Byte counters count data messages (header + payload) when they are taken by recv, on
either link: the bulk link's 42 bytes a message (prefix, two tags) are not counted, nor
are ZMTP's or CURVE's framing and tags.

A mesh is used by one thread at a time (ZeroMQ sockets are not thread-safe).
"""

from __future__ import annotations

import math
import socket
import time
import warnings
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from net import bulk, wire
from net.errors import (AuthError, HandshakeRefused, NetError, PeerLost, PeerTimeout,
                        PeerUnreachable, ProtocolError)
from net.gate import ROUTER_EVENTS, Gatekeeper
from net.keys import check_key
from net.links import MONITORED, Link, protocol_error
from net.mailbox import MAX_BYTES, Mailbox
from net.stats import CommStats
from net.transport import Transport

CONTROL_PREFIX = "__"
_HELLO = "__hello"
_GOODBYE = "__goodbye"
_BULK_SENT = "__bulk_sent"   # before a goodbye: its seq is the number of bulk frames sent
_BULK_PROBE = "__bulk_probe"   # the first frame on a bulk link, answered on CURVE by:
_BULK_OK = "__bulk_ok"         # the peer opened our probe: the link reaches it
_NOTHING = np.zeros(0, np.uint8)
MAX_REASON = 500  # bytes of a goodbye's reason (why a member left: an error, or nothing)

CLOSE_GRACE = 2.0
"""Seconds close() waits for links that are still connecting."""

LOSS_GRACE = 0.5
"""Seconds a peer's link must stay down before a wait on it fails with PeerLost: time
for its last messages (on the other TCP connection) to arrive, or for a transient
drop to reconnect."""

ZERO_COPY_BYTES = 1 << 20
"""Payloads from this size on are handed to ZeroMQ without a copy (about 8% of a large
multiplication's time on this machine); the sent array is made read-only so that a later
write to it fails loudly instead of changing what goes out."""

REACH_MARGIN = 0.5
"""Seconds after a peer's hello from which a refused connection to its address proves the
address wrong (earlier refusals may predate the peer's bind)."""

REACH_PATIENCE = 5.0
"""Seconds after a peer's hello within which our own link to it must come up."""

REFUSED_LINGER = 2.0
"""Seconds a member whose key a peer refused stays reachable before it leaves, so that
the peer's own link to it fails its handshake too and the peer learns that its config
holds a wrong key for this member (instead of finding nobody at the address)."""

CHECK_EVERY = 1.0
"""Seconds between two looks at the links while waiting for nothing else."""

BULK_BYTES = 1 << 16
"""Payloads from this size on go on the bulk channel (see the module docstring)."""

BULK_GRACE = 1.0
"""Seconds start() waits, after the hellos, for the bulk links to come up and answer their
probes; a message sent while a peer's bulk link does not work goes on the CURVE link."""


class ZmqMesh(Transport):
    """The Transport over ZeroMQ. `peers` maps every party id, this one included, to
    (tcp address, z85 public key); `talks_to` limits the links to some of them.
    `late_peers` may come and go: start() does not wait for them, a wait for their
    messages lasts `late_timeout` s, and sending to one that said goodbye raises PeerLost.
    Sending to another peer that said goodbye raises PeerLost if it left with an error,
    and does nothing if it left in peace (its part done, nothing there needs the message:
    say, randomness the dealer sends ahead on a guess).

    Heartbeats tell slow from dead: every link is pinged (ZMTP PING/PONG, answered by the
    peer's ZeroMQ I/O thread even while its Python code is busy); a link silent for
    `heartbeat` s (default min(timeout / 2, 10)) is dropped, so a frozen process or a
    vanished host is reported as PeerLost then, without waiting out `timeout`. A peer that
    is only slow keeps answering pings and fails nothing until a message is `timeout` s
    late; the PeerTimeout then says it is alive (stuck or slow), not dead.

    Diagnoses: errors name the member and the address or key at fault, and carry it as
    `culprit` (see net.errors). `key_file` and `peers_file` (where this member's secret
    key and the peers config came from) and `names` (members that are not called "party
    N" in messages: "dealer", "owner x") only make the messages more precise. Refused
    connections are logged on the `net` logger (see net.gate). The mailbox is bounded
    (net.mailbox): `mailbox_bytes` per sender. Payloads from `bulk_from` bytes on take the
    bulk channel (module docstring; None: never)."""

    def __init__(self, my_id: int, peers: Mapping[int, tuple[str, bytes]],
                 secret_key: bytes, public_key: bytes, *, timeout: float = 30.0,
                 connect_timeout: float = 30.0, curve: bool = True,
                 talks_to: Iterable[int] | None = None, late_peers: Iterable[int] = (),
                 late_timeout: float = 600.0, heartbeat: float | None = None,
                 key_file: str | None = None, peers_file: str | None = None,
                 mailbox_bytes: int = MAX_BYTES, names: Mapping[int, str] | None = None,
                 bulk_from: int | None = BULK_BYTES):
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
        self.heartbeat = min(timeout / 2, 10.0) if heartbeat is None else min(timeout, heartbeat)
        self.connect_timeout = connect_timeout
        self.stats = CommStats()
        self._peers = dict(peers)
        self._curve = curve
        self._keys = (public_key, secret_key)
        self._key_file = key_file
        self._peers_file = peers_file
        self._names = dict(names or {})
        self._bulk_from = bulk_from if curve and peers[my_id][0].startswith("tcp://") else None
        if curve:
            self._check_keys()
        else:
            warnings.warn(f"party {my_id}: ZmqMesh with curve=False: traffic is unencrypted "
                          f"and unauthenticated; use it only for local tests",
                          RuntimeWarning, stacklevel=2)
        self._ctx: zmq.Context | None = None
        self._release: weakref.finalize | None = None
        self._gate: Gatekeeper | None = None
        self._sockets: list[zmq.Socket] = []   # every socket, for _release
        self._router: zmq.Socket | None = None
        self._dealers: dict[int, zmq.Socket] = {}
        self._backs: dict[zmq.Socket, int] = {}     # DEALER -> its peer (goodbyes come back)
        self._monitors: dict[zmq.Socket, int] = {}
        self._poller = zmq.Poller()
        self._mailbox = Mailbox(my_id, mailbox_bytes, name=self._party)
        self._hello: dict[int, float] = {}     # peers that said hello -> when
        self._routes: dict[int, bytes] = {}    # peer -> routing id of its link to us
        self._gone: dict[int, tuple[str, int]] = {}   # peers that said goodbye -> (why, culprit)
        self._links: dict[int, Link] = {}      # peer -> what we know of our link to it
        self._bulk_router: zmq.Socket | None = None
        self._bulk_port = 0
        self._openers: dict[int, bulk.Opener] = {}   # peer -> its frames to us
        self._bulk_keys: dict[int, bytes] = {}       # peer -> the key it is to send on
        self._bulk_out: dict[int, _BulkLink] = {}    # peer -> our bulk link to it
        self._bulk_monitors: dict[zmq.Socket, _BulkLink] = {}
        self._bulk_due: dict[int, int] = {}          # departed peer -> frames it sent us
        self._closed = False

    def _party(self, member: int) -> str:
        """How messages call a member: "party 2", or its name ("dealer", "owner x")."""
        return self._names.get(member, f"party {member}")

    def _peer(self, member: int) -> str:
        return self._names.get(member, f"peer {member}")

    def _check_keys(self) -> None:
        me = self.my_id
        public, secret = self._keys
        check_key(public, f"{self._party(me)} public key")
        check_key(secret, f"{self._party(me)} secret key")
        if zmq.curve_public(secret) != public:
            raise AuthError(f"{self._party(me)}: the public key does not belong to the secret key")
        if self._peers[me][1] != public:
            raise AuthError(f"{self._party(me)}: its public key is not the one the peers config "
                            f"lists for {self._party(me)}")
        owners: dict[bytes, int] = {}
        for p, (_, key) in self._peers.items():
            check_key(key, f"{self._party(p)} public key in the peers config")
            if key in owners:
                raise AuthError(f"parties {owners[key]} and {p} have the same public key")
            owners[key] = p

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "ZmqMesh":
        """Bind, connect to every peer, and wait until each has said hello and our link to
        it is up (at most connect_timeout s). Fails at once, naming the member and the
        address or key, when a link cannot work (a refused key, a wrong address); raises
        PeerTimeout naming the peers that did not connect in time otherwise."""
        if self._ctx is not None:
            raise NetError(f"{self._party(self.my_id)}: mesh already started")
        self._ctx = zmq.Context()
        self._gate = Gatekeeper(self._ctx, self.my_id,
                                {self._peers[p][1]: p for p in self.peer_ids},
                                {key: m for m, (_, key) in self._peers.items()},
                                self._peers[self.my_id][0], self._curve, name=self._party)
        # Runs once: from close(), or when the mesh is garbage-collected unclosed (before
        # pyzmq's own Context finalizer, which can hang on sockets it no longer sees).
        self._release = weakref.finalize(self, _release, self._ctx, self._sockets, self._gate)
        try:
            self._open_sockets()
            self._handshake()
        except NetError as exc:  # the peers learn why, and whom it blames
            if isinstance(exc, HandshakeRefused) and exc.culprit != self.my_id:
                time.sleep(REFUSED_LINGER)   # the peer with the wrong key for us sees why
            self.close(reason=f"{type(exc).__name__}: {exc}", culprit=exc.culprit)
            raise
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
        self._gate.watch(self._router.get_monitor_socket(ROUTER_EVENTS))
        address = self._peers[me][0]
        if self._bulk_from is not None:
            self._open_bulk_router(address.rpartition(":")[0])
        self._gate.start()   # its ZAP handler is bound: without one CURVE admits anyone
        try:
            self._router.bind(address)
        except zmq.ZMQError as e:
            raise NetError(f"{self._party(me)}: cannot listen on {address}: {e.strerror}",
                           culprit=me) from None
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
            monitor = dealer.get_monitor_socket(MONITORED)
            self._sockets.append(monitor)
            self._monitors[monitor] = p
            self._backs[dealer] = p
            self._poller.register(monitor, zmq.POLLIN)
            self._poller.register(dealer, zmq.POLLIN)
            self._links[p] = Link(p, self._peers[p][0])
            try:
                dealer.connect(self._peers[p][0])
            except zmq.ZMQError as e:
                raise NetError(f"{self._party(me)}: cannot connect to {self._party(p)} at "
                               f"{self._peers[p][0]}: {e.strerror}", culprit=me) from None

    def _open_bulk_router(self, host: str) -> None:
        """Listen for bulk frames on an ephemeral port of `host` (plaintext ZMTP: every
        frame is sealed on its own, see net.bulk), and draw each peer's sending key."""
        me = self.my_id
        self._bulk_router = self._socket(zmq.ROUTER)
        # anyone may connect: libzmq drops a connection at a frame longer than any sealed
        # one instead of holding it for us to refuse
        self._bulk_router.maxmsgsize = bulk.MAX_PAYLOAD + bulk.TAG_BYTES
        monitor = self._bulk_router.get_monitor_socket(ROUTER_EVENTS)
        try:
            self._bulk_router.bind(f"{host}:*")
        except zmq.ZMQError as e:
            raise NetError(f"{self._party(me)}: cannot listen on {host}:* for bulk frames: "
                           f"{e.strerror}", culprit=me) from None
        endpoint = self._bulk_router.last_endpoint.decode()
        self._bulk_port = int(endpoint.rpartition(":")[2])
        self._gate.watch(monitor, endpoint)
        self._poller.register(self._bulk_router, zmq.POLLIN)
        for p in self.peer_ids:
            self._bulk_keys[p] = bulk.new_key()
            self._openers[p] = bulk.Opener(self._bulk_keys[p])

    def _hello_payload(self, peer: int) -> np.ndarray:
        if self._bulk_router is None:
            return _NOTHING
        return bulk.hello_payload(self._bulk_port, self._bulk_keys[peer])

    def _handshake(self) -> None:
        for p in self.peer_ids:
            self._send(p, 0, _HELLO, self._hello_payload(p))
        deadline = time.monotonic() + self.connect_timeout
        while missing := [p for p in self.peer_ids if p not in self.late_peers
                          and (p not in self._hello or not self._links[p].up)]:
            for p in sorted(self._gone, key=lambda p: p not in missing):   # missing first,
                # then any that left with an error: the mesh cannot start
                if p in missing or self._gone[p][0]:
                    raise self._left(p, "during start-up")
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._not_connected(missing)
            self._pump(min(left, CHECK_EVERY))
        grace = time.monotonic() + BULK_GRACE   # both ways: each answers the other's probe
        while (left := grace - time.monotonic()) > 0 and any(
                not link.usable or not self._openers[p].due
                for p, link in self._bulk_out.items() if p not in self.late_peers):
            self._pump(left)

    def _not_connected(self, missing: list[int]) -> PeerTimeout:
        me, parts = self.my_id, []
        for p in missing:
            link = self._links[p]
            if link.up:
                parts.append(f"link to {p}: connected, but {self._party(p)} never greeted "
                             f"{self._party(me)}: it runs, yet its own link to "
                             f"{self._party(me)} is not up (its config "
                             f"may hold a wrong address or key for {self._party(me)})")
            else:
                greeted = f" ({self._party(p)} did greet {self._party(me)})" \
                    if p in self._hello else ""
                parts.append(f"link to {p}: {link.state}{greeted}")
        return PeerTimeout(missing[0], (
            f"{self._party(me)}: peers {missing} did not connect within {self.connect_timeout:g} s "
            f"(wrong address, wrong key, or not started; {'; '.join(parts)})"))

    def close(self, reason: str = "", culprit: int | None = None) -> None:
        """Say goodbye to the peers still linked, wait until everything queued for them has
        been handed to TCP (at most `timeout` s; no longer once a link drops), then release
        sockets and the gatekeeper. Idempotent. A `reason` (why this member leaves: an
        error) travels with the goodbye, and so does `culprit`, the member it blames (this
        one if None). A peer that greeted us but whose link we could not open gets the
        goodbye back over its own link, so that it too learns why at once."""
        if self._closed:
            return
        self._closed = True
        if self._ctx is None:
            return
        if reason and culprit is None:
            culprit = self.my_id
        monitors = zmq.Poller()
        for monitor in self._monitors:
            monitors.register(monitor, zmq.POLLIN)
            self._read_monitor(monitor)
        # A link still connecting (its peer may have said hello, or be about to): give it
        # a moment, or leaving at once would lose what is queued for the peer and leave it
        # waiting, up to its timeout, for a hello or a goodbye that never comes.
        grace = time.monotonic() + min(self.timeout, CLOSE_GRACE)
        while time.monotonic() < grace and any(
                not link.up for p, link in self._links.items()
                if p not in self._gone and link.down_since is None and not link.ever_up
                and not self._hopeless(p)):
            for monitor, _ in monitors.poll(10):
                self._read_monitor(monitor)
        deadline = time.monotonic() + self.timeout  # one budget: the flush and the goodbyes
        self._flush_bulk(deadline)
        queued = {p: self._goodbye(p, reason, culprit) for p in self._dealers
                  if self._links[p].up and p not in self._gone}
        back = [self._goodbye(p, reason, culprit, back=True) for p in self._routes
                if p in self._dealers and not self._links[p].ever_up and p not in self._gone]
        back_deadline = min(deadline, time.monotonic() + CLOSE_GRACE)
        while (any(not done.done and self._links[p].down_since is None
                   for p, done in queued.items())
               or (any(not t.done for t in back) and time.monotonic() < back_deadline)) \
                and time.monotonic() < deadline:
            for monitor, _ in monitors.poll(10):
                self._read_monitor(monitor)
        self._release()

    def _goodbye(self, peer: int, reason: str, culprit: int | None,
                 back: bool = False) -> zmq.MessageTracker:
        """Queue a goodbye for `peer` (on our link to it, or with `back` on its link to us).
        Its tracker is done once the goodbye has left the queue, and with it everything
        sent to `peer` before. The header's seq carries 1 + the culprit (0: none)."""
        text = np.frombuffer(reason.encode()[:MAX_REASON], dtype=np.uint8)
        header, payload = wire.encode(self.my_id, 0 if culprit is None else culprit + 1,
                                      _GOODBYE, text)
        if back:
            self._router.send(self._routes[peer], zmq.SNDMORE)
            self._router.send(header, zmq.SNDMORE)
            return self._router.send(payload, copy=False, track=True)
        dealer = self._dealers[peer]
        out = self._bulk_out.get(peer)
        if out is not None and out.verified:   # the frames it must wait for (the probe of
            # a link never verified may have gone elsewhere: it is owed nothing)
            dealer.send_multipart(wire.encode(self.my_id, out.sealer.counter, _BULK_SENT,
                                              _NOTHING))
        dealer.send(header, zmq.SNDMORE)
        return dealer.send(payload, copy=False, track=True)

    def _flush_bulk(self, deadline: float) -> None:
        """Wait (until `deadline`, or while the link is up) until every bulk frame has
        been handed to TCP: a goodbye, on the other connection, must not overtake them."""
        while any(out.last is not None and not out.last.done and out.up
                  for out in self._bulk_out.values()) and time.monotonic() < deadline:
            for monitor, _ in self._bulk_poller().poll(10):
                self._read_bulk_monitor(monitor)

    def _bulk_poller(self) -> zmq.Poller:
        poller = zmq.Poller()
        for monitor in self._bulk_monitors:
            poller.register(monitor, zmq.POLLIN)
        return poller

    def __enter__(self) -> "ZmqMesh":
        return self if self._ctx is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------

    def send(self, to: int, seq: int, op: str, array: np.ndarray) -> None:
        """Queue `array` for peer `to`. Payloads under ZERO_COPY_BYTES are copied, so the
        caller may reuse them at once; larger arrays go out without a copy (or are sealed
        into a fresh buffer, on the bulk link) and are made read-only either way (do not
        write to them, or to their base, after sending)."""
        if op.startswith(CONTROL_PREFIX):
            raise ValueError(f"op names starting with {CONTROL_PREFIX!r} are reserved "
                             f"for the mesh: {op!r}")
        self._require_peer(to)
        if to in self._gone:
            if not self._gone[to][0] and to not in self.late_peers:
                return   # it finished its part and left: nothing there can need this
            raise self._left(to, f"before {self._party(self.my_id)} could send it message {seq}")
        self.stats.sent(self._send(to, seq, op, array))

    def _send(self, to: int, seq: int, op: str, array: np.ndarray) -> int:
        header, payload = wire.encode(self.my_id, seq, op, array)
        out = self._bulk_out.get(to)
        zero_copy = payload.nbytes >= ZERO_COPY_BYTES
        if zero_copy and isinstance(array, np.ndarray):
            array.flags.writeable = False  # the I/O thread reads it after we return (the
            # same contract whichever link it takes: on bulk it is sealed into a copy)
        try:
            if out is not None and out.usable and \
                    self._bulk_from <= payload.nbytes <= bulk.MAX_PAYLOAD:
                out.send(header, payload)
                return len(header) + payload.nbytes
            self._dealers[to].send_multipart((header, payload), copy=not zero_copy)
        except zmq.Again:
            raise PeerTimeout(to, f"{self._party(self.my_id)}: could not queue message {seq} for "
                                  f"{self._party(to)} within {self.timeout:g} s") from None
        return len(header) + payload.nbytes

    def _require_peer(self, peer: int) -> None:
        if self._router is None or self._closed:
            raise NetError(f"{self._party(self.my_id)}: the mesh is not started or already closed")
        if peer not in self._dealers:
            raise ValueError(f"{self._party(self.my_id)} has no link to {self._party(peer)} "
                             f"(its peers: {list(self.peer_ids)})")

    # -- receiving -------------------------------------------------------------------------

    def _wait(self, frm: int, seq: int) -> tuple[str, np.ndarray]:
        self._require_peer(frm)
        me = self.my_id
        self._mailbox.expect(frm, seq)
        patience = self.late_timeout if frm in self.late_peers else self.timeout
        deadline = time.monotonic() + patience
        while (item := self._mailbox.take(frm, seq)) is None:
            now = time.monotonic()
            if frm in self._gone:
                if not self._owes_bulk(frm):
                    raise self._left(frm, f"before sending message {seq}")
                if now >= deadline:
                    raise self._left(frm, f"before sending message {seq}", self._unarrived(frm))
                self._pump(min(deadline - now, CHECK_EVERY))   # its last frames are on the way
                continue
            link = self._links[frm]
            lost = link.down_since
            if lost is not None and (now - lost >= LOSS_GRACE or now >= deadline):
                how, why = link.loss(self.heartbeat)
                raise PeerLost(frm, f"{self._party(me)}: {self._peer(frm)} disconnected before "
                                    f"sending "
                                    f"message {seq}: {why}", how=how)
            if now >= deadline:
                raise PeerTimeout(frm, f"{self._party(me)}: no message {seq} from "
                                       f"{self._peer(frm)} within "
                                       f"{patience:g} s{self._liveness(frm)}")
            wake = min(deadline, now + CHECK_EVERY) if lost is None else \
                min(deadline, lost + LOSS_GRACE)
            self._pump(wake - now)
        op, array, nbytes = item
        self.stats.received(nbytes)
        return op, array

    def _owes_bulk(self, peer: int) -> bool:
        """A departed peer's bulk frames to us have not all arrived yet."""
        opener = self._openers.get(peer)
        return opener is not None and opener.due < self._bulk_due.get(peer, 0)

    def _unarrived(self, peer: int) -> str:
        """Why a departed peer's message is missing when its bulk frames are owed."""
        missing = self._bulk_due[peer] - self._openers[peer].due
        return (f"; {missing} bulk frame{'s' if missing > 1 else ''} it sent never arrived "
                f"(withheld or lost on the network)")

    def _liveness(self, peer: int) -> str:
        link = self._links[peer]
        opener = self._openers.get(peer)
        withheld = (f"; or bulk frames from it may have been withheld or lost on the network "
                    f"({opener.due} arrived)") if opener is not None and opener.due else ""
        if link.up:
            return ("; its link stayed up, answering heartbeats, so its process is alive: "
                    "stuck or slow in its own code, or waiting for another member" + withheld)
        return f"; {self._party(self.my_id)}'s link to it: {link.state}" + withheld

    def _left(self, peer: int, when: str, more: str = "") -> PeerLost:
        """The error for a wait on (or a send to) a peer that said goodbye."""
        reason, culprit = self._gone[peer]
        verb = "left the mesh" if when.startswith("before party") else "closed the mesh"
        return PeerLost(peer, f"{self._party(self.my_id)}: {self._peer(peer)} {verb} {when}"
                              f"{self._why(peer)}{more}", culprit=culprit, how="left")

    def _pump(self, timeout: float) -> None:
        """Wait up to `timeout` s for traffic or link events, file all that arrived, and
        fail if a link is known not to work."""
        for sock, _ in self._poller.poll(math.ceil(max(timeout, 0) * 1000)):
            if sock is self._router:
                while (frames := self._recv_nowait(sock)) is not None:
                    self._file(frames)
            elif sock is self._bulk_router:
                while (frames := self._recv_nowait(sock)) is not None:
                    self._file_bulk(frames)
            elif sock in self._monitors:
                self._read_monitor(sock)
            elif sock in self._bulk_monitors:
                self._read_bulk_monitor(sock)
            else:
                while (frames := self._recv_nowait(sock)) is not None:
                    self._file_back(self._backs[sock], frames)
        self._check_links()

    @staticmethod
    def _recv_nowait(sock: zmq.Socket) -> list[zmq.Frame] | None:
        try:
            return sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None

    def _file(self, frames: list[zmq.Frame]) -> None:
        """Check one received message and put it in the mailbox (or act on a control)."""
        me = self.my_id
        if len(frames) != 3:
            raise ProtocolError(f"{self._party(me)}: received a message of {len(frames) - 1} "
                                f"frames, "
                                f"expected 2")
        routing_id, header, payload = frames
        who = self._authenticated_sender(routing_id, header)
        try:
            sender, seq, op, array = wire.decode(header.buffer, payload.buffer)
        except ProtocolError as e:
            raise ProtocolError(f"{self._party(me)}: malformed message from "
                                f"{self._party(who)}: {e}",
                                culprit=who) from None
        if sender != who:
            raise ProtocolError(f"{self._party(me)}: refused message {seq} ('{op}') from "
                                f"{self._party(who)}, "
                                f"whose header claims it is from {self._party(sender)}",
                                culprit=who)
        if op.startswith(CONTROL_PREFIX):
            if op == _HELLO:
                self._routes[who] = routing_id.bytes
            self._control(who, op, array, seq)
        else:
            nbytes = len(header) + len(payload)
            self._mailbox.put(who, seq, op, (op, array, nbytes), nbytes)

    def _file_bulk(self, frames: list[zmq.Frame]) -> None:
        """Open one bulk frame and put it in the mailbox; refuse (log and drop) one that
        does not open or repeats a counter; fail on a gap in a peer's authentic frames."""
        me = self.my_id
        if len(frames) != 4:
            return self._refuse_bulk(frames, f"{len(frames) - 1} parts, expected 3")
        _, prefix, sealed_header, body = frames
        try:
            claimed = bulk.sender_of(prefix.buffer)
        except bulk.Refused as e:
            return self._refuse_bulk(frames, str(e))
        opener = self._openers.get(claimed)
        if opener is None:
            return self._refuse_bulk(frames, f"its prefix names {self._party(claimed)}, "
                                             f"not a peer of {self._party(me)}")
        try:
            header, plain = opener.open(prefix.buffer, sealed_header.buffer, body.buffer)
        except bulk.Refused as e:
            return self._refuse_bulk(frames, f"claimed to be from {self._party(claimed)}: {e}")
        except bulk.Gap as e:
            raise ProtocolError(f"{self._party(me)}: bulk frame {e.got} from "
                                f"{self._party(claimed)} arrived when frame {e.due} was due: "
                                f"frames were lost (its bulk link reconnected) or withheld "
                                f"on the network", culprit=claimed) from None
        try:
            sender, seq, op, array = wire.decode(header, plain)
        except ProtocolError as e:
            raise ProtocolError(f"{self._party(me)}: malformed bulk frame from "
                                f"{self._party(claimed)}: {e}", culprit=claimed) from None
        if sender != claimed:
            raise ProtocolError(f"{self._party(me)}: refused bulk message {seq} ('{op}') from "
                                f"{self._party(claimed)}, whose header claims it is from "
                                f"{self._party(sender)}", culprit=claimed)
        if op == _BULK_PROBE and plain.nbytes == 0:
            self._send(claimed, 0, _BULK_OK, _NOTHING)
            return
        if op.startswith(CONTROL_PREFIX):
            raise ProtocolError(f"{self._party(me)}: {self._party(claimed)} sent control "
                                f"message '{op}' as a bulk frame", culprit=claimed)
        nbytes = len(header) + plain.nbytes
        self._mailbox.put(claimed, seq, op, (op, array, nbytes), nbytes)

    def _refuse_bulk(self, frames: list[zmq.Frame], cause: str) -> None:
        try:
            source = frames[-1].get("Peer-Address")
        except zmq.ZMQError:
            source = "an unknown address"
        self._gate.log.refused(source, cause, what="a bulk frame")

    def _file_back(self, peer: int, frames: list[zmq.Frame]) -> None:
        """A message on our own link to `peer`: only a goodbye may come back that way."""
        me = self.my_id
        try:
            if len(frames) != 2:
                raise ProtocolError(f"{len(frames)} frames, expected 2")
            sender, seq, op, array = wire.decode(frames[0].buffer, frames[1].buffer)
        except ProtocolError as e:
            raise ProtocolError(f"{self._party(me)}: malformed message back from "
                                f"{self._party(peer)}: {e}",
                                culprit=peer) from None
        if sender != peer or op != _GOODBYE:
            raise ProtocolError(f"{self._party(me)}: {self._party(peer)} sent '{op}' back on "
                                f"{self._party(me)}'s "
                                f"link to it, where only a goodbye may come", culprit=peer)
        self._control(peer, op, array, seq)

    def _why(self, peer: int) -> str:
        """' (it said: ...)' when a departed peer gave a reason, so that an error caused
        by another party's loss still names the party lost first."""
        reason = self._gone[peer][0] if peer in self._gone else ""
        return f" (it said: {reason})" if reason else ""

    def _authenticated_sender(self, routing_id: zmq.Frame, header: zmq.Frame) -> int:
        """The peer id of a message's connection: the ZAP User-Id under CURVE, the DEALER's
        routing id (as unauthenticated as everything else) in plaintext mode."""
        label = header.get("User-Id") if self._curve else routing_id.bytes.decode("latin-1")
        if not (label.isascii() and label.isdigit()) or int(label) not in self._dealers:
            raise ProtocolError(f"{self._party(self.my_id)}: message from a connection "
                                f"identified as "
                                f"{label!r}, which is not one of its peers {list(self.peer_ids)}")
        return int(label)

    def _control(self, who: int, op: str, payload: np.ndarray, seq: int) -> None:
        if op == _HELLO:
            self._hello.setdefault(who, time.monotonic())
            self._gone.pop(who, None)
            try:
                offer = bulk.parse_hello(payload)
            except ProtocolError as e:
                raise ProtocolError(f"{self._party(self.my_id)}: {self._party(who)}'s {e}",
                                    culprit=who) from None
            if offer is not None and self._bulk_router is not None:
                self._open_bulk(who, *offer)
        elif op == _BULK_SENT:
            self._bulk_due[who] = seq
        elif op == _BULK_OK:
            if who in self._bulk_out:
                self._bulk_out[who].verified = True
        elif op == _GOODBYE:
            text = bytes(payload[:MAX_REASON]).decode("utf-8", "replace")
            culprit = seq - 1 if seq - 1 in self._peers else who
            self._gone[who] = ("".join(c if c.isprintable() else " " for c in text), culprit)
        else:
            raise ProtocolError(f"{self._party(self.my_id)}: unknown control message '{op}' from "
                                f"{self._party(who)}", culprit=who)

    def _open_bulk(self, peer: int, port: int, key: bytes) -> None:
        """Our bulk link to `peer`, at its port on its host, sealing with `key` (a peer
        that greets again, restarted, has drawn a new key: the link is made anew)."""
        old = self._bulk_out.pop(peer, None)
        if old is not None:
            self._poller.unregister(old.monitor)
            for sock in (old.monitor, old.dealer):
                self._sockets.remove(sock)
                sock.close()
            del self._bulk_monitors[old.monitor]
        dealer = self._socket(zmq.DEALER)
        silence = max(1, int(self.heartbeat * 1000))
        dealer.heartbeat_ivl = max(1, silence // 4)
        dealer.heartbeat_timeout = silence
        dealer.heartbeat_ttl = silence
        monitor = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED
                                            | zmq.EVENT_DISCONNECTED)
        self._sockets.append(monitor)
        link = self._bulk_out[peer] = _BulkLink(dealer, monitor, bulk.Sealer(self.my_id, key))
        self._bulk_monitors[monitor] = link
        self._poller.register(monitor, zmq.POLLIN)
        host = self._peers[peer][0].rpartition(":")[0]
        try:
            dealer.connect(f"{host}:{port}")
        except zmq.ZMQError as e:
            raise NetError(f"{self._party(self.my_id)}: cannot connect to "
                           f"{self._party(peer)}'s bulk port at {host}:{port}: {e.strerror}",
                           culprit=self.my_id) from None

    def _read_bulk_monitor(self, monitor: zmq.Socket) -> None:
        link = self._bulk_monitors[monitor]
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            link.up = event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
            if link.up and not link.probed:   # does this port reach the peer? (a proxied
                # address may lead elsewhere, even to another member's bulk port)
                link.probed = True
                header, _ = wire.encode(self.my_id, 0, _BULK_PROBE, _NOTHING)
                link.send(header, memoryview(b""))

    def _read_monitor(self, monitor: zmq.Socket) -> None:
        """Track the state of our link to one peer from its DEALER's socket events."""
        link = self._links[self._monitors[monitor]]
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            link.event(event["event"], event["value"], time.monotonic())

    # -- links that cannot work ---------------------------------------------------------------

    def _check_links(self) -> None:
        """Raise at once for a link known not to work: our key refused, the handshake
        broken, or a peer that greeted us at an address we cannot reach."""
        for p, link in self._links.items():
            if link.up or p in self._gone:
                continue
            if link.key_refused:
                raise self._refused(p)
            if link.handshake_broken and p not in self.late_peers:
                raise self._broken(p)
            if link.failure is None and self._hopeless(p):
                raise self._unreachable(p, link)

    def _hopeless(self, p: int) -> bool:
        """Our link to `p` is known not to work (see _check_links)."""
        link, greeted = self._links[p], self._hello.get(p)
        return link.failure is not None or (greeted is not None and not link.ever_up and (
            (link.refused_at or 0) >= greeted + REACH_MARGIN
            or time.monotonic() - greeted >= REACH_PATIENCE))

    def _config(self) -> str:
        return f"{self._party(self.my_id)}'s peers config" + \
            (f" ({self._peers_file})" if self._peers_file else "")

    def _refusals(self) -> str:
        recent = list(self._gate.log.recent)[-3:] if self._gate else []
        return f" (meanwhile {'; '.join(recent)})" if recent else ""

    def _refused(self, p: int) -> HandshakeRefused:
        me, key = self.my_id, self._keys[0].decode()
        source = f" (from {self._key_file})" if self._key_file else ""
        return HandshakeRefused(p, (
            f"{self._party(me)}: {self._party(p)} at {self._peers[p][0]} refused "
            f"{self._party(me)}'s public key "
            f"{key}{source}: {self._party(p)}'s copy of the peers config lists another key for "
            f"{self._party(me)}, or {self._party(me)} uses the wrong key file{self._refusals()}"))

    def _broken(self, p: int) -> HandshakeRefused:
        me, (address, key), link = self.my_id, self._peers[p], self._links[p]
        kind, value = link.failure
        if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            text = (f"the program at {address}, {self._party(p)}'s address in {self._config()}, "
                    f"does not speak this protocol ({protocol_error(value)}): a wrong "
                    f"address, or a member without encryption")
        else:
            text = (f"the member at {address} drops the CURVE handshake made with the public "
                    f"key {self._config()} lists for {self._party(p)} ({key.decode()}): that "
                    f"key is "
                    f"not {self._party(p)}'s, or another program listens there")
        return HandshakeRefused(p, f"{self._party(me)}: {text}{self._refusals()}", culprit=me)

    def _unreachable(self, p: int, link: Link) -> PeerUnreachable:
        me = self.my_id
        state = "connection refused: nothing listens there" if link.refused_at else link.state
        return PeerUnreachable(p, (
            f"{self._party(me)} cannot reach {self._party(p)} at {link.address} ({state}), "
            f"though {self._party(p)} "
            f"is running (it connected to {self._party(me)}): the address of {self._party(p)} in "
            f"{self._config()} is wrong, or {self._party(p)} listens elsewhere"), culprit=me)


@dataclass
class _BulkLink:
    """Our bulk link to one peer: its socket, whether it is up and known to reach the
    peer (it answered our probe), and its last frame."""

    dealer: zmq.Socket
    monitor: zmq.Socket
    sealer: bulk.Sealer
    up: bool = False
    probed: bool = False
    verified: bool = False
    last: zmq.MessageTracker | None = None

    @property
    def usable(self) -> bool:
        return self.up and self.verified

    def send(self, header: bytes, payload: memoryview) -> None:
        prefix, sealed_header, body = self.sealer.seal(header, payload)
        self.dealer.send(prefix, zmq.SNDMORE)
        self.dealer.send(sealed_header, zmq.SNDMORE)
        self.last = self.dealer.send(body, copy=False, track=True)


def _release(ctx: zmq.Context, sockets: list[zmq.Socket], gate: Gatekeeper) -> None:
    """Close a mesh's sockets (newest first: monitors before their DEALERs), then stop its
    gatekeeper (ZAP handler last, so that nothing is admitted unchecked) and terminate
    its context."""
    for sock in reversed(sockets):
        sock.close()
    gate.stop()
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
