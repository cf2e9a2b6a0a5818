"""ZmqMesh over real loopback TCP with real CURVE; separate OS processes where it matters
(the three-party exchange, a killed peer). Helpers are module-level so that spawned
processes can import them. Every wait has a timeout."""

from __future__ import annotations

import multiprocessing
import os
import socket
import stat
import threading
import time
import traceback

import numpy as np
import pytest
import zmq
import zmq.auth

from net import (AuthError, HandshakeRefused, NetError, PeerError, PeerLost, PeerTimeout,
                 ProtocolError, ZmqMesh, free_tcp_addresses, generate_keypair, load_public,
                 load_secret, write_keypair)
from net import wire

SPAWN = multiprocessing.get_context("spawn")
BIG = 2**20  # uint64 elements: 8 MB
plaintext = pytest.mark.filterwarnings("ignore:.*unencrypted:RuntimeWarning")


def cluster(n: int):
    """A peers config for `n` parties on free loopback ports, and their key pairs."""
    keys = [generate_keypair() for _ in range(n)]
    addresses = free_tcp_addresses(n)
    return {i: (addresses[i], keys[i][0]) for i in range(n)}, keys


def mesh(i, peers, keys, **kw) -> ZmqMesh:
    kw = {"timeout": 5.0, "connect_timeout": 5.0, **kw}
    return ZmqMesh(i, peers, keys[i][1], keys[i][0], **kw)


def in_threads(*calls, timeout: float = 20.0) -> list:
    """Run the calls concurrently; return their results or exceptions, in order."""
    results: list = [None] * len(calls)

    def run(k):
        try:
            results[k] = calls[k]()
        except Exception as e:  # noqa: BLE001 - handed back to the test
            results[k] = e

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a party hung"
    return results


def started(*meshes: ZmqMesh) -> tuple[ZmqMesh, ...]:
    """Start the meshes together; if any fails, close them all and raise its error."""
    errors = [r for r in in_threads(*(m.start for m in meshes)) if isinstance(r, Exception)]
    if errors:
        for m in meshes:
            m.close()
        raise errors[0]
    return meshes


def wire_bytes(op: str, array: np.ndarray) -> int:
    """What one data message costs on the byte counters: header + payload."""
    return 18 + len(op.encode()) + 8 * array.ndim + array.nbytes


def small(frm: int, to: int) -> np.ndarray:
    return (np.arange((frm + 1) * (to + 2)) * 1000 + 10 * frm + to).reshape(frm + 1, to + 2)


def big(seed: int) -> np.ndarray:
    array = np.random.default_rng(seed).integers(0, 2**64, BIG, dtype=np.uint64,
                                                 endpoint=False)
    array[:4] = [0, 1, 2**63, 2**64 - 1]
    return array


# -- three parties, three processes --------------------------------------------------------


def exchange_party(i, peers, key, results):
    try:
        keys = {i: key}
        with mesh(i, peers, keys, timeout=20.0, connect_timeout=20.0) as m:
            others = [p for p in peers if p != i]
            got = m.exchange(1, "small", {p: small(i, p) for p in others},
                             {p: (np.int64, small(p, i).shape) for p in others})
            for p in others:
                np.testing.assert_array_equal(got[p], small(p, i))
            nxt, prv = (i + 1) % 3, (i - 1) % 3
            m.send(nxt, 2, "big", big(i))
            received = m.recv(prv, 2, "big", np.uint64, (BIG,))
            np.testing.assert_array_equal(received, big(prv))
            results.put((i, None, m.stats.total.as_dict()))
    except Exception:  # noqa: BLE001 - reported to the test process
        results.put((i, traceback.format_exc(), None))


def test_three_processes_exchange_arrays_with_exact_counters():
    peers, keys = cluster(3)
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=exchange_party, args=(i, peers, keys[i], results))
             for i in range(3)]
    for p in procs:
        p.start()
    try:
        reports = dict((i, (err, stats)) for i, err, stats in
                       (results.get(timeout=60) for _ in procs))
    finally:
        for p in procs:
            p.join(10)
            p.kill()
    for i, (err, stats) in sorted(reports.items()):
        assert err is None, f"party {i} failed:\n{err}"
        others = [p for p in range(3) if p != i]
        sent = sum(wire_bytes("small", small(i, p)) for p in others) + wire_bytes("big", big(i))
        received = sum(wire_bytes("small", small(p, i)) for p in others) + \
            wire_bytes("big", big((i - 1) % 3))
        assert stats == {"bytes_sent": sent, "bytes_received": received, "messages_sent": 3,
                         "messages_received": 3, "rounds": 2}


