"""Talking to a running director over its OSC bridge, as the CLI does (and any console could).

Commands go over UDP, as a console sends them. A status answer can be long (one
message per client: 500 at 500 clients), so `status` asks over TCP, where nothing
is lost and the kernel paces the answer; where TCP cannot be reached it asks over
UDP with a receive buffer raised for the answer. Either way the rows are counted
against the end message's count: a short answer is an error, never a short table.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from typing import Any, Literal

from pythonosc.osc_message import OscMessage

from pxcontrol.osc_bridge import PREFIX, build
from pxcontrol.osc_packets import Malformed, message_datagrams, parse_message
from pxcontrol.osc_transport import LengthDecoder, frame, raise_receive_buffer

Protocol = Literal["udp", "tcp"]
STRAGGLERS = 0.2  # seconds to wait after the end message for rows UDP delivered out of order


def _why_not(exc: OSError | TimeoutError) -> str:
    """Say "Connection refused", not asyncio's "Connect call failed ('127.0.0.1', 7400)"."""
    if isinstance(exc, TimeoutError):
        return "no answer"
    return os.strerror(exc.errno) if exc.errno else str(exc)


class NoAnswer(Exception):
    """The director did not answer in time: not running, another port, or not allowed."""


class Refused(Exception):
    """The director answered with an error (locked, wrong passcode …); the message says why."""


class Incomplete(Exception):
    """Fewer status rows arrived than the end message counts (or no end message came)."""

    def __init__(self, rows: list[tuple[Any, ...]], expected: int | None) -> None:
        self.rows, self.expected = rows, expected
        if expected is None:
            said = f"{len(rows)} clients answered and the end of the answer never came"
        else:
            said = f"{len(rows)} of {expected} clients answered"
        super().__init__(f"incomplete: {said}")


@dataclass
class StatusAnswer:
    rows: list[tuple[Any, ...]]  # name, state, plays on, cpu, memory (and what a newer bridge adds)
    total: int | None  # clients in the show (None from a bridge older than pages)
    # loop lag ms, detector tick age ms, state queue, stalls, restarts (None: an older bridge)
    director: tuple[Any, ...] | None = None


class _Inbox:
    """Messages as they arrive, whatever the transport; None when a TCP connection ends,
    an OSError when the system says nothing listens there (UDP's "port unreachable")."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[OscMessage | OSError | None] = asyncio.Queue()

    def packet(self, data: bytes) -> None:
        try:
            for datagram in message_datagrams(data):
                self.messages.put_nowait(parse_message(datagram))
        except Malformed:
            pass


class _UdpInbox(asyncio.DatagramProtocol):
    def __init__(self, inbox: _Inbox) -> None:
        self.inbox = inbox

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.inbox.packet(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):  # e.g. refused: said at once, not after the timeout
            self.inbox.messages.put_nowait(exc)


class _TcpInbox(asyncio.Protocol):
    def __init__(self, inbox: _Inbox) -> None:
        self.inbox = inbox
        self.decoder = LengthDecoder()

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.decoder.feed(data)
        except ValueError:
            packets = []
        for packet in packets:
            self.inbox.packet(packet)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inbox.messages.put_nowait(None)


class DirectorLink:
    """One connection to the director's OSC port (UDP, or TCP with OSC 1.0 length framing).

    `protocol="tcp"` falls back to UDP when no TCP connection can be made;
    `fallback` then says why, and `protocol` says what was used.
    """

    def __init__(
        self, host: str, port: int, timeout: float = 2.0, protocol: Protocol = "udp"
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.protocol: Protocol = protocol
        self.fallback: str | None = None  # why TCP was not used, when it was asked for
        self._inbox = _Inbox()
        self._transport: asyncio.BaseTransport | None = None

    async def __aenter__(self) -> DirectorLink:
        loop = asyncio.get_running_loop()
        if self.protocol == "tcp":
            try:
                async with asyncio.timeout(min(self.timeout, 1.0)):
                    self._transport, _ = await loop.create_connection(
                        lambda: _TcpInbox(self._inbox), self.host, self.port
                    )
                return self
            except (OSError, TimeoutError) as exc:
                reason = _why_not(exc)
                self.fallback = f"TCP to {self.host}:{self.port}: {reason}"
                self.protocol = "udp"
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        raise_receive_buffer(sock)  # room for a long status answer, read as it comes
        try:
            sock.connect((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpInbox(self._inbox), sock=sock
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._transport is not None:
            self._transport.close()

    def send(self, address: str, *args: Any) -> None:
        packet = build(address, *args)
        assert self._transport is not None
        if self.protocol == "udp":
            self._transport.sendto(packet)  # type: ignore[attr-defined]
        else:
            self._transport.write(frame(packet, "length"))  # type: ignore[attr-defined]

    async def receive(self, address: str | None = None, timeout: float | None = None) -> OscMessage:
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                while True:
                    message = await self._inbox.messages.get()
                    if message is None:
                        raise NoAnswer(
                            f"the director at {self.host}:{self.port} closed the connection "
                            "before it answered"
                        )
                    if isinstance(message, OSError):
                        tcp = f"; {self.fallback}" if self.fallback else ""
                        raise NoAnswer(
                            f"nothing listens at {self.host}:{self.port} ({_why_not(message)}"
                            f"{tcp}): is the director running there, and is that its osc_port?"
                        )
                    if address is None or message.address == address:
                        return message
        except TimeoutError:
            raise NoAnswer(
                f"no answer from {self.host}:{self.port} within {self.timeout:g} s: is the "
                "director running there, and is this machine in its director.allow?"
            ) from None

    async def command(self, address: str, *args: Any) -> tuple[bool, str]:
        """Send a command and wait for its `/pxcontrol/reply…`: (ok, message)."""
        self.send(address, *args)
        reply = await self.receive(f"{PREFIX}/reply{address}")
        status, message = [*reply.params, "", ""][:2]
        return status == "ok", str(message)

    async def status(self, client: str | None = None) -> StatusAnswer:
        """Every client's row (or one client's), counted against the end message.

        Raises Incomplete when rows are missing, Refused when the director says no.
        """
        self.send(f"{PREFIX}/status", *(() if client is None else (client,)))
        rows: list[tuple[Any, ...]] = []
        director: tuple[Any, ...] | None = None
        while True:
            try:
                message = await self.receive()
            except NoAnswer:
                if rows:  # it did answer: the rest and the end were lost
                    raise Incomplete(rows, None) from None
                raise
            if message.address == f"{PREFIX}/status/client":
                rows.append(tuple(message.params))
            elif message.address == f"{PREFIX}/status/director":
                director = tuple(message.params)
            elif message.address == f"{PREFIX}/status/end":
                end = message.params
                expected = int(end[0]) if end else len(rows)
                await self._stragglers(rows, expected)
                if len(rows) < expected:
                    raise Incomplete(rows, expected)
                return StatusAnswer(rows, int(end[1]) if len(end) > 1 else None, director)
            elif message.address == f"{PREFIX}/reply{PREFIX}/status":  # only ever an error
                raise Refused(str([*message.params, "", ""][1]))

    async def _stragglers(self, rows: list[tuple[Any, ...]], expected: int) -> None:
        """UDP may deliver a row after the end message: wait a moment for those."""
        while len(rows) < expected and self.protocol == "udp":
            try:
                message = await self.receive(f"{PREFIX}/status/client", timeout=STRAGGLERS)
            except NoAnswer:
                return
            rows.append(tuple(message.params))
