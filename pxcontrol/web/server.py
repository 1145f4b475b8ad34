"""uvicorn inside the director's event loop: started with the show, stopped before it."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from pxcontrol.tasks import cancel_and_wait
from pxcontrol.web.access import Access
from pxcontrol.web.feed import Feed
from pxcontrol.web.routes import LiveSystemsPage

if TYPE_CHECKING:
    from pxcontrol.director import Director

log = logging.getLogger("pxcontrol.web")

STOP_TIMEOUT = 2.0  # seconds for open pages to hear "stopping" before they are cut off


class _InTheDirectorsLoop(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # Ctrl-C and SIGTERM belong to the director, which stops the page itself


class WebServer:
    """The Live Systems page on `director.bind`:`director.http_port`."""

    def __init__(self, director: Director) -> None:
        self.director = director
        self.feed = Feed(director)
        self.access = Access(director.show.director.token)
        self.host = ""
        self.port = 0
        self._server: _InTheDirectorsLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen now (an address in use fails here, naming the setting), then serve."""
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
        self.host, self.port = host, sock.getsockname()[1]
        page = LiveSystemsPage(self.director, self.feed, self.access)
        config = uvicorn.Config(
            page.app,
            lifespan="off",
            http="h11",
            ws="websockets-sansio",
            log_config=None,  # the director's logging, untouched
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # `by` is the peer's own address, never a header's claim
            server_header=False,
            timeout_graceful_shutdown=STOP_TIMEOUT,
        )
        self.feed.start()
        self._server = _InTheDirectorsLoop(config)
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[sock]), name="web page"
        )
        while not self._server.started:
            if self._task.done():
                self._task.result()  # its error, if any
                raise RuntimeError("the Live Systems page stopped while starting")
            await asyncio.sleep(0.005)
        log.debug("Live Systems page on %s", self.url)

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
