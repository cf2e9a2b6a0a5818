"""The bulk channel (net.bulk): large payloads sealed with AES-GCM on a second, plaintext
ZMTP link. Over real loopback TCP, through a ZMTP-aware man-in-the-middle proxy put in
front of each member's bulk port (the hello that announces the port is rewritten to name
the proxy), which records the wire and can drop, repeat, reorder or alter messages. Every
wait has a timeout."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from net import PeerLost, PeerTimeout, ProtocolError, bulk, wire
from net.mesh import BULK_BYTES
from test_net_mesh import SPAWN, cluster, in_threads, mesh, started, wire_bytes

LONG, MORE, COMMAND = 0x02, 0x01, 0x04


class ZmtpProxy:
    """Forwards one TCP port to another, parsing the client's ZMTP 3 stream: its data
    messages (lists of frames) pass through `tamper(index, parts)` (index: messages seen
    since tamper was set), which returns the messages to forward in their place;
    greeting and commands pass unchanged. `wire` holds every byte the client sent."""

    @property
    def tamper(self):
        return self._tamper

    @tamper.setter
    def tamper(self, hook) -> None:
        self._tamper, self._since = hook, None

    def __init__(self, target: int):
        self.target = target
        self.wire = bytearray()
        self.tamper = lambda index, parts: [parts]
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        for s in self._open:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:   # the member behind it has closed: so does the proxy
                client.close()
                continue
            self._open += [client, server]
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    def _read(self, sock: socket.socket, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        self.wire += data
        return bytes(data)

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        try:
            greeted = 0
            while greeted < 64:   # the greeting, in the pieces it comes in (lockstep)
                chunk = client.recv(64 - greeted)
                if not chunk:
                    raise OSError("closed")
                self.wire += chunk
                server.sendall(chunk)
                greeted += len(chunk)
            parts, index = [], 0
            while True:
                flags = self._read(client, 1)[0]
                size = struct.unpack(">Q", self._read(client, 8))[0] if flags & LONG else \
                    self._read(client, 1)[0]
                body = self._read(client, size)
                if flags & COMMAND:
                    server.sendall(_frame(flags, body))
                    continue
                parts.append(body)
                if flags & MORE:
                    continue
                self._since = index if self._since is None else self._since
                for message in self._tamper(index - self._since, parts):
                    server.sendall(b"".join(_frame(MORE if k < len(message) - 1 else 0, p)
                                            for k, p in enumerate(message)))
                parts, index = [], index + 1
        except OSError:
            client.close()
            server.close()

    @staticmethod
    def _down(server: socket.socket, client: socket.socket) -> None:
        try:
            while chunk := server.recv(1 << 16):
                client.sendall(chunk)
        except OSError:
            pass
        client.close()


def _frame(flags: int, body: bytes) -> bytes:
    if len(body) > 255:
        return bytes([flags | LONG]) + struct.pack(">Q", len(body)) + body
    return bytes([flags, len(body)]) + body


@pytest.fixture
def proxied(monkeypatch):
    """Two started meshes whose bulk links run through ZmtpProxy; yields (a, b, the proxy
    that carries a's bulk frames to b)."""
    proxies: dict[int, ZmtpProxy] = {}
    real = bulk.hello_payload

    def via_proxy(port, key):
        if port not in proxies:
            proxies[port] = ZmtpProxy(port)
        return real(proxies[port].port, key)

    monkeypatch.setattr(bulk, "hello_payload", via_proxy)
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    try:
        assert a._bulk_out[1].usable and b._bulk_out[0].usable
        yield a, b, proxies[b._bulk_port]
    finally:
        in_threads(a.close, b.close)
        for p in proxies.values():
            p.close()


def bulk_refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "net" and "refused a bulk frame" in r.getMessage()]


