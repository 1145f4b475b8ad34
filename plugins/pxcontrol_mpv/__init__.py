"""mpv as a media server: a check kind and performance figures over mpv's JSON IPC.

Start the player with its control socket, e.g.
`mpv --input-ipc-server=/tmp/mpv.sock …`, and declare on its client:

    checks = [{ mpv = "/tmp/mpv.sock" }]

The check asks the player for its playback position: no answer within the time
limit (a hung or frozen player), an error, a position that has not moved since the
last probe, or a paused player (unless `paused_ok = true`) is a failure. While a
check watches a player, the agent's heartbeat carries its figures `mpv_time_pos` and
`mpv_dropped_frames`, which `{ figure = "mpv_dropped_frames", max = 100 }` can bound.
Unix sockets only (mpv on Windows uses a named pipe, which this does not open).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from pydantic import Field

from pxcontrol import hookimpl
from pxcontrol.checks import Check, CheckContext, CheckFailed, CheckSettings

FIGURES_TIME_LIMIT = 0.3  # s; the agent gives its performance hooks 0.5 s
_requests = itertools.count(1)
_watched: dict[str, int] = {}  # IPC sockets that checks of this agent watch → how many


class MpvError(Exception):
    pass


async def ask(socket_path: str, *properties: str) -> list[Any]:
    """The values of `properties`, read over mpv's JSON IPC (one connection)."""
    try:
        reader, writer = await asyncio.open_unix_connection(socket_path)
    except OSError as exc:
        raise MpvError(f"cannot connect to {socket_path}: {exc.strerror or exc}") from None
    try:
        ids = {}
        for prop in properties:
            request = next(_requests)
            ids[request] = prop
            line = json.dumps({"command": ["get_property", prop], "request_id": request})
            writer.write(line.encode() + b"\n")
        await writer.drain()
        answers: dict[str, Any] = {}
        while len(answers) < len(ids):
            line = await reader.readline()
            if not line:
                raise MpvError(f"{socket_path}: mpv closed the connection")
            message = json.loads(line)
            prop = ids.get(message.get("request_id"))  # mpv also sends events: not ours
            if prop is None:
                continue
            if message.get("error") != "success":
                raise MpvError(f"mpv could not read {prop}: {message.get('error')}")
            answers[prop] = message.get("data")
        return [answers[p] for p in properties]
    finally:
        writer.close()


class MpvCheck(Check):
    """The player answers on its IPC socket and its playback position moves."""

    kind = "mpv"

    class Settings(CheckSettings):
        mpv: str = Field(min_length=1, description="mpv's --input-ipc-server socket path")
        paused_ok: bool = Field(False, description="a paused player counts as healthy")

    def __init__(self, settings: Settings, context: CheckContext) -> None:
        super().__init__(settings, context)
        self.settings: MpvCheck.Settings = settings
        self._last: float | None = None
        self._counted = False

    async def probe(self) -> None:
        if not self._counted:  # counted at the first probe: `check` makes checks it never runs
            _watched[self.settings.mpv] = _watched.get(self.settings.mpv, 0) + 1
            self._counted = True
        try:
            position, paused = await ask(self.settings.mpv, "time-pos", "pause")
        except (MpvError, ValueError) as exc:
            self._last = None
            raise CheckFailed(str(exc)) from None
        last, self._last = self._last, position
        if position is None:  # paused or not, nothing loaded: nothing plays
            raise CheckFailed("mpv plays nothing (no playback position)")
        if paused:
            if self.settings.paused_ok:
                return
            raise CheckFailed(f"mpv is paused at {position:.2f} s")
        if last is not None and position == last:
            raise CheckFailed(f"mpv's playback position is stuck at {position:.2f} s")

    async def close(self) -> None:
        if self._counted:
            left = _watched.get(self.settings.mpv, 1) - 1
            if left > 0:
                _watched[self.settings.mpv] = left
            else:
                _watched.pop(self.settings.mpv, None)


@hookimpl
def register_check_kinds(register):
    register(MpvCheck)


@hookimpl
async def agent_performance() -> dict[str, Any]:
    if not _watched:
        return {}
    socket_path = min(_watched)  # one player per client, as a show has it
    try:
        position, dropped = await asyncio.wait_for(
            ask(socket_path, "time-pos", "frame-drop-count"), FIGURES_TIME_LIMIT
        )
    except (MpvError, ValueError, TimeoutError):
        return {}
    return {"mpv_time_pos": position, "mpv_dropped_frames": dropped}
