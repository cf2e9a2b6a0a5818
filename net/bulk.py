"""Bulk frames: large payloads sealed with AES-256-GCM instead of CurveZMQ's cipher.

CurveZMQ encrypts with XSalsa20-Poly1305 in libzmq's I/O thread, about three times slower
than AES-GCM through AES-NI (OpenSSL, via `cryptography`) on this machine's 8 MB
messages. So large payloads travel on a second, plaintext ZMTP connection, each message
sealed on its own in three parts:

    prefix = sender u16 | counter u64 (little-endian; the frame's number in its direction)
    AES-256-GCM(key, nonce = counter u64 | 0 u32, the wire header, aad = prefix) + tag
    AES-256-GCM(key, nonce = counter u64 | 1 u32, the payload, aad = prefix + header) + tag

Only the prefix is in clear: the header (op, seq, shape) is as hidden as on the CURVE
link, and the payload's tag binds it to its header and number. Overhead: 42 bytes a
message (prefix and two tags), one AES-GCM pass over the payload each way.

Keys: every member draws, for each peer, a fresh random key on which that peer will send
to it, and gives it (with its bulk port) in its hello over the CURVE link: confidential,
and bound to the peer's authenticated CURVE identity, so no key exchange of its own is
needed. A key is handed out once, to one process, which numbers its frames from 0: a
(key, nonce) pair is never used twice. Only the receiver and that one sender hold the
key, so a frame that opens under the key of the sender its prefix names was sealed by
that sender for this receiver (not reflected from another direction).

Payloads are sealed whole, so at most MAX_PAYLOAD bytes (AES-GCM's limit in `cryptography`;
the mesh sends larger ones on the CURVE link).

An Opener accepts exactly the next counter. A frame that does not open (a stranger's, a
wrong key, a flipped bit anywhere, a part longer than any sealed one) or that repeats a counter
already accepted (a replay) is `Refused`: the caller logs and drops it, and the honest
traffic goes on. A frame that opens but skips counters is a `Gap`: frames of the true
sender were lost (a reconnection) or withheld on the network, so what follows cannot be
complete; the caller fails with an error naming the sender.
"""

from __future__ import annotations

import os
import struct

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from net import wire
from net.errors import ProtocolError

KEY_BYTES = 32
TAG_BYTES = 16
MAX_PAYLOAD = 2**31 - 1
"""Bytes AES-GCM seals at once (the `cryptography` package's limit): larger payloads go on
the CURVE link, and a body longer than this and its tag is refused unopened."""
MAX_SEALED_HEADER = wire.MAX_HEADER + TAG_BYTES
"""The longest sealed header: net.wire's fixed fields, op and shape, and its tag."""
PREFIX = struct.Struct("<HQ")      # sender, counter
_HELLO = struct.Struct("<H32s")   # bulk port, the key the peer is to send on


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def _nonce(counter: int, part: int) -> bytes:
    return counter.to_bytes(8, "little") + part.to_bytes(4, "little")


def sender_of(prefix) -> int:
    """The sender a frame's prefix names (to pick its key); Refused if malformed."""
    prefix = memoryview(prefix).cast("B")
    if len(prefix) != PREFIX.size:
        raise Refused(f"a prefix of {len(prefix)} bytes, not {PREFIX.size}")
    return PREFIX.unpack(prefix)[0]


def hello_payload(port: int, key: bytes) -> np.ndarray:
    """What a member's hello to a peer carries: its bulk port and the peer's sending key."""
    return np.frombuffer(_HELLO.pack(port, key), dtype=np.uint8)


def parse_hello(payload: np.ndarray) -> tuple[int, bytes] | None:
    """(port, key) from a hello's payload; None for a member without a bulk channel."""
    if payload.nbytes == 0:
        return None
    if payload.nbytes != _HELLO.size:
        raise ProtocolError(f"hello of {payload.nbytes} bytes; expected 0 or {_HELLO.size}")
    port, key = _HELLO.unpack(payload.tobytes())
    if port == 0:
        raise ProtocolError("hello names bulk port 0")
    return port, key


class Refused(Exception):
    """A frame to drop (and log): it does not open, or repeats an accepted counter."""


class Gap(Exception):
    """An authentic frame numbered `got` arrived when `due` was the next one."""

    def __init__(self, due: int, got: int):
        super().__init__(f"frame {got} arrived when frame {due} was due")
        self.due, self.got = due, got


class Sealer:
    """The sending end of one direction (from `sender`): numbers and seals frames."""

    def __init__(self, sender: int, key: bytes):
        self._aead = AESGCM(key)
        self._sender = sender
        self.counter = 0   # frames sealed so far

    def seal(self, header: bytes, payload: memoryview) -> tuple[bytes, bytes, np.ndarray]:
        """(prefix, sealed header, sealed payload) of the next frame. The payload is read
        now (one AES-GCM pass into a fresh buffer), so the caller may reuse it at once."""
        counter = self.counter
        prefix = PREFIX.pack(self._sender, counter)
        sealed_header = self._aead.encrypt(_nonce(counter, 0), header, prefix)
        body = np.empty(len(payload) + TAG_BYTES, np.uint8)
        self._aead.encrypt_into(_nonce(counter, 1), payload, prefix + header, body)
        self.counter = counter + 1
        return prefix, sealed_header, body


class Opener:
    """The receiving end of one direction: opens frames in order, exactly once each."""

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)
        self.due = 0   # the counter of the next frame to accept

    def open(self, prefix, sealed_header, body) -> tuple[bytes, np.ndarray]:
        """(header, payload: a fresh writable uint8 array) of the frame numbered `due`.
        Raises Refused or Gap (see the module docstring); the state moves only on
        success. A malformed prefix is the caller's to refuse (see sender_of)."""
        prefix = bytes(prefix)
        body = memoryview(body).cast("B")
        sealed_header = memoryview(sealed_header).cast("B")
        got = PREFIX.unpack(prefix)[1]
        if got < self.due:
            raise Refused(f"frame {got} again (frames up to {self.due - 1} were accepted): "
                          f"a replay")
        if len(body) < TAG_BYTES:
            raise Refused(f"a body of {len(body)} bytes, shorter than its tag")
        if len(body) > MAX_PAYLOAD + TAG_BYTES:
            raise Refused(f"a body of {len(body)} bytes, longer than any sealed payload")
        if len(sealed_header) > MAX_SEALED_HEADER:
            raise Refused(f"a sealed header of {len(sealed_header)} bytes, longer than any")
        payload = np.empty(len(body) - TAG_BYTES, np.uint8)
        try:
            header = self._aead.decrypt(_nonce(got, 0), bytes(sealed_header), prefix)
            self._aead.decrypt_into(_nonce(got, 1), body, prefix + header, payload)
        except InvalidTag:
            raise Refused(f"frame {got} does not authenticate (forged, corrupted, or sealed "
                          f"with another key)") from None
        if got != self.due:
            raise Gap(self.due, got)
        self.due = got + 1
        return header, payload
