"""What a member knows of its outgoing link to one peer, from libzmq's socket monitor.

A member's DEALER to a peer reports, through monitor events, every TCP connection attempt
and every handshake. Read in order, they tell apart what a bare timeout cannot:

- the address refuses connections (nothing listens there) or does not answer;
- the handshake failed: the peer refused our key (ZAP status 400), or the member at the
  address dropped our CURVE HELLO (it does not hold the key our config lists for it), or
  it does not speak ZMTP at all;
- an established link dropped, and what the reconnection found: a refusal (the process
  is gone), a TCP connection that never completes its handshake (the kernel still accepts
  for a process that no longer runs: stopped or starved), or nothing (host or network down).

libzmq 4.3 (pyzmq 27) emits these events; their `value` is an errno for CONNECT_RETRIED's
cause-less retries and NO_DETAIL, a ZMTP error code for PROTOCOL, a ZAP status for AUTH.
"""

from __future__ import annotations

import zmq

HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                    zmq.EVENT_HANDSHAKE_FAILED_AUTH)
MONITORED = (zmq.EVENT_CONNECT_DELAYED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CONNECTED
             | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
             | sum(HANDSHAKE_FAILED))

SURE_FAILURES = 2
"""Consecutive handshake failures (other than a refused key, which is certain at once)
after which a link is known to be misconfigured rather than unlucky."""

ZMTP_ERRORS = {
    0x11000001: "its CURVE handshake failed to decrypt (the client does not hold this "
                "member's public key: a wrong key in its config)",
    0x11000002: "it does not use CURVE encryption (mechanism mismatch: a plaintext peer?)",
    0x11000003: "it sent an unknown mechanism (not a mesh peer)",
}


def protocol_error(code: int) -> str:
    """What a ZMTP protocol error code (a HANDSHAKE_FAILED_PROTOCOL value) means."""
    return ZMTP_ERRORS.get(code, f"ZMTP protocol error 0x{code:08x}: it does not speak "
                                 f"this protocol (not a ZeroMQ peer, or a different one)")


class Link:
    """The state of our link to `peer` at `address`, updated by `event(kind, value, now)`."""

    def __init__(self, peer: int, address: str):
        self.peer = peer
        self.address = address
        self.state = "not connected yet"
        self.up = False
        self.ever_up = False
        self.down_since: float | None = None   # when an established link dropped
        self.after_drop: str | None = None     # what reconnecting found since: refused/tcp
        self.refused_at: float | None = None   # the latest refused connection attempt
        self._tcp = False                      # the current attempt reached TCP
        self.failures = 0                      # consecutive failed handshakes
        self.failure: tuple[int, int] | None = None   # (event, value) of the latest one

    def event(self, kind: int, value: int, now: float) -> None:
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.up = self.ever_up = True
            self.state, self.down_since, self.after_drop, self.failures = "connected", None, \
                None, 0
            return
        if kind in HANDSHAKE_FAILED:
            self.failures += 1
            self.failure = (kind, value)
            self.state = "handshake failed: " + self._failure_text()
            return
        if kind == zmq.EVENT_DISCONNECTED:
            if self.up:
                self.up, self.down_since, self.state = False, now, "disconnected"
            return
        if kind == zmq.EVENT_CONNECT_RETRIED:   # also after a failed handshake: tell apart
            refused, self._tcp = not self._tcp, False
            if refused:
                self.refused_at = now
                if self.down_since is not None:
                    self.after_drop = "refused"
        elif kind == zmq.EVENT_CONNECTED:
            self._tcp = True
            if self.down_since is not None:
                self.after_drop = "tcp"
        if self.failure is None or self.ever_up:   # keep the telling state until success
            self.state = {
                zmq.EVENT_CONNECT_DELAYED: f"connecting to {self.address}",
                zmq.EVENT_CONNECT_RETRIED: f"connection refused or unreachable at "
                                           f"{self.address}, retrying",
                zmq.EVENT_CONNECTED: f"TCP connected to {self.address}, handshake pending",
            }.get(kind, self.state)

    def _failure_text(self) -> str:
        kind, value = self.failure
        if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return "our key was rejected"
        if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            return f"the program at {self.address} does not speak this protocol " \
                   f"({protocol_error(value)})"
        return f"the member at {self.address} dropped our CURVE handshake (wrong server key?)"

    @property
    def key_refused(self) -> bool:
        """The peer's authenticator refused our key: certain at the first refusal."""
        return self.failure is not None and self.failure[0] == zmq.EVENT_HANDSHAKE_FAILED_AUTH \
            and not self.up

    @property
    def handshake_broken(self) -> bool:
        """The handshake failed SURE_FAILURES times in a row without ever succeeding."""
        return not self.up and self.failures >= SURE_FAILURES

    def loss(self, heartbeat: float) -> tuple[str, str]:
        """(how, why) for an established link that dropped: see PeerLost.how."""
        if self.after_drop == "refused":
            return "died", (f"its connection closed and {self.address} now refuses "
                            f"connections: its process died (or closed its socket without "
                            f"a goodbye)")
        if self.after_drop == "tcp":
            return "frozen", (f"it stopped answering heartbeats for {heartbeat:g} s while "
                              f"{self.address} still accepts TCP connections: its process "
                              f"is frozen (stopped, or starved of CPU or memory)")
        return "unreachable", (f"its connection dropped and {self.address} does not answer: "
                               f"its host is down or the network failed")
