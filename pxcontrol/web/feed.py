"""The page's live feed over a websocket: never polled, always pushed, and paid for by change.

On connect a page gets the whole show once (`status`) and the recent event log
(`log`). After that it gets only `update` messages: the client rows that
changed, the new events, the figures that moved, the modules, action results
and epoch when they changed. Updates are paced (at most one per PACE per page)
and coalesced: a row that changed three times in between is sent once, as it
is now. A row is encoded to JSON once per change (by the status board) and the
same text goes to every page.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from pxcontrol.events import Event
from pxcontrol.tasks import cancel_and_wait

if TYPE_CHECKING:
    from pxcontrol.control import ShowControl

log = logging.getLogger("pxcontrol.web")

PACE = 0.1  # seconds: at most one update per page this often
PERFORMANCE_EVERY = 0.5  # seconds: agents measure at this rate too
SWEEP = 50  # rows revisited per performance tick, in case a change raised no event
BACKLOG = 300  # events a page gets on connect
BEHIND = 1000  # events waiting for one page: past this it gets the whole state again
DETECTOR_LATE_MS = 500  # a detector that has not ticked for this long is shown as stopped
SERVICE_RESTART = 1012  # close code: the director stops; the page reconnects
NEW_SHOW = ("show.reloaded", "show.loaded")  # rows may have come or gone: send everything
MODULE_KINDS = ("module.status", *NEW_SHOW)


class Subscriber:
    """One open page: what it has not been sent yet."""

    def __init__(self) -> None:
        self.rows: set[str] = set()
        self.events: list[str] = []
        self.figures: dict[str, dict] = {}
        self.parts: dict[str, str] = {}  # "modules", "calls", "epoch": encoded, newest only
        self.full_due = False
        self.closing: tuple[int, str] | None = None
        self.wake = asyncio.Event()

    def pending(self) -> bool:
        return bool(self.rows or self.events or self.figures or self.parts or self.full_due)

    def close(self, code: int, reason: str) -> None:
        self.closing = (code, reason)
        self.wake.set()


class Feed:
    def __init__(self, director: ShowControl) -> None:
        self.director = director
        self.board = director.board
        self.subscribers: set[Subscriber] = set()
        self.recent: collections.deque[str] = collections.deque(maxlen=BACKLOG)
        self._unlisten: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self._flush_at: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._modules_due = True
        self._sent: dict[str, str] = {}  # the last modules/calls/epoch text pages were sent
        self._last_call: object = None

    def start(self) -> None:
        self.recent.extend(_dumps(e.as_dict()) for e in list(self.director.app.events)[-BACKLOG:])
        self._unlisten = self.director.app.events.listen(self._on_event)
        self.board.on_stale = self._schedule
        self._ticker = self.director.supervisor.start("web page feed", self._tick)

    async def stop(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        self.board.on_stale = None
        if self._flush_at is not None:
            self._flush_at.cancel()
        if self._ticker is not None:
            await cancel_and_wait([self._ticker])
        for subscriber in self.subscribers:
            subscriber.close(SERVICE_RESTART, "the director is stopping")

    # --- what a page is sent ---

    def full_state(self) -> str:
        """The whole show as pages see it: kept rows, figures as last pushed."""
        board = self.board
        self._flush()  # pages already open get what changed up to now; this one gets it all
        names = board.names()
        self._last_call = self._newest_call()
        parts = self._parts()
        self._sent.update(parts)
        moved = board.figures_moved()  # the new baseline: pages already open hear of it too
        for subscriber in self.subscribers:
            subscriber.figures.update(moved)
        figures = board.figures_now()
        rows = ", ".join(board.encoded[n] for n in names)
        return (
            f'{{"type": "status", "time": {time.time()!r}, "status": {{"file": '
            f'{json.dumps(str(self.director.loaded.path))}, "epoch": {parts["epoch"]}, '
            f'"clients": [{rows}], "modules": {parts["modules"]}}}, "calls": {parts["calls"]}, '
            f'"figures": {_dumps(figures)}, "director": {self._health()}, '
            f'"acknowledged": {self.director.acknowledgements.now.model_dump_json()}}}'
        )

    def _health(self) -> str:
        """The director's own health as the page shows it: rounded, so that it is pushed
        when it changes for a person, not at every tick of the detector."""
        health = self.director.health()
        age = health.detector_tick_age_ms
        text = _dumps(
            {
                "loop_lag_ms": round(health.loop_lag_ms),
                "detector_ticking": age is not None and age < DETECTOR_LATE_MS,
                "detector_tick_age_s": None if age is None else round(age / 1000, 1),
                "state_queue": health.state_queue,
                "events_shed": health.events_shed,
                "stalls": health.stalls,
                "restarts": health.restarts,
                "output_lost": health.output_lost,
                "role": health.role,
                "name": health.name,
                "in_charge": health.in_charge,
                "in_charge_address": health.in_charge_address,
                "term": health.term,
                "others": health.others,
            }
        )
        return text

    def backlog(self) -> str:
        return f'{{"type": "log", "events": [{", ".join(self.recent)}]}}'

    def update(self, subscriber: Subscriber) -> str:
        """What `subscriber` has not been sent yet, in one message; clears it."""
        encoded = self.board.encoded
        rows = [encoded[n] for n in subscriber.rows if n in encoded]
        parts = [f'"type": "update", "time": {time.time()!r}']
        if rows:
            parts.append(f'"clients": [{", ".join(rows)}]')
        if subscriber.events:
            parts.append(f'"events": [{", ".join(subscriber.events)}]')
        if subscriber.figures:
            parts.append(f'"figures": {_dumps(subscriber.figures)}')
        parts.extend(f'"{key}": {text}' for key, text in subscriber.parts.items())
        subscriber.rows, subscriber.events, subscriber.figures, subscriber.parts = (
            set(), [], {}, {}
        )  # fmt: skip
        return "{" + ", ".join(parts) + "}"

    def _parts(self) -> dict[str, str]:
        calls = [record.as_dict() for record in self.director.app.last_calls.values()]
        modules = [m.model_dump(mode="json") for m in self.board.modules()]
        return {"modules": _dumps(modules), "calls": _dumps(calls), "epoch": str(self.board.epoch)}

    def _newest_call(self) -> object:
        calls = self.director.app.calls
        return calls[-1] if calls else None

    # --- pushing ---

    def _on_event(self, event: Event) -> None:
        message = _dumps(event.as_dict())
        self.recent.append(message)
        if event.kind in MODULE_KINDS:
            self._modules_due = True
        for subscriber in self.subscribers:
            if event.kind in NEW_SHOW:
                subscriber.full_due = True
            subscriber.events.append(message)
            if len(subscriber.events) > BEHIND:
                subscriber.events.clear()  # it gets the log again with the whole state
                subscriber.full_due = True
        self._schedule()

    def _schedule(self) -> None:
        """Flush soon: now if the last flush was PACE ago, else when it will have been."""
        if self._flush_at is not None or not self.subscribers:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_flush + PACE - loop.time())
        self._flush_at = loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        """Recompute the stale rows and hand every page what changed."""
        if self._flush_at is not None:
            self._flush_at.cancel()
        self._flush_at = None
        self._last_flush = asyncio.get_running_loop().time()
        if not self.subscribers:
            return
        changed = self.board.take_changed()
        parts: dict[str, str] = {}
        newest = self._newest_call()
        if newest is not self._last_call or self._modules_due:
            self._last_call = newest
            self._modules_due = False
            parts = {k: v for k, v in self._parts().items() if self._sent.get(k) != v}
        elif str(self.board.epoch) != self._sent.get("epoch"):
            parts = {"epoch": str(self.board.epoch)}
        self._sent.update(parts)
        for subscriber in self.subscribers:
            subscriber.rows.update(changed)
            subscriber.parts.update(parts)
            if subscriber.pending():
                subscriber.wake.set()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(PERFORMANCE_EVERY)
            if not self.subscribers:
                continue
            moved = self.board.figures_moved()
            before = self._sent.get("director")
            health = self._sent["director"] = self._health()
            for subscriber in self.subscribers:
                subscriber.figures.update(moved)
                if health != before:
                    subscriber.parts["director"] = health
                # Something at least every PERFORMANCE_EVERY: a page that hears nothing
                # for longer knows the director itself is stopped (docs/web.md).
                subscriber.parts["alive"] = "1"
            self.board.sweep(SWEEP)
            self._schedule()

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
            error = sending.exception()
            if isinstance(error, WebSocketDisconnect | OSError):
                log.debug("a page's feed ended: %s", error)  # the page went away
            else:  # our own fault: the page reconnects into it again, so say so
                log.warning("a page's feed failed; the page reconnects", exc_info=error)

    async def _send(self, websocket: WebSocket, subscriber: Subscriber) -> None:
        subscriber.full_due = True
        loop = asyncio.get_running_loop()
        while True:
            if subscriber.closing is not None:
                with contextlib.suppress(Exception):  # the page may be gone already
                    await websocket.close(*subscriber.closing)
                return
            sent_at = loop.time()
            if subscriber.full_due:
                # Taken in one go: nothing that happens from here on is lost or sent twice.
                subscriber.full_due = False
                full = self.full_state()  # also hands this page what changed so far: drop it
                subscriber.rows, subscriber.events, subscriber.figures, subscriber.parts = (
                    set(), [], {}, {}
                )  # fmt: skip
                backlog = self.backlog()
                await websocket.send_text(full)
                await websocket.send_text(backlog)
            elif subscriber.pending():
                await websocket.send_text(self.update(subscriber))
            await asyncio.sleep(max(0.0, sent_at + PACE - loop.time()))
            if not subscriber.pending() and subscriber.closing is None:
                subscriber.wake.clear()
                await subscriber.wake.wait()


async def _hear(websocket: WebSocket) -> None:
    """Read until the page goes away; the page sends nothing the director acts on."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def _dumps(message: Any) -> str:
    return json.dumps(message, default=str)