# -- matching and checking messages ---------------------------------------------------------


def test_out_of_order_messages_are_matched_by_seq():
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    with a, b:
        a.send(1, 2, "second", np.array([2.0, 2.5]))
        a.send(1, 1, "first", np.arange(3, dtype=np.int32))
        a.send(1, 0, "zero-d", np.array(7, dtype=np.uint64))
        np.testing.assert_array_equal(b.recv(0, 1, "first", np.int32, (3,)), [0, 1, 2])
        np.testing.assert_array_equal(b.recv(0, 2, "second", np.float64), [2.0, 2.5])
        assert b.recv(0, 0, "zero-d", np.uint64, ()) == 7


def test_a_seq_sent_twice_is_a_protocol_error():
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    with a, b:
        for seq in (4, 4, 5):
            a.send(1, seq, "x", np.zeros(1))
        with pytest.raises(ProtocolError, match="party 1: party 0 sent message 4 twice"):
            b.recv(0, 5, "x")


def test_received_arrays_are_writable_and_the_sender_may_reuse_small_buffers():
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    with a, b:
        array = np.arange(100_000, dtype=np.uint64)
        a.send(1, 1, "x", array)
        array[:] = 0
        got = b.recv(0, 1, "x")
        np.testing.assert_array_equal(got, np.arange(100_000))
        got += 1


def test_large_sent_arrays_go_without_copy_and_refuse_writes():
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    with a, b:
        array = np.arange(1 << 18, dtype=np.uint64)  # 2 MiB
        a.send(1, 1, "x", array)
        with pytest.raises(ValueError, match="read-only"):
            array[:] = 0
        np.testing.assert_array_equal(b.recv(0, 1, "x"), np.arange(1 << 18))


@pytest.mark.parametrize("expect, fragment", [
    (("add", np.uint64, (3,)), "party 1 expected 'add' uint64(3,), party 0 sent 'mul'"),
    (("mul", np.int64, (3,)), "expected 'mul' int64(3,), party 0 sent 'mul' uint64(3,)"),
    (("mul", np.uint64, (4,)), "expected 'mul' uint64(4,), party 0 sent 'mul' uint64(3,)"),
])
def test_op_dtype_or_shape_mismatch_names_both_parties(expect, fragment):
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    with a, b:
        a.send(1, 5, "mul", np.zeros(3, np.uint64))
        with pytest.raises(ProtocolError, match="message 5 from party 0 to party 1") as info:
            b.recv(0, 5, *expect)
        assert fragment in str(info.value)


def test_reserved_op_names_and_unknown_peers_are_refused():
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys), mesh(1, peers, keys))
    with a, b:
        with pytest.raises(ValueError, match="reserved"):
            a.send(1, 1, "__goodbye", np.zeros(1))
        with pytest.raises(ValueError, match="party 0 has no link to party 3"):
            a.send(3, 1, "x", np.zeros(1))
    with pytest.raises(NetError, match="not started or already closed"):
        a.send(1, 2, "x", np.zeros(1))


# -- authentication ---------------------------------------------------------------------------


def test_a_party_with_an_unlisted_key_cannot_join():
    peers, keys = cluster(3)
    rogue_keys = dict(enumerate(keys)) | {2: generate_keypair()}
    rogue_view = peers | {2: (peers[2][0], rogue_keys[2][0])}
    parties = [mesh(0, peers, keys, connect_timeout=20.0),
               mesh(1, peers, keys, connect_timeout=20.0),
               mesh(2, rogue_view, rogue_keys, connect_timeout=20.0)]
    begin = time.monotonic()
    results = in_threads(*(m.start for m in parties))
    assert time.monotonic() - begin < 10   # refused handshakes fail at once, not at 20 s
    for i in (0, 1):   # a link to party 2 fails its handshake (this one's, or the other's)
        assert isinstance(results[i], (HandshakeRefused, PeerLost)), results[i]
        assert f"the member at {peers[2][0]} drops the CURVE handshake made with the public " \
               f"key" in str(results[i]) and "lists for party 2" in str(results[i])
    assert isinstance(results[2], HandshakeRefused) and results[2].peer in (0, 1)
    assert f"party {results[2].peer} at {peers[results[2].peer][0]} refused party 2's public " \
           f"key {rogue_keys[2][0].decode()}" in str(results[2])


