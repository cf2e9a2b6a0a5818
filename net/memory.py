"""In-process transport for tests: parties are threads, messages are array copies.

Same contract as the ZeroMQ mesh (mailbox by (sender, seq), header checks, timeouts,
a closed peer is reported as lost) without sockets. Byte counters count payload only.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from net.errors import PeerLost, PeerTimeout
from net.stats import CommStats
from net.transport import Transport


class MemoryHub:
    """Connects `n_peers` MemoryTransports; create one hub per simulated cluster."""

    def __init__(self, n_peers: int, timeout: float = 30.0):
        self.n_peers = n_peers
        self.timeout = timeout
        self._cond = threading.Condition()
        self._inbox: list[dict] = [dict() for _ in range(n_peers)]
        self._closed: set[int] = set()

    def transport(self, my_id: int) -> "MemoryTransport":
        return MemoryTransport(self, my_id)


class MemoryTransport(Transport):
    def __init__(self, hub: MemoryHub, my_id: int):
        self.hub = hub
        self.my_id = my_id
        self.peer_ids = tuple(i for i in range(hub.n_peers) if i != my_id)
        self.timeout = hub.timeout
        self.stats = CommStats()

    def send(self, to: int, seq: int, op: str, array: np.ndarray) -> None:
        array = np.array(array, copy=True)
        with self.hub._cond:
            self.hub._inbox[to][(self.my_id, seq)] = (op, array)
            self.hub._cond.notify_all()
        self.stats.sent(array.nbytes)

    def _wait(self, frm: int, seq: int):
        deadline = time.monotonic() + self.timeout
        key = (frm, seq)
        inbox = self.hub._inbox[self.my_id]
        with self.hub._cond:
            while key not in inbox:
                if frm in self.hub._closed:
                    raise PeerLost(frm, f"party {self.my_id}: peer {frm} closed its connection")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerTimeout(frm, f"party {self.my_id}: no message {seq} from peer "
                                           f"{frm} within {self.timeout:g} s")
                self.hub._cond.wait(left)
            op, array = inbox.pop(key)
        self.stats.received(array.nbytes)
        return op, array

    def close(self) -> None:
        with self.hub._cond:
            self.hub._closed.add(self.my_id)
            self.hub._cond.notify_all()
