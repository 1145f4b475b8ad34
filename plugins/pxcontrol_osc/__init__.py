"""The `osc` module type: send OSC messages to a console, media server or any OSC receiver."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from pydantic import Field
from pythonosc import slip
from pythonosc.osc_message_builder import OscMessageBuilder

from pxcontrol import Module, ModuleStatus, action, hookimpl

OscValue = int | float | str | bool


class Osc(Module):
    """Send OSC over UDP, or over TCP with OSC 1.1 (SLIP) or 1.0 (length-prefix) framing."""

    class Settings(Module.Settings):
        host: str = Field("127.0.0.1", description="receiver's address")
        port: Annotated[int, Field(ge=1, le=65535)] = Field(8000, description="receiver's port")
        protocol: Literal["udp", "tcp"] = "udp"
        framing: Literal["slip", "length"] = Field(
            "slip",
            description="TCP only: slip (OSC 1.1: osc.js, QLab) or length (OSC 1.0: liblo, Eos's default)",
        )
        timeout: Annotated[float, Field(gt=0)] = Field(2.0, description="seconds to connect")

    _udp: asyncio.DatagramTransport | None = None
    _writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        if self.settings.protocol == "udp":
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(self.settings.host, self.settings.port)
            )
            self.set_status(ModuleStatus.OK)
        else:
            self._connected = asyncio.Event()
            self.spawn(self.maintain_connection(self._tcp_session))

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()

    @action
    async def send(
        self,
        address: Annotated[
            str, Field(pattern="^/", description="OSC address, e.g. /eos/cue/1/fire")
        ],
        args: Annotated[list[OscValue], Field(description="values: int, float, string, bool")] = [],  # noqa: B006
    ) -> None:
        """Send one OSC message."""
        builder = OscMessageBuilder(address)
        for value in args:
            builder.add_arg(value)
        packet = builder.build().dgram
        if self._udp is not None:
            self._udp.sendto(packet)
            return
        where = f"{self.settings.host}:{self.settings.port} over TCP"
        await self.wait_connected(self._connected, self.settings.timeout, where)
        assert self._writer is not None
        if self.settings.framing == "slip":
            self._writer.write(slip.encode(packet))
        else:
            self._writer.write(len(packet).to_bytes(4, "big") + packet)
        await self._writer.drain()

    async def _tcp_session(self) -> None:
        async with asyncio.timeout(self.settings.timeout):
            reader, self._writer = await asyncio.open_connection(
                self.settings.host, self.settings.port
            )
        self.set_status(ModuleStatus.OK)
        self._connected.set()
        try:
            while await reader.read(65536):
                pass  # replies are not needed to send; reading notices a closed connection
        finally:
            self._connected.clear()
            self._writer.close()
            self._writer = None


@hookimpl
def register_module_types(register):
    register(Osc)
