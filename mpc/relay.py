"""Child processes' output, one whole line at a time, with each child's name in front.

The launcher gives every child a pipe for its stdout and one for its stderr and copies what
arrives to its own, prefixed (`[party 1] ...`), under one lock: lines from different
children never mix mid-line. On a terminal, text after a carriage return that no newline
ends yet (a progress bar redrawn in place) is shown at once, and erased before any other
line is written; elsewhere only newlines end lines.
"""

from __future__ import annotations

import os
import sys
import threading

_ERASE_LINE = "\r\x1b[2K"


class OutputRelay:
    """Copies child pipes to this process's stdout and stderr. `terminals` names those
    of the two that are terminals (there a redrawn progress bar stays a bar)."""

    def __init__(self, terminals: frozenset[str] = frozenset()):
        self.terminals = terminals
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._bar_on: set[str] = set()  # streams showing an unfinished line (a bar)

    def add(self, name: str, fd: int, stream: str) -> None:
        """Relay file descriptor `fd` (read end of a pipe; closed at its end) to "stdout"
        or "stderr", each line prefixed with `[name] `."""
        thread = threading.Thread(target=self._copy, args=(f"[{name}] ", fd, stream),
                                  name=f"relay {name} {stream}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self, timeout: float = 2.0) -> None:
        """Wait (at most `timeout` s in all) until every pipe reached its end, so that
        children's last lines come before whatever this process prints next."""
        for thread in self._threads:
            thread.join(timeout)

    def _copy(self, prefix: str, fd: int, stream: str) -> None:
        pending = ""
        try:
            while chunk := os.read(fd, 1 << 16):
                pending = self._emit(prefix, stream, pending + chunk.decode("utf-8", "replace"))
        except OSError:
            pass
        finally:
            os.close(fd)
        if pending:
            self._emit(prefix, stream, pending + "\n")

    def _emit(self, prefix: str, stream: str, text: str) -> str:
        """Write the complete lines of `text` (and, on a terminal, a redrawn bar); return
        what is left for later."""
        *lines, rest = text.split("\n")
        bar = None
        if stream in self.terminals and "\r" in rest:
            bar, rest = rest.rsplit("\r", 1)[1], ""
        if not lines and bar is None:
            return rest
        with self._lock:
            for shown in self._bar_on:  # a bar is redrawn at its next update
                _stream(shown).write(_ERASE_LINE)
                _stream(shown).flush()
            self._bar_on.clear()
            target = _stream(stream)
            target.write("".join(prefix + line.rsplit("\r", 1)[-1] + "\n" for line in lines))
            if bar is not None and bar.strip():
                target.write(prefix + bar)
                self._bar_on.add(stream)
            target.flush()
        return rest


def _stream(name: str):
    return sys.stdout if name == "stdout" else sys.stderr
