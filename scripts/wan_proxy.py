"""A TCP forwarding proxy that delays every chunk by a fixed one-way delay.

The kernel here has no netem, so scripts/wan.sh adds link latency in user space: each
party's (and the dealer's) connection to a peer goes through one of these proxies.

    python scripts/wan_proxy.py --delay-ms 10 127.0.0.1:7101=10.77.0.11:7000 [...]

Every accepted connection is forwarded to its target. In each direction a reader thread
stamps each chunk with (time read + delay) and a writer thread sends it no earlier than
that, in order, so data takes at least the delay and the byte stream is unchanged.
A connection that arrives before its target listens waits for the target (up to
CONNECT_PATIENCE s) rather than being dropped: ZeroMQ would take a drop for a lost peer.
Threads and time.sleep rather than asyncio: asyncio's epoll waits round up to whole
milliseconds, too coarse for the LAN profile's 0.1 ms.
"""

from __future__ import annotations

import argparse
import queue
import socket
import threading
import time

CHUNK = 256 * 1024
MAX_HELD = 1024
"""Chunks held per direction at most: a full queue stops the reader (backpressure)."""
CONNECT_PATIENCE = 30.0


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class DelayProxy:
    """Listen on `listen` (host, port; port 0 picks one) and forward every connection to
    `target`, each direction delayed by `delay` seconds."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], delay: float):
        self.target, self.delay = target, delay
        self._server = socket.create_server(listen)
        self.address = self._server.getsockname()[:2]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> "DelayProxy":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def close(self) -> None:
        """Stop listening and drop every forwarded connection."""
        self._server.close()
        with self._lock:
            for sock in self._open:
                _drop(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        deadline = time.monotonic() + CONNECT_PATIENCE
        while True:
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    client.close()
                    return
                time.sleep(0.05)
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open.update((client, upstream))
        link = _Link(client, upstream, self._forget)
        for src, dst in ((client, upstream), (upstream, client)):
            link.forward(src, dst, self.delay)

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(socks)


class _Link:
    """One forwarded connection: both sockets are closed once both directions ended,
    or at once if either fails."""

    def __init__(self, a: socket.socket, b: socket.socket, on_close):
        self._socks, self._on_close = (a, b), on_close
        self._ended, self._lock = 0, threading.Lock()

    def forward(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        held: queue.Queue = queue.Queue(MAX_HELD)

        def read() -> None:
            try:
                while chunk := src.recv(CHUNK):
                    held.put((time.monotonic() + delay, chunk))
            except OSError:
                pass
            held.put((time.monotonic() + delay, b""))

        def write() -> None:
            try:
                while True:
                    due, chunk = held.get()
                    if (wait := due - time.monotonic()) > 0:
                        time.sleep(wait)
                    if not chunk:
                        dst.shutdown(socket.SHUT_WR)
                        break
                    dst.sendall(chunk)
            except OSError:
                self._end(failed=True)
                return
            self._end(failed=False)

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()

    def _end(self, failed: bool) -> None:
        with self._lock:
            self._ended += 1
            done = failed or self._ended == 2
        if done:
            for sock in self._socks:
                _drop(sock)
            self._on_close(*self._socks)


def _drop(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
    except OSError:
        pass
    sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    parser.add_argument("links", nargs="+", metavar="LISTEN=TARGET",
                        help="host:port to listen on = host:port to forward to")
    args = parser.parse_args()
    for link in args.links:
        listen, target = link.split("=")
        DelayProxy(_address(listen), _address(target), args.delay_ms / 1000).start()
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
