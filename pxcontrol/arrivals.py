"""UDP datagrams with the time they arrived, read by a thread of their own.

A client is judged by when its heartbeats *arrived*, not by when the director
got round to reading them: a busy event loop (a page's snapshot, an OSC flood)
or a stopped process must never turn healthy clients silent. On Linux the
kernel stamps every datagram as it arrives (SO_TIMESTAMPNS); elsewhere the
reading thread stamps it, which the event loop cannot delay either.
"""

from __future__ import annotations

import logging
import platform
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pxcontrol.live")

MAX_DATAGRAM = 65_535
_GENERIC = {"x86_64", "i686", "aarch64", "armv7l", "riscv64"}
BATCH = 512  # read at most this many before the detector looks at the clock again
#: A kernel stamp further than this from the reading time is not believed (the
#: wall clock jumped between the two): the reading time is used instead.
TRUSTED_DELAY = 30.0

# Python names SO_TIMESTAMPNS on no platform; Linux's generic value (x86, ARM, RISC-V) is 35,
# and the kernel answers SCM_TIMESTAMPNS with the same number. Elsewhere: stamped by the thread.
_SO_TIMESTAMPNS = getattr(
    socket,
    "SO_TIMESTAMPNS",
    35 if sys.platform == "linux" and platform.machine() in _GENERIC else None,
)
_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0

Address = tuple[Any, ...]
Datagram = tuple[bytes, Address, float]  # data, sender, arrival on the monotonic clock


def kernel_stamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp each datagram as it arrives; False where it cannot."""
    if _SO_TIMESTAMPNS is None or not hasattr(sock, "recvmsg"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


class ArrivalReader:
    """Reads a socket in a thread; hands each batch, with arrival times, to `received`.

    `received(batch, now)` runs in the reading thread, after every batch and at
    least every `every()` seconds when nothing arrives (so the detector's clock
    ticks on its own). The socket stays usable for sending from other threads.
    """

    def __init__(
        self,
        sock: socket.socket,
        received: Callable[[list[Datagram], float], None],
        every: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.stamped = kernel_stamps(sock)
        self._received = received
        self._every = every
        self._clock = clock
        self._stop = threading.Event()
        self.last_tick: float | None = None  # the detector's heartbeat, for health
        self.errors = 0
        self.kernel_stamped = 0  # datagrams that came with the kernel's arrival stamp

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """The thread's body: returns when stopped; raises on what it cannot handle."""
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([self.sock], [], [], self._every())
            except (OSError, ValueError):  # closed under us
                if self._stop.is_set():
                    return
                raise
            batch = self._read() if readable else []
            now = self._clock()
            self.last_tick = now
            self._received(batch, now)

    def _read(self) -> list[Datagram]:
        batch: list[Datagram] = []
        for _ in range(BATCH):
            try:
                if self.stamped:
                    data, ancillary, _flags, address = self.sock.recvmsg(MAX_DATAGRAM, _ANCILLARY)
                    arrived = self._arrival(ancillary)
                else:
                    data, address = self.sock.recvfrom(MAX_DATAGRAM)
                    arrived = self._clock()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP "port unreachable" for an earlier send
                self.errors += 1
                log.debug("heartbeat receive: %s", exc)
                continue
            batch.append((data, address, arrived))
        return batch

    def _arrival(self, ancillary: list[tuple[int, int, bytes]]) -> float:
        now = self._clock()
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
                delay = time.time() - (seconds + nanoseconds / 1e9)
                self.kernel_stamped += 1
                if -0.01 <= delay <= TRUSTED_DELAY:  # a hair below 0: clock resolution
                    return now - max(delay, 0.0)
        return now