def pump_until(member, condition, timeout: float = 5.0) -> None:
    """Let `member` read its sockets until `condition()` (as a wait would), or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came"
        member._pump(0.05)


def secret(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**64, n, dtype=np.uint64, endpoint=False)


# -- sealing, in memory -------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.binary(max_size=3000), st.data())
def test_sealed_frames_open_bit_exactly_once_and_any_flipped_bit_is_refused(header, payload,
                                                                            data):
    key = bulk.new_key()
    sealer, opener = bulk.Sealer(3, key), bulk.Opener(key)
    frames = [sealer.seal(header, memoryview(payload)) for _ in range(2)]
    parts = [bytearray(frames[0][0]), bytearray(frames[0][1]), bytearray(frames[0][2])]
    which = data.draw(st.integers(0, 2))
    at = data.draw(st.integers(0, len(parts[which]) - 1))
    parts[which][at] ^= 1 << data.draw(st.integers(0, 7))
    if which == 0 and at < 2:   # the sender field: picks another key, refused by the mesh
        assert bulk.sender_of(parts[0]) != 3
    else:
        with pytest.raises(bulk.Refused, match="(does not authenticate|a replay)"):
            opener.open(*parts)
    got_header, got = opener.open(*frames[0])
    assert got_header == header and got.tobytes() == payload and got.flags.writeable
    with pytest.raises(bulk.Refused, match="frame 0 again"):
        opener.open(*frames[0])
    with pytest.raises(bulk.Refused, match="does not authenticate"):
        bulk.Opener(bulk.new_key()).open(*frames[0])   # another key
    assert opener.open(*frames[1])[0] == header


def test_a_skipped_frame_is_a_gap_and_the_counter_does_not_move():
    key = bulk.new_key()
    sealer, opener = bulk.Sealer(0, key), bulk.Opener(key)
    first, second = (sealer.seal(b"h", memoryview(b"payload")) for _ in range(2))
    with pytest.raises(bulk.Gap, match="frame 1 arrived when frame 0 was due"):
        opener.open(*second)
    assert opener.open(*first)[1].tobytes() == b"payload"


# -- over the wire ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint64, np.int32, np.float64, np.uint8, np.bool_])
def test_large_arrays_round_trip_bit_exactly_on_the_bulk_link_with_the_same_counters(dtype):
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    item = np.dtype(dtype).itemsize
    raw = np.random.default_rng(1).integers(0, 256, 3 * (BULK_BYTES + 7 * item), np.uint8)
    first = (raw & 1 == 1) if dtype == np.bool_ else raw.view(dtype)
    if dtype == np.float64:   # NaNs with payload bits, signed zeros, infinities survive
        first[:4].view(np.uint64)[:] = [0x7FF8DEADBEEF0001, 1 << 63, 0x7FF0000000000000, 1]
    arrays = [first.reshape(3, -1), raw[:BULK_BYTES].copy(), raw[:BULK_BYTES - 1].copy()]
    with a, b:
        for seq, array in enumerate(arrays):
            a.send(1, seq, "x", array)
            b.send(0, seq, "x", array)
        for seq, array in enumerate(arrays):
            for member, frm in ((b, 0), (a, 1)):
                got = member.recv(frm, seq, "x", array.dtype, array.shape)
                assert got.tobytes() == np.ascontiguousarray(array).tobytes()
        assert a._bulk_out[1].sealer.counter == 3 and b._openers[0].due == 3  # probe, 2 of 3
        cost = sum(wire_bytes("x", array) for array in arrays)
        for member in (a, b):
            assert member.stats.total.bytes_sent == member.stats.total.bytes_received == cost


def test_bulk_traffic_shows_neither_payload_nor_header(proxied):
    a, b, proxy = proxied
    x = secret(BULK_BYTES // 8 * 4)
    a.send(1, 7, "a-secret-op-name", x)
    np.testing.assert_array_equal(b.recv(0, 7, "a-secret-op-name"), x)
    seen = bytes(proxy.wire)
    assert len(seen) > x.nbytes   # it went through the proxy
    plain = x.tobytes()
    for at in range(0, len(plain) - 16, len(plain) // 97):
        assert plain[at:at + 16] not in seen
    header, _ = wire.encode(0, 7, "a-secret-op-name", x)
    assert b"a-secret-op-name" not in seen and header not in seen and wire.MAGIC not in seen


def test_a_replayed_frame_is_refused_and_logged_and_the_traffic_goes_on(proxied, caplog):
    a, b, proxy = proxied
    proxy.tamper = lambda index, parts: [parts, parts] if index == 0 else [parts]
    x, y = secret(BULK_BYTES, 1), secret(BULK_BYTES, 2)
    with caplog.at_level(logging.WARNING, logger="net"):
        a.send(1, 1, "x", x)
        a.send(1, 2, "y", y)
        np.testing.assert_array_equal(b.recv(0, 1, "x"), x)
        np.testing.assert_array_equal(b.recv(0, 2, "y"), y)
        pump_until(b, lambda: bulk_refusals(caplog))
    [line] = bulk_refusals(caplog)
    assert "party 1 refused a bulk frame from 127.0.0.1" in line
    assert "claimed to be from party 0: frame 1 again" in line and "a replay" in line


@pytest.mark.parametrize("part, at, expected", [   # frame 0 was the link's probe
    (0, 0, "its prefix names party 2, not a peer of party 1"),   # the sender field
    (0, 2, "frame 3 does not authenticate"),                       # the counter
    (1, 0, "frame 1 does not authenticate"),                       # the sealed header
    (1, -1, "frame 1 does not authenticate"),                      # the header's tag
    (2, 0, "frame 1 does not authenticate"),                       # the ciphertext
    (2, -1, "frame 1 does not authenticate"),                      # the payload's tag
])
def test_a_forged_frame_is_refused_and_logged_and_the_honest_one_is_taken(proxied, caplog, part,
                                                                          at, expected):
    a, b, proxy = proxied

    def forge(index, parts):
        forged = [bytearray(p) for p in parts]
        forged[part][at] ^= 2
        return [forged, parts]

    proxy.tamper = forge
    x = secret(BULK_BYTES, 3)
    with caplog.at_level(logging.WARNING, logger="net"):
        a.send(1, 1, "x", x)
        np.testing.assert_array_equal(b.recv(0, 1, "x"), x)
        pump_until(b, lambda: bulk_refusals(caplog))
    [line] = bulk_refusals(caplog)
    assert expected in line


def test_reordered_frames_fail_naming_the_sender_and_nothing_is_delivered(proxied):
    a, b, proxy = proxied
    held = []

    def swap(index, parts):
        if index == 0:
            held.append(parts)
            return []
        return [parts, *held] if index == 1 else [parts]

    proxy.tamper = swap
    a.send(1, 1, "x", secret(BULK_BYTES, 4))
    a.send(1, 2, "y", secret(BULK_BYTES, 5))
    with pytest.raises(ProtocolError, match="party 1: bulk frame 2 from party 0 arrived when "
                                            "frame 1 was due") as info:
        b.recv(0, 1, "x")
    assert info.value.culprit == 0
    assert (0, 1) not in b._mailbox and (0, 2) not in b._mailbox


def test_a_frame_sealed_with_a_wrong_key_by_a_stranger_is_refused(proxied, caplog):
    a, b, _ = proxied
    stranger = zmq.Context.instance().socket(zmq.DEALER)
    stranger.linger = 0
    x = secret(BULK_BYTES, 6)
    with caplog.at_level(logging.WARNING, logger="net"):
        try:
            stranger.connect(f"tcp://127.0.0.1:{b._bulk_port}")
            header, payload = wire.encode(0, 1, "x", np.zeros_like(x))
            forger = bulk.Sealer(0, bulk.new_key())
            forger.counter = 1   # the one due (0 was the probe)
            stranger.send_multipart(forger.seal(header, payload))
            stranger.send_multipart([b"garbage"] * 3)
            pump_until(b, lambda: len(bulk_refusals(caplog)) == 2)
        finally:
            stranger.close()
        a.send(1, 1, "x", x)
        np.testing.assert_array_equal(b.recv(0, 1, "x"), x)   # frame 1 was still due
    forged, garbage = bulk_refusals(caplog)
    assert "claimed to be from party 0: frame 1 does not authenticate" in forged
    assert "a prefix of 7 bytes" in garbage


def test_a_client_sending_garbage_to_the_bulk_port_is_refused_and_logged(proxied, caplog):
    a, b, _ = proxied
    with caplog.at_level(logging.WARNING, logger="net"):
        with socket.create_connection(("127.0.0.1", b._bulk_port)) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)) * 4)
        deadline = time.monotonic() + 5   # (from 127.0.0.1:<port> if read before it hung up)
        while not [r for r in caplog.records if "party 1 refused a connection from " in
                   r.getMessage()]:
            assert time.monotonic() < deadline, "the garbage connection was not logged"
            time.sleep(0.05)
        x = secret(BULK_BYTES, 7)
        a.send(1, 1, "x", x)
        np.testing.assert_array_equal(b.recv(0, 1, "x"), x)


def test_bulk_frames_sent_just_before_close_are_not_overtaken_by_the_goodbye():
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    xs = [secret(1 << 20, seed) for seed in range(4)]   # 8 MB each
    with b:
        for seq, x in enumerate(xs):
            a.send(1, seq, "x", x)
        a.close()
        for seq, x in enumerate(xs):
            np.testing.assert_array_equal(b.recv(0, seq, "x"), x)


def test_without_curve_or_below_the_threshold_everything_stays_on_the_curve_link():
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys, bulk_from=None), mesh(1, peers, keys))
    with a, b:
        x = secret(BULK_BYTES)
        a.send(1, 1, "x", x)
        b.send(0, 1, "small", x[:BULK_BYTES // 8 - 1])
        np.testing.assert_array_equal(b.recv(0, 1, "x"), x)
        np.testing.assert_array_equal(a.recv(1, 1, "small"), x[:BULK_BYTES // 8 - 1])
        assert not a._bulk_out and not b._bulk_out


def sending_party(i, peers, key, ready, n):
    with mesh(i, peers, {i: key}, connect_timeout=20.0, timeout=30.0) as m:
        for seq in range(n):
            m.send(0, seq, "x", secret(1 << 20, seq))
        ready.set()   # the frames may still be on their way
        time.sleep(60)


def test_a_peer_killed_with_bulk_frames_on_the_way_is_said_to_have_died():
    peers, keys = cluster(2)
    ready = SPAWN.Event()
    child = SPAWN.Process(target=sending_party, args=(1, peers, keys[1], ready, 4), daemon=True)
    child.start()
    outcomes = []
    try:
        with mesh(0, peers, keys, timeout=30.0, connect_timeout=20.0) as m:
            assert ready.wait(20)
            child.kill()
            for seq in (0, 1, 2, 3, 99):   # delivered whole, or lost with the peer
                try:
                    np.testing.assert_array_equal(m.recv(1, seq, "x"), secret(1 << 20, seq))
                    outcomes.append("delivered")
                except PeerLost as e:
                    outcomes.append((e.how, e.culprit))
    finally:
        child.kill()
        child.join(10)
    assert outcomes[-1] == ("died", 1), outcomes
    assert set(outcomes) <= {"delivered", ("died", 1)}, outcomes


@pytest.fixture
def elsewhere(monkeypatch):
    """A ROUTER that every member names as its bulk port in its hello: a peer's address may
    lead to another program (a proxy, a NAT, another member's bulk port)."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    real = bulk.hello_payload
    monkeypatch.setattr(bulk, "hello_payload", lambda _, key: real(port, key))
    yield router
    router.close()


def test_a_bulk_port_that_leads_elsewhere_is_never_used(elsewhere):
    """The link comes up there, but nobody answers its probe over CURVE."""
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    with a, b:
        assert a._bulk_out[1].up and not a._bulk_out[1].usable
        x = secret(BULK_BYTES, 8)
        a.send(1, 1, "x", x)
        np.testing.assert_array_equal(b.recv(0, 1, "x"), x)
        assert a._bulk_out[1].sealer.counter == 1   # the probe alone
    assert elsewhere.poll(5000)
    assert len(elsewhere.recv_multipart()) == 4   # the probe, sealed


# -- review: losses the receiver must notice promptly and name ---------------------------

def test_a_peer_whose_probe_went_elsewhere_is_not_owed_bulk_frames_after_it_left(elsewhere):
    """Its only bulk frame, the probe, never reached us: a wait on it after its goodbye
    fails at once with its reason, not after the whole timeout."""
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys, timeout=20.0))
    with b:
        assert a._bulk_out[1].up and not a._bulk_out[1].usable
        a.close(reason="RuntimeError: boom")
        began = time.monotonic()
        with pytest.raises(PeerLost, match="boom"):
            b.recv(0, 1, "x")
        assert time.monotonic() - began < 5, "waited for a probe that went elsewhere"


