"""The delay proxy of scripts/wan.sh, in-process: every chunk arrives intact, in order and
no earlier than the one-way delay after it was sent, in both directions, also when the
client connects before the target listens."""

import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from wan_proxy import DelayProxy  # noqa: E402

DELAY = 0.05


def _echo_server(arrivals: list):
    """A server that echoes everything back and notes (time, bytes) of each receipt; it
    listens only after a while."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))

    def serve():
        time.sleep(0.2)
        server.listen()
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1 << 16):
                arrivals.append((time.monotonic(), data))
                conn.sendall(data)
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()


def _recv_exactly(sock: socket.socket, n: int) -> tuple[bytes, float]:
    """n bytes and the time the first of them arrived."""
    parts, first = [], None
    while n:
        part = sock.recv(n)
        assert part, "connection closed early"
        first = first or time.monotonic()
        parts.append(part)
        n -= len(part)
    return b"".join(parts), first


def test_proxy_delays_each_chunk_and_keeps_bytes_and_order():
    arrivals = []
    proxy = DelayProxy(("127.0.0.1", 0), _echo_server(arrivals), DELAY).start()
    try:
        client = socket.create_connection(proxy.address)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        big = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
        sent = []
        for message in (b"first", b"second", big):
            sent.append(time.monotonic())
            client.sendall(message)
            echoed, first_back = _recv_exactly(client, len(message))
            assert echoed == message  # intact and in order, both ways
            assert first_back - sent[-1] >= 2 * DELAY  # there and back again
            time.sleep(DELAY / 2)  # the next message starts from an idle link
        first_seen = [next(t for t, data in arrivals if t >= s) for s in sent]
        assert all(seen - s >= DELAY for seen, s in zip(first_seen, sent)), (first_seen, sent)
        assert first_seen[1] - sent[1] < DELAY + 0.5  # held for the delay, not much longer
        assert b"".join(data for _, data in arrivals) == b"first" + b"second" + big
        client.shutdown(socket.SHUT_WR)  # end of stream travels through too
        assert client.recv(1) == b""
        client.close()
    finally:
        proxy.close()
