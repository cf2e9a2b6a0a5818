"""Diagnoses that name the right member, fast: a wrong address or key in one member's
config, dead versus silent peers, refused connections logged, a bounded mailbox. Real
ZeroMQ sockets on loopback with CURVE, random ports; every wait has a timeout."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from net import (HandshakeRefused, PeerLost, PeerTimeout, PeerUnreachable, ProtocolError,
                 free_tcp_addresses, generate_keypair)
from net.mailbox import LANE, Mailbox
from test_net_mesh import SPAWN, cluster, in_threads, mesh, started, wire_bytes


def start_then(m, then=None):
    """Start mesh `m`, run `then(m)` if given; return the error raised, or None."""
    try:
        m.start()
        if then is not None:
            then(m)
    except Exception as exc:  # noqa: BLE001 - handed back to the test
        m.close(reason=f"{type(exc).__name__}: {exc}", culprit=getattr(exc, "culprit", None))
        return exc
    m.close()
    return None


# -- a wrong address or key in one member's copy of the config -------------------------------


def test_a_wrong_port_in_one_config_is_named_by_the_member_that_tried_at_once():
    peers, keys = cluster(3)
    dead = free_tcp_addresses(1)[0]            # nothing listens there
    view0 = peers | {2: (dead, peers[2][1])}   # party 0's copy points party 2 at it
    ms = [mesh(0, view0, keys, connect_timeout=30.0, peers_file="cluster-0.toml"),
          mesh(1, peers, keys, connect_timeout=30.0, timeout=30.0),
          mesh(2, peers, keys, connect_timeout=30.0)]
    begin = time.monotonic()
    errors = in_threads(lambda: start_then(ms[0]),
                        lambda: start_then(ms[1], lambda m: m.recv(0, 1, "x")),
                        lambda: start_then(ms[2]), timeout=40)
    assert time.monotonic() - begin < 10   # not the 30 s connect timeout
    assert isinstance(errors[0], PeerUnreachable) and errors[0].peer == 2, errors[0]
    assert f"party 0 cannot reach party 2 at {dead} (connection refused: nothing listens " \
           f"there), though party 2 is running" in str(errors[0])
    assert "party 2 in party 0's peers config (cluster-0.toml) is wrong" in str(errors[0])
    for i in (1, 2):   # the others learn it from a goodbye (party 0's, or one quoting it)
        assert isinstance(errors[i], PeerLost), errors[i]
        assert f"(it said: PeerUnreachable: party 0 cannot reach party 2 at {dead}" \
               in str(errors[i])
    assert [e.culprit for e in errors] == [0, 0, 0]


def test_a_wrong_key_in_one_config_fails_at_once_naming_the_key_and_its_file():
    peers, keys = cluster(3)
    wrong = generate_keypair()[0]
    view0 = peers | {2: (peers[2][0], wrong)}  # party 0's copy has a wrong key for party 2
    ms = [mesh(0, view0, keys, connect_timeout=30.0, peers_file="cluster-0.toml"),
          mesh(1, peers, keys, connect_timeout=30.0, timeout=30.0),
          mesh(2, peers, keys, connect_timeout=30.0, key_file="keys/party2.key_secret")]
    begin = time.monotonic()
    errors = in_threads(lambda: start_then(ms[0]),
                        lambda: start_then(ms[1], lambda m: m.recv(2, 1, "x")),
                        lambda: start_then(ms[2]), timeout=40)
    assert time.monotonic() - begin < 10
    assert isinstance(errors[2], HandshakeRefused) and errors[2].peer == 0, errors[2]
    assert f"party 2: party 0 at {peers[0][0]} refused party 2's public key " \
           f"{keys[2][0].decode()} (from keys/party2.key_secret): party 0's copy of the peers " \
           f"config lists another key for party 2" in str(errors[2])
    assert isinstance(errors[0], HandshakeRefused) and errors[0].peer == 2, errors[0]
    assert f"drops the CURVE handshake made with the public key party 0's peers config " \
           f"(cluster-0.toml) lists for party 2 ({wrong.decode()})" in str(errors[0])
    assert "party 0 refused a connection from 127.0.0.1: a public key that is not in its " \
           f"peers config ({keys[2][0].decode()})" in str(errors[0])   # party 2's real key
    assert isinstance(errors[1], PeerLost), errors[1]
    assert [e.culprit for e in errors] == [0, 0, 0]


# -- dead or silent ---------------------------------------------------------------------------


def busy_party(i, peers, key, ready, seconds):
    """Start, then hold the interpreter in a pure-Python loop (stuck in local code)."""
    with mesh(i, peers, {i: key}, connect_timeout=20.0, timeout=30.0):
        ready.set()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass


def idle_party(i, peers, key, ready):
    with mesh(i, peers, {i: key}, connect_timeout=20.0, timeout=30.0, heartbeat=1.0):
        ready.set()
        time.sleep(60)


def with_child(target, *args):
    peers, keys = cluster(2)
    ready = SPAWN.Event()
    child = SPAWN.Process(target=target, args=(1, peers, keys[1], ready, *args), daemon=True)
    child.start()
    return peers, keys, ready, child


def test_a_live_peer_stuck_in_local_code_is_reported_alive_and_slow_not_dead():
    peers, keys, ready, child = with_child(busy_party, 30.0)
    try:
        with mesh(0, peers, keys, timeout=4.0, connect_timeout=20.0, heartbeat=1.0) as m:
            assert ready.wait(20)
            with pytest.raises(PeerTimeout) as info:
                m.recv(1, 1, "x")
    finally:
        child.kill()
        child.join(10)
    assert not isinstance(info.value, PeerLost)
    assert "party 0: no message 1 from peer 1 within 4 s; its link stayed up, answering " \
           "heartbeats, so its process is alive: stuck or slow" in str(info.value)
    assert info.value.culprit == 1


def test_a_frozen_peer_is_lost_by_heartbeat_and_said_to_be_frozen():
    peers, keys, ready, child = with_child(idle_party)
    try:
        with mesh(0, peers, keys, timeout=30.0, connect_timeout=20.0, heartbeat=1.0) as m:
            assert ready.wait(20)
            os.kill(child.pid, signal.SIGSTOP)
            begin = time.monotonic()
            with pytest.raises(PeerLost) as info:
                m.recv(1, 1, "x")
            elapsed = time.monotonic() - begin
    finally:
        os.kill(child.pid, signal.SIGCONT)
        child.kill()
        child.join(10)
    assert elapsed < 10, elapsed   # heartbeat 1 s, not the 30 s timeout
    assert info.value.how == "frozen" and info.value.culprit == 1
    assert f"peer 1 disconnected before sending message 1: it stopped answering heartbeats " \
           f"for 1 s while {peers[1][0]} still accepts TCP connections: its process is " \
           f"frozen" in str(info.value)


def test_a_killed_peer_is_said_to_have_died():
    peers, keys, ready, child = with_child(idle_party)
    try:
        with mesh(0, peers, keys, timeout=30.0, connect_timeout=20.0) as m:
            assert ready.wait(20)
            child.kill()
            with pytest.raises(PeerLost) as info:
                m.recv(1, 1, "x")
    finally:
        child.kill()
        child.join(10)
    assert info.value.how == "died" and info.value.culprit == 1
    assert f"its connection closed and {peers[1][0]} now refuses connections: its process " \
           f"died" in str(info.value)


def test_errors_keep_their_attributes_through_pickle():
    exc = pickle.loads(pickle.dumps(PeerLost(1, "party 0: peer 1 ...", culprit=2, how="frozen")))
    assert (type(exc), str(exc), exc.peer, exc.culprit, exc.how) == \
        (PeerLost, "party 0: peer 1 ...", 1, 2, "frozen")


# -- refused connections leave a trace --------------------------------------------------------


def curve_client(ctx, address, server_key, client_keys=None):
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_publickey, sock.curve_secretkey = client_keys or generate_keypair()
    sock.curve_serverkey = server_key
    sock.connect(address)
    return sock


def test_refused_connections_are_logged_once_per_address_and_cause(caplog):
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys, timeout=2.0), mesh(1, peers, keys))
    host, port = peers[0][0][len("tcp://"):].rsplit(":", 1)
    ctx = zmq.Context()
    clients = []
    try:
        with caplog.at_level(logging.WARNING, logger="net"):
            with a, b:
                garbage = socket.create_connection((host, int(port)), timeout=5)
                garbage.sendall(b"GET / HTTP/1.0\r\n\r\n")
                clients += [curve_client(ctx, peers[0][0], peers[0][1]) for _ in range(30)]
                clients.append(curve_client(ctx, peers[0][0], generate_keypair()[0], keys[1]))
                with pytest.raises(PeerTimeout):
                    a.recv(1, 1, "x")   # two seconds for the refusals to happen
                garbage.close()
            lines = [r.getMessage() for r in caplog.records if r.name == "net"]
    finally:
        for c in clients:
            c.close()
        ctx.term()
    unknown = [m for m in lines if "party 0 refused a connection from 127.0.0.1: a public key "
                                   "that is not in its peers config" in m]
    assert len(unknown) == 1, lines   # 30 attempts, one line
    assert any("party 0 refused 29 more connection(s) from 127.0.0.1" in m and
               "not in its peers config" in m for m in lines), lines   # counted, at close
    garbage_lines = [m for m in lines if "it closed the connection before any handshake" in m]
    assert garbage_lines, lines   # from 127.0.0.1:<port> if read before libzmq hung up
    # one line per host and cause: the first such connection is named (ours, or a client
    # socket that libzmq closed before its handshake), the rest counted
    assert any("from 127.0.0.1:" in m or "from an unknown address:" in m
               for m in garbage_lines), lines
    assert any("party 0 refused a connection from " in m and "its CURVE handshake failed to "
               "decrypt" in m for m in lines), lines   # (the address if read in time)
    assert len(lines) <= 8, lines   # dozens of refusals, a handful of lines
    assert not any("party 1 refused" in m for m in lines), lines


def test_refusals_reach_stderr_without_any_logging_set_up(tmp_path):
    code = (
        "import socket, time, numpy as np\n"
        "from net import ZmqMesh, free_tcp_addresses, generate_keypair\n"
        "(pub, sec), (pub1, _) = generate_keypair(), generate_keypair()\n"
        "a0, a1 = free_tcp_addresses(2)\n"
        "m = ZmqMesh(0, {0: (a0, pub), 1: (a1, pub1)}, sec, pub, connect_timeout=1.5)\n"
        "host, port = a0[6:].rsplit(':', 1)\n"
        "import threading\n"
        "def poke():\n"
        "    time.sleep(0.5)\n"
        "    with socket.create_connection((host, int(port))) as s:\n"
        "        s.sendall(b'junk' * 100)\n"
        "        time.sleep(0.3)\n"
        "threading.Thread(target=poke).start()\n"
        "try:\n"
        "    m.start()\n"
        "except Exception as e:\n"
        "    print(type(e).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert "PeerTimeout" in out.stdout, out.stderr
    assert "party 0 refused a connection from " in out.stderr   # 127.0.0.1:<port> if read
    assert "it closed the connection before any handshake" in out.stderr   # in time


# -- a bounded mailbox ------------------------------------------------------------------------


MB8 = np.zeros(1 << 20, np.uint64)


def test_a_replaying_peer_is_refused_not_buffered():
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys, timeout=5.0), mesh(1, peers, keys))
    with a, b:
        b.send(0, 1, "x", MB8)
        assert a.recv(1, 1, "x").nbytes == MB8.nbytes
        for _ in range(25):   # a peer with a valid key replays message 1 (8 MB) 25 times
            b._send(0, 1, "x", MB8)
        with pytest.raises(ProtocolError) as info:
            a.recv(1, 2, "x")
        assert a._mailbox.waiting_bytes(1) == 0
    assert f"party 0: refused message 1 ('x', {wire_bytes('x', MB8)} bytes) from party 1: " \
           f"message 1 from party 1 was already received and used (a replay" in str(info.value)
    assert info.value.culprit == 1


def test_messages_far_ahead_or_over_the_byte_limit_are_refused():
    peers, keys = cluster(2)
    a, b = started(mesh(0, peers, keys, timeout=5.0, mailbox_bytes=20 << 20),
                   mesh(1, peers, keys))
    with a, b:
        b.send(0, 5, "x", np.arange(3))
        b.send(0, 5 + LANE, "retry", np.arange(2))   # another lane: not a replay of 5
        assert a.recv(1, 5 + LANE, "retry").size == 2 and a.recv(1, 5, "x").size == 3
        b.send(0, (1 << 20) + 10, "x", np.arange(3))
        with pytest.raises(ProtocolError, match=r"refused message 1048586 .* from party 1: it "
                                                r"is more than 1048576 messages ahead"):
            a.recv(1, 6, "x")
    a, b = started(mesh(0, peers, keys, timeout=5.0, mailbox_bytes=20 << 20),
                   mesh(1, peers, keys))
    with a, b:
        for seq in (10, 11, 12):
            b.send(0, seq, "x", MB8)
        with pytest.raises(ProtocolError, match=rf"refused message 12 .* party 1 already has "
                                                rf"{2 * wire_bytes('x', MB8)} bytes of messages "
                                                rf"waiting to be used, and the limit is 20971520"):
            a.recv(1, 1, "x")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 300)), min_size=1, max_size=200,
                unique=True), st.randoms())
def test_mailbox_refuses_exactly_what_was_taken(seqs, rng):
    box = Mailbox(0)
    numbers = [lane * LANE + k for lane, k in seqs]
    order = numbers[:]
    rng.shuffle(order)
    for n in numbers:
        box.put(1, n, "x", n, 1)
    taken = set()
    for n in order[: len(order) // 2]:
        assert box.take(1, n) == n
        taken.add(n)
    for n in numbers:
        if n in taken:
            with pytest.raises(ProtocolError, match="already received and used"):
                box.put(1, n, "x", n, 1)
        else:
            with pytest.raises(ProtocolError, match="twice"):
                box.put(1, n, "x", n, 1)
            assert box.take(1, n) == n
    assert box.waiting_bytes(1) == 0
    box.put(2, numbers[0], "x", 0, 1)   # another sender's numbers are its own


def test_members_that_are_not_parties_are_called_by_their_names():
    peers, keys = cluster(2)
    names = {1: "dealer"}
    a, b = started(mesh(0, peers, keys, names=names), mesh(1, peers, keys, names=names))
    with a:
        b.close(reason="ValueError (details kept by that party)")
        with pytest.raises(PeerLost) as info:
            a.recv(1, 1, "x")
    assert str(info.value) == "party 0: dealer closed the mesh before sending message 1 (it " \
                              "said: ValueError (details kept by that party))"
    assert info.value.culprit == 1
