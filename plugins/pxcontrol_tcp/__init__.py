"""The `tcp` module type: a kept-up connection to a device; send text or hex, check the reply."""

from __future__ import annotations

import asyncio
from typing import Annotated

from pydantic import Field

from pxcontrol import Module, action, hookimpl
from pxcontrol.connection import TcpConnection
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
        self._received = bytearray()
        self._arrived = asyncio.Event()
        self._lock = asyncio.Lock()
        self.link = TcpConnection(
            self,
            self.settings.host,
            self.settings.port,
            timeout=self.settings.timeout,
            on_data=self._got,
        )
        self.link.start()

    async def stop(self) -> None:
        self.link.close()

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
            self._received.clear()  # what came before this send does not answer it
            await self.link.send(payload)
            if wanted is None:
                return None
            try:
                async with asyncio.timeout(self.settings.timeout):
                    while wanted not in self._received:
                        self._arrived.clear()
                        await self._arrived.wait()
            except TimeoutError:
                got = bytes(self._received)
                seen = f"; got {from_bytes(got, hex)!r}" if got else "; no reply came"
                raise TimeoutError(
                    f"expected a reply containing {expect!r} within {self.settings.timeout:g} s{seen}"
                ) from None
            return from_bytes(bytes(self._received), hex)

    def _got(self, chunk: bytes) -> None:
        self._received += chunk
        del self._received[:-65536]  # a chatty device must not grow this forever
        self._arrived.set()


@hookimpl
def register_module_types(register):
    register(Tcp)
