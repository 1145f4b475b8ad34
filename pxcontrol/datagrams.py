"""A UDP socket on the running loop, read in batches, written without ever blocking.

asyncio's datagram transport reads one datagram each time the loop wakes up for
the socket: under a burst (a console's fader, hundreds of agents' heartbeats)
that is one epoll_wait and one round of the loop per datagram. Here one wake-up
reads up to BATCH datagrams, then gives the loop back, so timers and the other
sockets still get their turn between batches.

Windows' Proactor loop has no readiness callbacks (`add_reader`): there the socket
is read by a task that awaits one datagram and then takes what else waits without
waiting, the same batch per wake-up.

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
    def __init__(
        self,
        sock: socket.socket,
        received: Callable[[bytes, Address], None],
        completions: bool = False,
    ) -> None:
        """`completions`: read and write by awaiting the loop's socket calls, as on
        Windows' Proactor loop, even where readiness callbacks exist."""
        sock.setblocking(False)
        self.sock = sock
        self._received = received
        self._queue: deque[tuple[bytes, Address]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0  # datagrams not sent: the queue was full
        self.closed = False
        self.completions = completions
        self._reader: asyncio.Task[None] | None = None  # with completions
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self.completions:
            try:
                self._loop.add_reader(self.sock.fileno(), self._readable)
                return
            except NotImplementedError:  # Windows' Proactor loop
                self.completions = True
        self._reader = self._loop.create_task(self._receive(), name="UDP reader")

    async def _receive(self) -> None:
        """The reader where the loop completes reads instead of announcing them."""
        assert self._loop is not None
        while not self.closed:
            try:
                data, address = await self._loop.sock_recvfrom(self.sock, MAX_DATAGRAM)
            except OSError as exc:  # Windows: ICMP "port unreachable" for an earlier send
                if self.closed:
                    return
                log.debug("UDP receive: %s", exc)
                continue
            self._handle(data, address)
            self._readable(BATCH - 1)  # what waits now rides on this wake-up
            await asyncio.sleep(0)  # the loop's turn between batches, as with readiness

    def _handle(self, data: bytes, address: Address) -> None:
        try:
            self._received(data, address)
        except Exception:  # one bad datagram must not stop the others being read
            log.exception("handling a datagram from %s failed", address)

    def _readable(self, batch: int = BATCH) -> None:
        recvfrom = self.sock.recvfrom
        for _ in range(batch):
            if self.closed:  # a handler may close the socket mid-batch
                return
            try:
                data, address = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP "port unreachable" for an earlier send
                log.debug("UDP receive: %s", exc)
                continue
            self._handle(data, address)

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
            self._wait_writable()
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

    def _wait_writable(self) -> None:
        assert self._loop is not None
        if not self.completions:
            self._loop.add_writer(self.sock.fileno(), self._writable)
        elif self._writer is None or self._writer.done():
            self._writer = self._loop.create_task(self._send_queued(), name="UDP writer")

    async def _send_queued(self) -> None:
        """The writer where the loop completes sends: each queued datagram, in order."""
        assert self._loop is not None
        while self._queue and not self.closed:
            data, address = self._queue[0]
            try:
                await self._loop.sock_sendto(self.sock, data, address)
            except OSError as exc:
                log.debug("UDP to %s: %s", address, exc)
            if self._queue:
                self._queue.popleft()

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
        if self._loop is not None and not self._loop.is_closed() and not self.completions:
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()
        self._queue.clear()
        self.sock.close()
