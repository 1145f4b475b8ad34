"""A kept-up TCP connection for a module, as Companion's TCPHelper is for its modules.

It connects within a time limit, reports the module's status (connecting, ok,
disconnected, connection_failure) through `Module.maintain_connection`, reconnects with
backoff, hands what arrives to `on_data`, and sends only while connected. A module
starts it in `start()` and sends through it from its actions:

    async def start(self) -> None:
        self.link = TcpConnection(self, self.settings.host, self.settings.port, on_data=self._got)
        self.link.start()

    @action
    async def shutter(self, closed: bool) -> None:
        await self.link.send(b"%1AVMT 31\\r" if closed else b"%1AVMT 30\\r")
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pxcontrol.module import Backoff, Module, ModuleStatus

READ_SIZE = 65536


class TcpConnection:
    def __init__(
        self,
        module: Module,
        host: str,
        port: int,
        *,
        timeout: float = 2.0,
        on_data: Callable[[bytes], None] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.module = module
        self.host, self.port = host, port
        self.timeout = timeout  # to connect, and to send
        self.on_data = on_data
        self.backoff = backoff or Backoff()
        self.connected = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Keep the connection up for as long as the module runs (its spawned work)."""
        self.module.spawn(self.module.maintain_connection(self._session, self.backoff))

    async def send(self, data: bytes) -> None:
        """Send now, waiting up to `timeout` for the connection; ConnectionError says why not."""
        await self.module.wait_connected(self.connected, self.timeout, self.where)
        writer = self._writer
        assert writer is not None
        writer.write(data)
        async with asyncio.timeout(self.timeout):  # a device that stops reading holds nobody
            await writer.drain()

    def close(self) -> None:
        """Close the connection (the module's stop(); its spawned loop is cancelled apart)."""
        if self._writer is not None:
            self._writer.close()

    async def _session(self) -> None:
        async with asyncio.timeout(self.timeout):
            reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self.module.set_status(ModuleStatus.OK)
        self.connected.set()
        try:
            while chunk := await reader.read(READ_SIZE):
                if self.on_data is not None:
                    self.on_data(chunk)
        finally:
            self.connected.clear()
            self._writer.close()
            self._writer = None
