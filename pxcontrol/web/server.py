"""uvicorn inside the director's event loop: started with the show, stopped before it."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from pxcontrol.budgets import power_of_two
from pxcontrol.tasks import cancel_and_wait
from pxcontrol.web.access import Access
from pxcontrol.web.feed import Feed
from pxcontrol.web.routes import LiveSystemsPage

if TYPE_CHECKING:
    from pxcontrol.control import ShowControl

log = logging.getLogger("pxcontrol.web")

STOP_TIMEOUT = 2.0  # seconds for open pages to hear "stopping" before they are cut off

# Connections are file descriptors, and the director's modules need some too.
WEB_TOTAL = 128  # connections open at once (page loads, API calls, websockets)
WEB_PER_HOST = 32  # from one host: a browser opens about 6, plus the page's websocket
REQUEST_TIMEOUT = 10.0  # seconds: a connection must send a whole request's headers by then
KEEP_ALIVE = 5  # seconds an idle connection is kept between requests (uvicorn's own timer)
MAX_HEADERS = 16 * 1024  # bytes of a request's headers
# asyncio accepts up to `backlog` connections at each wake-up before any is judged:
# uvicorn's 2048 would let a burst hold that many descriptors for a moment.
BACKLOG = 64
TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: 42\r\n\r\ntoo many connections: try again in a moment"
)


class ConnectionGate:
    """Admits a connection while its host and the page are within their bounds; counts the rest."""

    def __init__(self) -> None:
        self.total, self.per_host = WEB_TOTAL, WEB_PER_HOST
        self.request_timeout = REQUEST_TIMEOUT
        self.counts: Counter[str] = Counter()

    def admit(self, host: str, connections: set[Any]) -> bool:
        """`connections` holds every open connection's protocol, this one's included."""
        from_host = sum(1 for c in connections if c.client and c.client[0] == host)
        if len(connections) <= self.total and from_host <= self.per_host:
            return True
        self.counts["refused"] += 1
        count = self.counts["refused"]
        if power_of_two(count):
            log.warning(
                "web connection from %s refused: %d open from that host (at most %d), %d in all "
                "(at most %d); %d refused so far",
                host,
                from_host - 1,
                self.per_host,
                len(connections) - 1,
                self.total,
                count,
            )
        return False

    def timed_out(self, host: str) -> None:
        self.counts["timed_out"] += 1
        count = self.counts["timed_out"]
        level = logging.WARNING if power_of_two(count) else logging.DEBUG
        log.log(
            level,
            "web connection from %s closed: no whole request within %g s (%d closed so far)",
            host,
            self.request_timeout,
            count,
        )


class _BoundedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with the gate at the door and a timer on every request."""

    gate: ClassVar[ConnectionGate]  # set on a subclass made for each server

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._request_timer: asyncio.TimerHandle | None = None
        if not self.gate.admit(self._host, self.connections):
            transport.write(TOO_MANY)
            transport.close()
            return
        self._arm()

    @property
    def _host(self) -> str:
        return self.client[0] if self.client else ""

    def _arm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
        self._request_timer = self.loop.call_later(self.gate.request_timeout, self._overdue)

    def _overdue(self) -> None:
        self._request_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed, or now a websocket: not ours to time
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm()  # a request is being answered: the page's own business
            return
        self.gate.timed_out(self._host)
        self.transport.abort()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request must come whole within the time too

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_request_timer", None) is not None:
            self._request_timer.cancel()  # type: ignore[union-attr]
        super().connection_lost(exc)


class _InTheDirectorsLoop(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # Ctrl-C and SIGTERM belong to the director, which stops the page itself


class WebServer:
    """The Live Systems page on `director.bind`:`director.http_port`."""

    def __init__(self, director: ShowControl) -> None:
        self.director = director
        self.feed = Feed(director)
        self.access = Access(director.show.director.token)
        self.gate = ConnectionGate()
        self.host = ""
        self.port = 0
        self._server: _InTheDirectorsLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None  # bound, not yet served
        self._stopping = False

    async def start(self, host: str, port: int) -> None:
        """Listen now (an address in use fails here, naming the setting), then serve.

        The server runs under the director's supervisor: if it ever stops serving while the
        director runs, that is an alarm and it listens and serves again on the same port.
        """
        sock = self._listen(host, port)
        self.host, self.port = host, sock.getsockname()[1]
        self._socket = sock
        self.feed.start()
        self._task = self.director.supervisor.start("web page", self._serve)
        while self._server is None or not self._server.started:
            if self._task.done():
                self._task.result()  # its error, if any
                raise RuntimeError("the Live Systems page stopped while starting")
            await asyncio.sleep(0.005)
        log.debug("Live Systems page on %s", self.url)

    @staticmethod
    def _listen(host: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart rebinds at once
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno, f"the Live Systems page cannot listen on {host}:{port} "
                f"(director.http_port): {exc.strerror}"
            ) from None  # fmt: skip
        return sock

    async def _serve(self) -> None:
        """Serve until the director stops; stopping before that is a failure to restart."""
        sock, self._socket = self._socket, None
        if sock is None:  # started again: listen afresh on the same address
            sock = self._listen(self.host, self.port)
        page = LiveSystemsPage(self.director, self.feed, self.access)
        config = uvicorn.Config(
            page.app,
            lifespan="off",
            http=type("BoundedH11", (_BoundedH11,), {"gate": self.gate}),
            # The gate bounds connections (and answers 503 past them, logged at powers of
            # two); uvicorn's own limit_concurrency would be a second bound, off by one.
            backlog=BACKLOG,  # the kernel's queue of connections not yet accepted
            timeout_keep_alive=KEEP_ALIVE,
            h11_max_incomplete_event_size=MAX_HEADERS,
            ws="websockets-sansio",
            log_config=None,  # the director's logging, untouched
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # `by` is the peer's own address, never a header's claim
            server_header=False,
            timeout_graceful_shutdown=STOP_TIMEOUT,
        )
        self._server = _InTheDirectorsLoop(config)
        await self._server.serve(sockets=[sock])
        if not self._stopping:
            raise RuntimeError("the Live Systems page stopped serving")

    @property
    def url(self) -> str:
        host = self.host
        if host and ipaddress.ip_address(host).is_unspecified:
            host = socket.gethostname()  # every address of this machine: name one
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    async def stop(self) -> None:
        """Tell open pages the director stops (they reconnect later), then close."""
        self._stopping = True
        await self.feed.stop()
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        done, _ = await asyncio.wait({self._task}, timeout=STOP_TIMEOUT + 1.0)
        if not done:
            self._server.force_exit = True
            await cancel_and_wait([self._task])
        elif not self._task.cancelled() and self._task.exception() is not None:
            log.error("the Live Systems page failed: %s", self._task.exception())
