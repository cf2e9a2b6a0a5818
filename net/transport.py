"""The interface every transport implements: numbered arrays between numbered peers.

A message is identified by (sender, seq); `op` is a human-readable tag that both sides
must agree on. Receiving checks op, dtype and shape against what the caller expects and
raises ProtocolError naming both sides when they differ. Arrival order never matters:
early messages wait in a mailbox keyed by (sender, seq).

Sequence numbers are used once per (sender, receiver) and go up, roughly in the order
they are used, within lanes of 2**40 (k and k + 2**40 are independent); the ZeroMQ mesh
refuses a number already used or far ahead of the ones in use (net.mailbox).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np

from net.errors import ProtocolError
from net.stats import CommStats

Expect = tuple  # (dtype, shape); either may be None to accept any


class Transport(ABC):
    my_id: int
    peer_ids: tuple[int, ...]
    timeout: float
    stats: CommStats

    @abstractmethod
    def send(self, to: int, seq: int, op: str, array: np.ndarray) -> None:
        """Queue `array` for peer `to`; returns without waiting for delivery. The
        transport may read `array` after returning: do not modify it once sent."""

    @abstractmethod
    def _wait(self, frm: int, seq: int) -> tuple[str, np.ndarray]:
        """Block until message (frm, seq) is here; return (op, array). Raises PeerTimeout
        or PeerLost naming `frm`."""

    def recv(self, frm: int, seq: int, op: str, dtype=None, shape=None, *,
             is_round: bool = True) -> np.ndarray:
        """Wait for message `seq` from `frm` and check it is the expected op/dtype/shape.
        `is_round=False` keeps a wait out of the round count (for traffic that overlaps
        the protocol, such as prefetched randomness)."""
        if is_round:
            self.stats.round()
        return self._take(frm, seq, op, dtype, shape)

    def exchange(self, seq: int, op: str, outgoing: Mapping[int, np.ndarray],
                 expected: Mapping[int, Expect]) -> dict[int, np.ndarray]:
        """One round: send every outgoing array, then wait for every expected one."""
        for to, array in outgoing.items():
            self.send(to, seq, op, array)
        self.stats.round()
        return {frm: self._take(frm, seq, op, *exp) for frm, exp in expected.items()}

    def _take(self, frm, seq, op, dtype, shape) -> np.ndarray:
        got_op, array = self._wait(frm, seq)
        check_expected(self.my_id, frm, seq, (op, dtype, shape), (got_op, array))
        return array

    def close(self) -> None:
        """Release sockets and threads; idempotent."""


def check_expected(me: int, frm: int, seq: int, expected, got) -> None:
    """Raise ProtocolError if message `seq` from `frm` is not what party `me` expects."""
    op, dtype, shape = expected
    got_op, array = got
    bad = (got_op != op
           or (dtype is not None and array.dtype != np.dtype(dtype))
           or (shape is not None and tuple(array.shape) != tuple(shape)))
    if bad:
        want = f"'{op}' {np.dtype(dtype) if dtype is not None else 'any'}" \
               f"{tuple(shape) if shape is not None else '(any)'}"
        raise ProtocolError(
            f"message {seq} from party {frm} to party {me}: party {me} expected {want}, "
            f"party {frm} sent '{got_op}' {array.dtype}{tuple(array.shape)}")
