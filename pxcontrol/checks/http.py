"""`{ http = "http://…", expect_status = 200 }`: an HTTP GET answers with that status.

Probed several times a second beside the show, so it must cost next to nothing: one kept
connection (as a media server's own control clients hold one), HTTP/1.1 framed by h11 (the
sans-I/O protocol engine under httpx and uvicorn), no client object per request.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Annotated

import h11
from pydantic import AnyHttpUrl, Field

from pxcontrol.checks.kind import Check, CheckContext, CheckFailed, CheckSettings

#: More body than this is read no further: the connection is closed instead of drained.
BODY_LIMIT = 1 << 20
READ_SIZE = 65536


class _Connection:
    """One kept HTTP/1.1 connection to the checked server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = h11.Connection(h11.CLIENT)
        self.used = False  # a request went over it already: the server may have closed it since

    async def get(self, target: str, host: str) -> int:
        """The status of one GET; leaves the connection ready for the next, or raises."""
        request = h11.Request(
            method="GET",
            target=target,
            headers=[("Host", host), ("User-Agent", "pxcontrol-check"), ("Accept", "*/*")],
        )
        self.writer.write(self.protocol.send(request) + self.protocol.send(h11.EndOfMessage()))
        status, body = None, 0
        while True:
            event = self.protocol.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(READ_SIZE)
                if not data and status is None and self.used:
                    raise _Stale  # closed while idle (a keep-alive timeout): not a failure
                self.protocol.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += len(event.data)
                if body > BODY_LIMIT:
                    raise _Unusable(status)
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("the server closed the connection mid-answer")
        assert status is not None  # h11 gives a Response before the end of the message
        self.used = True
        if self.protocol.our_state is h11.DONE and self.protocol.their_state is h11.DONE:
            self.protocol.start_next_cycle()
        else:
            raise _Unusable(status)  # "Connection: close", HTTP/1.0 …: the next probe connects
        return status

    def close(self) -> None:
        self.writer.close()


class _Stale(Exception):
    """A kept connection the server closed while it was idle."""


class _Unusable(Exception):
    """The answer arrived (with this status) but the connection cannot carry another."""

    def __init__(self, status: int | None) -> None:
        super().__init__(status)
        self.status = status


class HttpCheck(Check):
    kind = "http"

    class Settings(CheckSettings):
        http: AnyHttpUrl = Field(description="the address to GET")
        expect_status: Annotated[int, Field(ge=100, le=599)] = 200

    def __init__(self, settings: Settings, context: CheckContext) -> None:
        super().__init__(settings, context)
        self.settings: HttpCheck.Settings = settings
        url = settings.http
        self._secure = url.scheme == "https"
        self._host = url.host or ""
        self._port = url.port or (443 if self._secure else 80)
        default_port = self._port == (443 if self._secure else 80)
        self._host_header = self._host if default_port else f"{self._host}:{self._port}"
        self._target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._connection: _Connection | None = None

    def describe(self) -> str:
        return f"http {self.settings.http}"

    async def probe(self) -> None:
        try:
            status = await self._status()
        except (OSError, h11.ProtocolError, ssl.SSLError) as exc:
            raise CheckFailed(f"{self.settings.http}: {_why(exc)}") from None
        if status != self.settings.expect_status:
            raise CheckFailed(
                f"{self.settings.http} answered {status}, expected {self.settings.expect_status}"
            )

    async def _status(self) -> int:
        for attempt in (1, 2):
            connection = self._connection or await self._connect()
            self._connection = None  # given back below only when it can carry the next GET
            try:
                status = await connection.get(self._target, self._host_header)
            except _Stale:
                connection.close()
                if attempt == 1:
                    continue  # once, on a fresh connection: a server's idle timeout is no failure
                raise ConnectionResetError("the server closed the connection") from None
            except _Unusable as unusable:
                connection.close()
                if unusable.status is None:
                    raise h11.RemoteProtocolError("answer too long") from None
                return unusable.status
            except BaseException:  # failed or cut off mid-answer: never reused
                connection.close()
                raise
            self._connection = connection
            return status
        raise AssertionError("unreachable")

    async def _connect(self) -> _Connection:
        context = ssl.create_default_context() if self._secure else None
        reader, writer = await asyncio.open_connection(
            self._host, self._port, ssl=context, limit=READ_SIZE
        )
        return _Connection(reader, writer)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
