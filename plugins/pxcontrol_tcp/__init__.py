"""The `tcp` module type: a kept-up connection to a device; send text or hex, check the reply."""

from __future__ import annotations

import asyncio
from typing import Annotated

from pydantic import Field

from pxcontrol import Module, ModuleStatus, action, hookimpl
from pxcontrol.payload import from_bytes, to_bytes


class Tcp(Module):
    """Keep a TCP connection to a device (reconnecting with backoff) and send it commands."""

    class Settings(Module.Settings):
        host: str = Field("127.0.0.1", description="device address")
        port: Annotated[int, Field(ge=1, le=65535)]
        timeout: Annotated[float, Field(gt=0)] = Field(
            2.0, description="seconds to connect, and to wait for an expected reply"
        )

    async def start(self) -> None:
        self._writer: asyncio.StreamWriter | None = None
        self._received = bytearray()
        self._arrived = asyncio.Condition()
        self._connected = asyncio.Event()
        self._lock = asyncio.Lock()
        self.spawn(self.maintain_connection(self._session))

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()

    @action
    async def send(
        self,
        data: Annotated[str, Field(description="what to send: text, or hex bytes with hex = true")],
        hex: Annotated[bool, Field(description="data and expect are hex bytes")] = False,
        expect: Annotated[
            str | None, Field(description="the reply must contain this, within the timeout")
        ] = None,
    ) -> str | None:
        """Send bytes; with `expect`, wait until the device's reply contains it and return the reply."""
        payload = to_bytes(data, hex)
        wanted = to_bytes(expect, hex) if expect is not None else None
        async with self._lock:
            where = f"{self.settings.host}:{self.settings.port}"
            await self.wait_connected(self._connected, self.settings.timeout, where)
            assert self._writer is not None
            self._received.clear()  # what came before this send does not answer it
            self._writer.write(payload)
            await self._writer.drain()
            if wanted is None:
                return None
            try:
                async with asyncio.timeout(self.settings.timeout), self._arrived:
                    await self._arrived.wait_for(lambda: wanted in self._received)
            except TimeoutError:
                got = bytes(self._received)
                seen = f"; got {from_bytes(got, hex)!r}" if got else "; no reply came"
                raise TimeoutError(
                    f"expected a reply containing {expect!r} within {self.settings.timeout:g} s{seen}"
                ) from None
            return from_bytes(bytes(self._received), hex)

    async def _session(self) -> None:
        async with asyncio.timeout(self.settings.timeout):
            reader, self._writer = await asyncio.open_connection(
                self.settings.host, self.settings.port
            )
        self.set_status(ModuleStatus.OK)
        self._connected.set()
        try:
            while chunk := await reader.read(65536):
                async with self._arrived:
                    self._received += chunk
                    del self._received[:-65536]  # a chatty device must not grow this forever
                    self._arrived.notify_all()
        finally:
            self._connected.clear()
            self._writer.close()
            self._writer = None


@hookimpl
def register_module_types(register):
    register(Tcp)
