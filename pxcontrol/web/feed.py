"""The page's live feed over a websocket: never polled, always pushed.

On connect a page gets the show's status and the recent event log; after
every event, the event and a fresh status; between events, the clients'
performance figures a few times a second. A page that falls behind is closed
(and reconnects for a fresh status) rather than buffered without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from pxcontrol.events import Event
from pxcontrol.tasks import cancel_and_wait

if TYPE_CHECKING:
    from pxcontrol.director import Director

log = logging.getLogger("pxcontrol.web")

PERFORMANCE_EVERY = 0.5  # seconds: agents measure at this rate too
BACKLOG = 300  # events a page gets on connect
BEHIND = 1000  # messages a page may have waiting before it is closed to catch up
SERVICE_RESTART = 1012  # close code: the director stops; the page reconnects
TRY_AGAIN_LATER = 1013  # close code: the page fell behind; the page reconnects


class _Close:
    def __init__(self, code: int, reason: str) -> None:
        self.code, self.reason = code, reason


class Subscriber:
    """One open page: what is still to send to it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | _Close] = asyncio.Queue()
        self.status_due = False

    def put(self, message: str, status_due: bool = False) -> None:
        if self.queue.qsize() >= BEHIND:
            self.close(TRY_AGAIN_LATER, "the page fell behind")
            return
        self.queue.put_nowait(message)
        self.status_due = self.status_due or status_due

    def close(self, code: int, reason: str) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_Close(code, reason))


class Feed:
    def __init__(self, director: Director) -> None:
        self.director = director
        self.subscribers: set[Subscriber] = set()
        self._unlisten: Any = None
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._unlisten = self.director.app.events.listen(self._on_event)
        self._ticker = asyncio.get_running_loop().create_task(
            self._tick(), name="web performance feed"
        )

    async def stop(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._ticker is not None:
            await cancel_and_wait([self._ticker])
        for subscriber in self.subscribers:
            subscriber.close(SERVICE_RESTART, "the director is stopping")

    # --- what a page is sent ---

    def status(self) -> str:
        status = self.director.status()
        calls = [record.as_dict() for record in self.director.app.last_calls.values()]
        return _dumps(
            {
                "type": "status",
                "time": time.time(),
                "status": status.model_dump(mode="json"),
                "calls": calls,
            }
        )

    def backlog(self) -> str:
        events = list(self.director.app.events)[-BACKLOG:]
        return _dumps({"type": "log", "events": [e.as_dict() for e in events]})

    def performance(self) -> str:
        clients = {
            name: {
                "cpu": seen.cpu,
                "memory": seen.memory,
                "gpu": seen.gpu,
                "extra": seen.extra,
                "heard_at": seen.heard_at,
            }
            for name, seen in self.director.live.clients.items()
        }
        return _dumps({"type": "performance", "time": time.time(), "clients": clients})

    # --- pushing ---

    def _on_event(self, event: Event) -> None:
        if not self.subscribers:
            return
        message = _dumps({"type": "event", "event": event.as_dict()})
        for subscriber in list(self.subscribers):
            subscriber.put(message, status_due=True)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(PERFORMANCE_EVERY)
            if self.subscribers:
                message = self.performance()
                for subscriber in list(self.subscribers):
                    subscriber.put(message)

    async def serve(self, websocket: WebSocket) -> None:
        """Feed one page until it goes away or the director stops."""
        await websocket.accept()
        subscriber = Subscriber()
        self.subscribers.add(subscriber)
        loop = asyncio.get_running_loop()
        sending = loop.create_task(self._send(websocket, subscriber), name="web feed send")
        hearing = loop.create_task(_hear(websocket), name="web feed receive")
        try:
            await asyncio.wait({sending, hearing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.subscribers.discard(subscriber)
            await cancel_and_wait([sending, hearing])
        if sending.done() and not sending.cancelled() and sending.exception() is not None:
            log.debug("a page's feed ended: %s", sending.exception())

    async def _send(self, websocket: WebSocket, subscriber: Subscriber) -> None:
        await websocket.send_text(self.status())
        await websocket.send_text(self.backlog())
        while True:
            message = await subscriber.queue.get()
            if isinstance(message, _Close):
                with contextlib.suppress(Exception):  # the page may be gone already
                    await websocket.close(message.code, message.reason)
                return
            await websocket.send_text(message)
            if subscriber.queue.empty() and subscriber.status_due:
                subscriber.status_due = False  # one status after a burst of events
                await websocket.send_text(self.status())


async def _hear(websocket: WebSocket) -> None:
    """Read until the page goes away; the page sends nothing the director acts on."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, default=str)
