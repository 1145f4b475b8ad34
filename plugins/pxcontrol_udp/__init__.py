"""The `udp` module type: send a datagram (text or hex), optionally wait for a reply."""

from __future__ import annotations

import asyncio
from typing import Annotated

from pydantic import Field

from pxcontrol import Module, ModuleStatus, action, hookimpl
from pxcontrol.payload import from_bytes, to_bytes


class _Replies(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # keep the newest replies
        self.queue.put_nowait(data)


class Udp(Module):
    """Send UDP datagrams to a device; check its reply when the show expects one."""

    class Settings(Module.Settings):
        host: str = Field("127.0.0.1", description="device address")
        port: Annotated[int, Field(ge=1, le=65535)]
        timeout: Annotated[float, Field(gt=0)] = Field(
            1.0, description="seconds to wait for a reply"
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, self._replies = await loop.create_datagram_endpoint(
            _Replies, remote_addr=(self.settings.host, self.settings.port)
        )
        self._lock = asyncio.Lock()
        self.set_status(ModuleStatus.OK)

    async def stop(self) -> None:
        self._transport.close()

    @action
    async def send(
        self,
        data: Annotated[str, Field(description="what to send: text, or hex bytes with hex = true")],
        hex: Annotated[bool, Field(description="data and expect are hex bytes")] = False,
        expect: Annotated[
            str | None, Field(description="the reply must contain this, within the timeout")
        ] = None,
    ) -> str | None:
        """Send one datagram; with `expect`, wait for a reply that contains it and return the reply."""
        payload = to_bytes(data, hex)
        wanted = to_bytes(expect, hex) if expect is not None else None
        async with self._lock:
            while not self._replies.queue.empty():
                self._replies.queue.get_nowait()  # an old reply must not confirm this send
            self._transport.sendto(payload)
            if wanted is None:
                return None
            last: bytes | None = None
            try:
                async with asyncio.timeout(self.settings.timeout):
                    while True:
                        reply = await self._replies.queue.get()
                        if wanted in reply:
                            return from_bytes(reply, hex)
                        last = reply
            except TimeoutError:
                got = f"; last reply was {from_bytes(last, hex)!r}" if last else "; no reply came"
                raise TimeoutError(
                    f"expected a reply containing {expect!r} within {self.settings.timeout:g} s{got}"
                ) from None


@hookimpl
def register_module_types(register):
    register(Udp)
