"""Text for a terminal or pipe that the event loop hands off and never waits for.

`pxcontrol run` prints every event. A terminal paused with Ctrl-S, or a pipe
that nobody reads, makes write() block once its buffer is full; written from
the event loop, that would stop failure detection and every takeover. Here the
loop only puts the text in a bounded queue; a thread writes it out. Past
`limit` writes waiting, new ones are dropped and counted, and as soon as the
output moves again a line says how many were lost.

The thread writes to the file descriptor itself (os.write), not through
sys.stdout: a thread blocked inside a Python file object holds its lock, and
the interpreter could not flush that file at exit.
"""

from __future__ import annotations

import os
import threading
from collections import deque

LIMIT = 10_000  # writes waiting; an event line is ~200 bytes: ~2 MB at most

#: Every Output made in this process, for the director's health (lines it could not print).
_OPEN: list[Output] = []


def lines_lost() -> int:
    """Writes this process could not print: its output was not read, or is gone."""
    return sum(output.lost for output in _OPEN)


class Output:
    """A file-like object (write/flush) for one file descriptor, written by a thread."""

    def __init__(self, fd: int, limit: int = LIMIT, name: str = "output") -> None:
        self.fd = fd
        self.name = name
        self.limit = limit
        self.dropped = 0  # writes lost since the output last moved (reported, then reset)
        self.lost = 0  # all writes lost, for the record
        self._queue: deque[str] = deque()
        self._ready = threading.Condition()
        self._closing = False
        self._tty = _isatty(fd)
        self.failed: OSError | None = None  # the output is gone (EPIPE): nothing more shows
        _OPEN.append(self)
        self._thread = threading.Thread(target=self._run, name=f"pxcontrol {name}", daemon=True)
        self._thread.start()

    # --- what Rich, logging and print() call ---

    def write(self, text: str) -> int:
        with self._ready:
            if len(self._queue) >= self.limit:
                self.dropped += 1
                self.lost += 1
            else:
                self._queue.append(text)
                self._ready.notify()
        return len(text)

    def flush(self) -> None:
        """Nothing to do here: the thread writes as soon as it can, and never waits for us."""

    def isatty(self) -> bool:
        return self._tty

    def fileno(self) -> int:
        return self.fd

    @property
    def waiting(self) -> int:
        return len(self._queue)

    # --- the writer ---

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closing:
                    self._ready.wait()
                if not self._queue:
                    return  # closing, and all written
                texts = list(self._queue)
                self._queue.clear()
                dropped, self.dropped = self.dropped, 0
            lines = len(texts)
            if dropped:  # dropped after these were queued: the queue was full
                texts.append(f"… {dropped} line(s) not printed: the output was not being read\n")
            if self.failed is not None:  # gone: counted, so the director's health says so
                self.lost += lines
                continue
            try:
                _write_all(self.fd, "".join(texts).encode("utf-8", "replace"))
            except OSError as exc:  # the reader went away (EPIPE): nothing more can be shown
                self.failed = exc
                self.lost += lines

    def close(self, timeout: float = 1.0) -> bool:
        """Write what waits, for at most `timeout` seconds; False if the output did not move."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(timeout)
        if self in _OPEN:
            _OPEN.remove(self)
        return not self._thread.is_alive()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
