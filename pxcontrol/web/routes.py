"""The page's routes: the page itself, its feed, and the buttons' JSON endpoints.

The buttons call the same backup manager methods as OSC and the CLI, with
trigger "web" and the operator's address as `by`; each answers with the
manager's decision.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pxcontrol.backup import Decision
from pxcontrol.web.access import Access, TokenGate
from pxcontrol.web.feed import Feed

if TYPE_CHECKING:
    from pxcontrol.control import ShowControl

STATIC = Path(__file__).parent / "static"
BODY_LIMIT = 16 * 1024  # a button's request is a few dozen bytes


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SwitchRequest(Strict):
    client: str = Field(description="the playout client to take over now")


class MoveRequest(Strict):
    client: str = Field(description="the playout client whose outputs move")
    target: str | None = Field(None, description="where they move; default the client itself")


class AcknowledgeRequest(Strict):
    seq: int | None = Field(
        None, ge=0, description="acknowledge the alarms up to this event; default: all so far"
    )


class AutoRequest(Strict):
    client: str = Field(description="the playout client")
    on: StrictBool = Field(description="automatic backup on or off")


Body = TypeVar("Body", bound=Strict)


class LiveSystemsPage:
    """The Starlette application the director serves."""

    def __init__(self, director: ShowControl, feed: Feed, access: Access) -> None:
        self.director = director
        self.feed = feed
        routes = [
            Route("/", self.page),
            Route("/api/status", self.status),
            Route("/api/history/{client}", self.history),
            Route("/api/alarms/acknowledge", self.acknowledge, methods=["POST"]),
            Route("/api/backup/switch", self.switch, methods=["POST"]),
            Route("/api/backup/move", self.move, methods=["POST"]),
            Route("/api/backup/auto", self.auto, methods=["POST"]),
            WebSocketRoute("/ws", feed.serve),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
        self.app: ASGIApp = TokenGate(_revalidate(Starlette(routes=routes)), access)

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def status(self, request: Request) -> Response:
        """The whole show now, figures read fresh: for scripts (pages get the feed)."""
        status = self.director.status()
        calls = [record.as_dict() for record in self.director.app.last_calls.values()]
        body = {"type": "status", "time": time.time(), "status": status.model_dump(mode="json")}
        text = json.dumps({**body, "calls": calls}, default=str)
        return Response(text, media_type="application/json")

    async def acknowledge(self, request: Request) -> Response:
        """The alarms acknowledged for every operator, as this page's operator asked."""
        body = await _read(request, AcknowledgeRequest)
        if isinstance(body, Response):
            return body
        now = self.director.acknowledge_alarms(body.seq, _by(request))
        return JSONResponse(
            {
                "ok": True,
                "message": f"alarms up to event {now.seq} acknowledged",
                **now.model_dump(),
            }
        )

    async def history(self, request: Request) -> Response:
        """One client's figures of the last ten minutes, oldest first (docs/web.md)."""
        name = request.path_params["client"]
        found = self.director.history.of(name)
        if found is None:
            known = self.director.show.client(name) is not None
            message = (
                f"no figures of {name} yet: the director samples every 2 s"
                if known
                else f"no client is called {name!r}"
            )
            return JSONResponse({"ok": False, "message": message}, status_code=404)
        return JSONResponse({"ok": True, "client": name, **found})

    async def switch(self, request: Request) -> Response:
        body = await _read(request, SwitchRequest)
        if isinstance(body, Response):
            return body
        return _answer(await self._backup.takeover(body.client, "web", by=_by(request)))

    async def move(self, request: Request) -> Response:
        body = await _read(request, MoveRequest)
        if isinstance(body, Response):
            return body
        decision = await self._backup.move_to(body.client, body.target, "web", by=_by(request))
        return _answer(decision)

    async def auto(self, request: Request) -> Response:
        body = await _read(request, AutoRequest)
        if isinstance(body, Response):
            return body
        return _answer(await self._backup.set_auto(body.client, body.on, "web", by=_by(request)))

    @property
    def _backup(self):
        assert self.director.backup is not None
        return self.director.backup


async def _read(request: Request, model: type[Body]) -> Body | Response:
    # JSON only: a form on another site cannot send it without the browser asking first.
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse(
            {"ok": False, "message": "send the request body as application/json"}, 415
        )
    body = await _limited_body(request)
    if body is None:
        return JSONResponse({"ok": False, "message": "the request body is too large"}, 413)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"ok": False, "message": problems}, 422)


async def _limited_body(request: Request) -> bytes | None:
    """The body, read no further than BODY_LIMIT (None beyond it)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(decision: Decision) -> Response:
    body = {"ok": decision.ok, "message": decision.message, "epoch": decision.epoch}
    if not decision.ok:  # what to do differs: retry later (backup busy) or fix the disk
        body["reason"] = decision.reason
    return JSONResponse(body, 200 if decision.ok else 409)


def _by(request: Request) -> str:
    return request.client.host if request.client else ""


def _revalidate(app: ASGIApp) -> ASGIApp:
    """Browsers check every file with the director before using a cached copy, so a page
    never runs yesterday's script against today's director."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"cache-control"]
                message = {**message, "headers": [*headers, (b"cache-control", b"no-cache")]}
            await send(message)

        await app(scope, receive, send_with_header if scope["type"] == "http" else send)

    return wrapped
