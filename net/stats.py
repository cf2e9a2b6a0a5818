"""Exact communication counters, kept by the transport and broken down by operation."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field


@dataclass
class Counter:
    """Bytes and messages one way or the other, and rounds (blocking waits on the network)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    rounds: int = 0

    def add(self, other: "Counter") -> None:
        self.bytes_sent += other.bytes_sent
        self.bytes_received += other.bytes_received
        self.messages_sent += other.messages_sent
        self.messages_received += other.messages_received
        self.rounds += other.rounds

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CommStats:
    """Totals plus a breakdown by the outermost operation label in force.

    A round is one blocking wait for the network: one `exchange` call, or one `recv`
    outside an exchange. Labels nest; traffic is booked under the outermost one, so a
    user-level operation (say "mul") includes the sub-steps it runs, except inside a label
    opened with `apart=True`, which keeps its own books.
    """

    total: Counter = field(default_factory=Counter)
    by_op: dict[str, Counter] = field(default_factory=dict)
    _labels: list[tuple[str, bool]] = field(default_factory=list)

    @contextlib.contextmanager
    def operation(self, label: str, *, apart: bool = False):
        """Book traffic inside the block under `label`; with `apart`, even when nested in
        another label (for side traffic, such as fetching correlated randomness)."""
        self._labels.append((label, apart))
        try:
            yield
        finally:
            self._labels.pop()

    @property
    def current(self) -> str:
        apart = [label for label, is_apart in self._labels if is_apart]
        if apart:
            return apart[-1]
        return self._labels[0][0] if self._labels else "other"

    def _op(self) -> Counter:
        """The counter of the label in force (called for every message: kept short)."""
        label = self.current
        op = self.by_op.get(label)
        if op is None:
            op = self.by_op[label] = Counter()
        return op

    def sent(self, nbytes: int) -> None:
        op, total = self._op(), self.total
        op.bytes_sent += nbytes
        op.messages_sent += 1
        total.bytes_sent += nbytes
        total.messages_sent += 1

    def received(self, nbytes: int) -> None:
        op, total = self._op(), self.total
        op.bytes_received += nbytes
        op.messages_received += 1
        total.bytes_received += nbytes
        total.messages_received += 1

    def round(self) -> None:
        self._op().rounds += 1
        self.total.rounds += 1

    def snapshot(self, without: tuple[str, ...] = ()) -> Counter:
        """A copy of the totals (less the labels in `without`), to subtract from a later
        snapshot."""
        copy = Counter()
        copy.add(self.total)
        for label in without:
            if label in self.by_op:
                for name, value in self.by_op[label].as_dict().items():
                    setattr(copy, name, getattr(copy, name) - value)
        return copy

    def as_dict(self) -> dict:
        return {"total": self.total.as_dict(),
                "by_op": {k: v.as_dict() for k, v in sorted(self.by_op.items())}}
