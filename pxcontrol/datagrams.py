"""A UDP socket on the running loop, read in batches, written without ever blocking.

asyncio's datagram transport reads one datagram each time the loop wakes up for
the socket: under a burst (a console's fader, hundreds of agents' heartbeats)
that is one epoll_wait and one round of the loop per datagram. Here one wake-up
reads up to BATCH datagrams, then gives the loop back, so timers and the other
sockets still get their turn between batches.

A datagram the kernel cannot take at once (its send buffer is full) waits in a
bounded queue until the socket is writable; past QUEUE it is dropped and
counted: UDP may lose it anyway, and a peer that stopped reading must not make
the director's memory grow.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pxcontrol")

BATCH = 64
QUEUE = 1024
MAX_DATAGRAM = 65_535

Address = tuple[Any, ...]  # (host, port) or, for IPv6, (host, port, flowinfo, scope)


class DatagramSocket:
    def __init__(self, sock: socket.socket, received: Callable[[bytes, Address], None]) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._received = received
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0  # datagrams not sent: the queue was full
        self.closed = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvfrom, received = self.sock.recvfrom, self._received
        for _ in range(BATCH):
            if self.closed:  # a handler may close the socket mid-batch
                return
            try:
                data, address = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP "port unreachable" for an earlier send
                log.debug("UDP receive: %s", exc)
                continue
            try:
                received(data, address)
            except Exception:  # one bad datagram must not stop the others being read
                log.exception("handling a datagram from %s failed", address)

    def sendto(self, data: bytes, address: Address) -> None:
        if self.closed:
            return
        if self._queue:
            self._enqueue(data, address)
            return
        try:
            self.sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            self._enqueue(data, address)
            assert self._loop is not None
            self._loop.add_writer(self.sock.fileno(), self._writable)
        except OSError as exc:  # unreachable, refused: UDP's way of losing a datagram
            log.debug("UDP to %s: %s", address, exc)

    def _enqueue(self, data: bytes, address: Address) -> None:
        if len(self._queue) >= QUEUE:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4 …: said, never flooded
                log.warning(
                    "UDP: %d datagram(s) not sent so far: the kernel's send buffer stayed full "
                    "(last to %s)",
                    self.dropped,
                    address,
                )
            return
        self._queue.append((data, address))

    def _writable(self) -> None:
        while self._queue:
            data, address = self._queue[0]
            try:
                self.sock.sendto(data, address)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("UDP to %s: %s", address, exc)
            self._queue.popleft()
        assert self._loop is not None
        self._loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
        self._queue.clear()
        self.sock.close()
