"""`{ osc = "host:port", address = "/ping", expect = "/pong" }`: an OSC request gets an answer."""

from __future__ import annotations

import asyncio
import socket
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from pxcontrol.checks.kind import (
    Check,
    CheckContext,
    CheckFailed,
    CheckSettings,
    address_text,
    split_address,
)


def _osc_address(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("an OSC address starts with '/', e.g. /ping")
    return value


OscAddress = Annotated[str, AfterValidator(_osc_address)]


class OscCheck(Check):
    kind = "osc"

    class Settings(CheckSettings):
        osc: Annotated[str, AfterValidator(address_text)] = Field(
            description="host:port of the application's OSC input (UDP)"
        )
        address: OscAddress = Field(description="the request's address")
        args: list[int | float | str] = Field([], description="the request's arguments")
        expect: OscAddress = Field(description="the answer's address")

    def __init__(self, settings: Settings, context: CheckContext) -> None:
        super().__init__(settings, context)
        self.settings: OscCheck.Settings = settings
        self._transport: asyncio.DatagramTransport | None = None
        self._waiting: asyncio.Future[None] | None = None

    def describe(self) -> str:
        return f"osc {self.settings.osc} {self.settings.address}"

    async def probe(self) -> None:
        host, port = split_address(self.settings.osc)
        if self._transport is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Answers(self), family=family, remote_addr=(host, port)
            )
        builder = OscMessageBuilder(self.settings.address)
        for arg in self.settings.args:
            builder.add_arg(arg)
        self._waiting = asyncio.get_running_loop().create_future()
        try:
            self._transport.sendto(builder.build().dgram)
            await self._waiting  # the runner's time limit ends a wait with no answer
        finally:
            self._waiting = None

    def answered(self, data: bytes) -> None:
        try:
            address = OscMessage(data).address
        except Exception:
            return
        if address == self.settings.expect and self._waiting and not self._waiting.done():
            self._waiting.set_result(None)

    def refused(self, exc: Exception) -> None:
        if self._waiting and not self._waiting.done():
            self._waiting.set_exception(CheckFailed(f"{self.settings.osc}: {exc}"))

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _Answers(asyncio.DatagramProtocol):
    def __init__(self, check: OscCheck) -> None:
        self.check = check

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.check.answered(data)

    def error_received(self, exc: Exception) -> None:  # nothing listens: ICMP refused
        self.check.refused(exc)