def test_nothing_from_an_unlisted_key_is_delivered():
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys, timeout=1.0), mesh(1, peers, keys))
    ctx = zmq.Context()
    intruder = ctx.socket(zmq.DEALER)
    intruder.linger = 0
    intruder.curve_publickey, intruder.curve_secretkey = generate_keypair()
    intruder.curve_serverkey = peers[0][1]   # a's real server key: only a's ZAP can refuse it
    intruder.routing_id = b"1"
    events = intruder.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    try:
        intruder.connect(peers[0][0])
        intruder.send_multipart(wire.encode(1, 9, "x", np.full(4, 666)))
        assert events.poll(3000), "the intruder's handshake was never refused"
        with a, b:
            with pytest.raises(PeerTimeout, match="no message 9 from peer 1 within 1 s"):
                a.recv(1, 9, "x")
            b.send(0, 9, "x", np.arange(4))
            np.testing.assert_array_equal(a.recv(1, 9, "x"), np.arange(4))
    finally:
        intruder.disable_monitor()
        events.close(0)
        intruder.close()
        ctx.term()


@pytest.mark.parametrize("curve", [True, pytest.param(False, marks=plaintext)])
def test_a_listed_party_cannot_claim_another_id(curve):
    peers, keys = cluster(3)
    parties = started(*(mesh(i, peers, keys, curve=curve) for i in range(3)))
    try:
        parties[1].my_id = 2   # party 1 now writes sender 2 into its headers
        parties[1].send(0, 7, "x", np.arange(3))
        with pytest.raises(ProtocolError, match="from party 1, whose header claims it is from "
                                                "party 2"):
            parties[0].recv(2, 7, "x")
    finally:
        for m in parties:
            m.close()


def test_own_key_must_match_the_config():
    peers, keys = cluster(2)
    with pytest.raises(AuthError, match="party 0: its public key is not the one"):
        ZmqMesh(0, peers, keys[1][1], keys[1][0])
    with pytest.raises(AuthError, match="does not belong to the secret key"):
        ZmqMesh(0, peers, keys[1][1], keys[0][0])
    with pytest.raises(AuthError, match="party 1 public key in the peers config"):
        ZmqMesh(0, peers | {1: (peers[1][0], b"short")}, keys[0][1], keys[0][0])


# -- peers going away ---------------------------------------------------------------------------


def idle_party(i, peers, key, ready):
    with mesh(i, peers, {i: key}, connect_timeout=20.0):
        ready.set()
        time.sleep(60)


def test_killed_peer_process_is_reported_promptly():
    peers, keys = cluster(2)
    ready = SPAWN.Event()
    child = SPAWN.Process(target=idle_party, args=(1, peers, keys[1], ready), daemon=True)
    child.start()
    try:
        with mesh(0, peers, keys, timeout=3.0, connect_timeout=20.0) as m:
            assert ready.wait(20)
            child.kill()
            begin = time.monotonic()
            with pytest.raises(PeerError) as info:
                m.recv(1, 1, "x")
            elapsed = time.monotonic() - begin
    finally:
        child.kill()
        child.join(10)
    assert info.value.peer == 1 and "peer 1" in str(info.value)
    assert isinstance(info.value, PeerLost), info.value
    assert elapsed < 2.0


def send_and_exit(i, peers, key):
    with mesh(i, peers, {i: key}, connect_timeout=20.0) as m:
        m.send(0, 1, "last", big(1))


def test_messages_sent_just_before_exit_arrive_then_the_peer_is_lost():
    peers, keys = cluster(2)
    child = SPAWN.Process(target=send_and_exit, args=(1, peers, keys[1]), daemon=True)
    child.start()
    try:
        with mesh(0, peers, keys, connect_timeout=20.0) as m:
            child.join(20)
            assert child.exitcode == 0
            np.testing.assert_array_equal(m.recv(1, 1, "last", np.uint64, (BIG,)), big(1))
            begin = time.monotonic()
            with pytest.raises(PeerLost, match="party 0: peer 1 closed the mesh"):
                m.recv(1, 2, "x")
            assert time.monotonic() - begin < 0.5
    finally:
        child.kill()
        child.join(10)