def test_a_withheld_bulk_frame_is_named_in_the_timeout(proxied):
    a, b, proxy = proxied
    proxy.tamper = lambda index, parts: [] if index == 0 else [parts]
    a.send(1, 1, "x", secret(BULK_BYTES, 9))
    with pytest.raises(PeerTimeout, match="bulk frames from it may have been withheld or "
                                          "lost on the network"):
        b.recv(0, 1, "x")


def test_a_bulk_frame_withheld_before_a_goodbye_is_named(proxied):
    a, b, proxy = proxied
    proxy.tamper = lambda index, parts: []
    a.send(1, 1, "x", secret(BULK_BYTES, 10))
    a.close()
    with pytest.raises(PeerLost, match="1 bulk frame it sent never arrived"):
        b.recv(0, 1, "x")


def test_aes_gcm_cannot_seal_more_than_the_bulk_links_largest_payload():
    big = np.zeros(2**31, np.uint8)   # zero pages: nothing is touched
    with pytest.raises(OverflowError):
        bulk.Sealer(0, bulk.new_key()).seal(b"h", memoryview(big))


def test_payloads_larger_than_the_bulk_link_takes_go_on_the_curve_link(monkeypatch):
    monkeypatch.setattr(bulk, "MAX_PAYLOAD", 2 * BULK_BYTES)
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    with a, b:
        x, y = secret(BULK_BYTES // 8 * 2), secret(BULK_BYTES // 8 * 2 + 1)
        a.send(1, 1, "x", x)
        a.send(1, 2, "y", y)
        np.testing.assert_array_equal(b.recv(0, 1, "x"), x)
        np.testing.assert_array_equal(b.recv(0, 2, "y"), y)
        assert a._bulk_out[1].sealer.counter == 2   # the probe and x
        assert a.stats.total.bytes_sent == b.stats.total.bytes_received == \
            wire_bytes("x", x) + wire_bytes("y", y)


def test_an_honest_header_on_an_oversized_body_is_refused_not_a_crash():
    """A man in the middle may put the due frame's prefix and header on any body."""
    key = bulk.new_key()
    prefix, header, _ = bulk.Sealer(0, key).seal(b"h", memoryview(b"payload"))
    huge = np.zeros(bulk.MAX_PAYLOAD + bulk.TAG_BYTES + 1, np.uint8)   # zero pages
    with pytest.raises(bulk.Refused, match="longer than"):
        bulk.Opener(key).open(prefix, header, huge)


def test_the_longest_header_opens_and_a_longer_sealed_header_is_refused_unopened():
    key = bulk.new_key()
    header, payload = wire.encode(2**16 - 1, 2**64 - 1, "o" * wire.MAX_OP_BYTES,
                                  np.zeros((1,) * wire.MAX_NDIM, np.uint8))
    sealer, opener = bulk.Sealer(0, key), bulk.Opener(key)
    prefix, sealed, body = sealer.seal(header, payload)
    assert len(sealed) == bulk.MAX_SEALED_HEADER
    with pytest.raises(bulk.Refused, match="a sealed header of 163 bytes, longer than any"):
        opener.open(prefix, sealed + b"\0", body)
    assert opener.open(prefix, sealed, body)[0] == header


def test_a_strangers_frame_longer_than_any_sealed_one_is_never_read(monkeypatch, caplog):
    """libzmq drops the connection at the frame's size, before holding it in memory."""
    monkeypatch.setattr(bulk, "MAX_PAYLOAD", 2 * BULK_BYTES)
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    stranger = zmq.Context.instance().socket(zmq.DEALER)
    stranger.linger = 0
    with a, b, caplog.at_level(logging.WARNING, logger="net"):
        try:
            stranger.connect(f"tcp://127.0.0.1:{b._bulk_port}")
            stranger.send_multipart([bulk.PREFIX.pack(0, 1), b"h" * 32,
                                     bytes(2 * BULK_BYTES + bulk.TAG_BYTES + 1)])
            time.sleep(0.5)
            for _ in range(10):
                b._pump(0.05)
        finally:
            stranger.close()
        x = secret(BULK_BYTES // 8 * 2)
        a.send(1, 1, "x", x)
        np.testing.assert_array_equal(b.recv(0, 1, "x"), x)
        assert a._bulk_out[1].sealer.counter == 2   # x went on the bulk link
    assert bulk_refusals(caplog) == []
