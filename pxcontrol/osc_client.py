"""Talking to a running director over its OSC bridge, as the CLI does (and any console could)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from pythonosc.osc_message import OscMessage

from pxcontrol.osc_bridge import PREFIX, build
from pxcontrol.osc_packets import Malformed, message_datagrams, parse_message


class NoAnswer(Exception):
    """The director did not answer in time: not running, another port, or not allowed."""


class Refused(Exception):
    """The director answered with an error (locked, wrong passcode …); the message says why."""


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.messages: asyncio.Queue[OscMessage] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            for datagram in message_datagrams(data):
                self.messages.put_nowait(parse_message(datagram))
        except Malformed:
            pass


class DirectorLink:
    """One UDP socket to the director's OSC port: commands out, replies in."""

    def __init__(self, host: str, port: int, timeout: float = 2.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._transport: asyncio.DatagramTransport | None = None
        self._inbox: _Inbox | None = None

    async def __aenter__(self) -> DirectorLink:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._transport, self._inbox = await loop.create_datagram_endpoint(
            _Inbox, remote_addr=(self.host, self.port), family=family
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._transport is not None:
            self._transport.close()

    def send(self, address: str, *args: Any) -> None:
        assert self._transport is not None
        self._transport.sendto(build(address, *args))

    async def receive(self, address: str | None = None) -> OscMessage:
        assert self._inbox is not None
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await self._inbox.messages.get()
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

    async def status(self) -> list[tuple[Any, ...]]:
        self.send(f"{PREFIX}/status")
        rows = []
        while True:
            message = await self.receive()
            if message.address == f"{PREFIX}/status/client":
                rows.append(tuple(message.params))
            elif message.address == f"{PREFIX}/status/end":
                return rows
            elif message.address == f"{PREFIX}/reply{PREFIX}/status":  # only ever an error
                raise Refused(str([*message.params, "", ""][1]))