def test_silent_peer_times_out_naming_it():
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys, timeout=0.5), mesh(1, peers, keys))
    with a, b:
        with pytest.raises(PeerTimeout, match="party 0: no message 3 from peer 1 within 0.5 s"):
            a.recv(1, 3, "x")


def test_peer_that_never_starts_is_named():
    peers, keys = cluster(3)
    # party 0 times out itself, or first hears party 1's goodbye saying the same: either
    # way the error names party 2 and blames it
    with pytest.raises((PeerTimeout, PeerLost), match=r"peers \[2\] did not connect within "
                                                      r"1 s.*link to 2: connection refused"
                       ) as info:
        started(mesh(0, peers, keys, connect_timeout=1.0),
                mesh(1, peers, keys, connect_timeout=1.0))
    assert info.value.culprit == 2


def test_talks_to_limits_the_links():
    peers, keys = cluster(3)
    a, b = started(mesh(0, peers, keys, talks_to=[0, 1]), mesh(1, peers, keys, talks_to=[0]))
    with a, b:
        assert a.peer_ids == (1,)
        b.send(0, 1, "x", np.ones(2))
        np.testing.assert_array_equal(a.recv(1, 1, "x"), np.ones(2))


def test_config_errors_name_the_party_or_address():
    peers, keys = cluster(2)
    with pytest.raises(ValueError, match="party 5 is not in the peers config"):
        ZmqMesh(5, peers, *keys[0][::-1])
    with pytest.raises(ValueError, match=r"talks_to names parties \[9\]"):
        mesh(0, peers, keys, talks_to=[1, 9])
    with socket.socket() as squatter:
        host, port = peers[0][0][len("tcp://"):].rsplit(":", 1)
        squatter.bind((host, int(port)))
        squatter.listen()
        with pytest.raises(NetError, match=f"party 0: cannot listen on {peers[0][0]}"):
            mesh(0, peers, keys).start()


# -- encryption ----------------------------------------------------------------------------------


class TcpTap:
    """A TCP forwarder to `target` ("tcp://host:port") that records every byte it carries,
    as an eavesdropper on the network would see them."""

    def __init__(self, target: str):
        host, port = target[len("tcp://"):].rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.address = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self.seen = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:   # target not listening yet: the client will reconnect
                client.close()
                continue
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._forward, args=(src, dst), daemon=True).start()
        self._listener.close()

    def _forward(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(None)
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def close(self) -> None:
        self._stop.set()


SECRET = b"TOP SECRET: the model weights!!!"


@pytest.mark.parametrize("curve", [True, pytest.param(False, marks=plaintext)])
def test_eavesdropper_sees_plaintext_only_without_curve(curve):
    assert len(SECRET) == 32
    peers, keys = cluster(2)
    tap = TcpTap(peers[1][0])
    tapped = peers | {1: (tap.address, peers[1][1])}   # party 0 reaches party 1 via the tap
    try:
        a, b = started(mesh(0, tapped, keys, curve=curve), mesh(1, peers, keys, curve=curve))
        with a, b:
            secret = np.frombuffer(SECRET * 8, np.uint8)
            a.send(1, 1, "weights", secret)
            np.testing.assert_array_equal(b.recv(0, 1, "weights"), secret)
    finally:
        tap.close()
    with tap._lock:
        seen = bytes(tap.seen)
    assert len(seen) > secret.nbytes
    assert (SECRET in seen) is (not curve)


def test_plaintext_mode_warns():
    peers, keys = cluster(2)
    with pytest.warns(RuntimeWarning, match="party 0: .*unencrypted and unauthenticated"):
        ZmqMesh(0, peers, b"", b"", curve=False)


# -- key files -----------------------------------------------------------------------------------


def test_key_files_round_trip_in_zmq_certificate_format(tmp_path):
    public_file, secret_file = write_keypair(tmp_path, "party0")
    assert (public_file.name, secret_file.name) == ("party0.key", "party0.key_secret")
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    public, secret = load_secret(secret_file)
    assert zmq.auth.load_certificate(secret_file) == (public, secret)
    assert load_public(public_file) == public == zmq.curve_public(secret)
    assert load_secret(secret_file, expected_public=public) == (public, secret)
    with pytest.raises(AuthError, match=f"{secret_file} holds public key"):
        load_secret(secret_file, expected_public=generate_keypair()[0])
    with pytest.raises(AuthError, match="holds no secret key"):
        load_secret(public_file)
