"""OSC subscriptions kept on disk, so that a restarted director pushes to the same consoles.

A console subscribes once and renews before its lease ends; a director that restarts
in between must not leave it without pushes until its next renewal. UDP subscriptions
are written beside the director's state (`subscriptions.json`) with the wall-clock time
their lease ends, whenever they change; a starting director takes back those whose
lease still runs. A TCP subscription lives with its connection and is not kept.

Writes happen in a thread, one at a time, the newest list winning: a console that
renews every few seconds, or a flood of subscribe commands, never queues writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger("pxcontrol.osc")

FILE = "subscriptions.json"
KEPT = 256  # subscriptions written at most (the newest)


class SavedSubscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = Field(ge=1, le=65535)
    ends: float  # wall-clock time (time.time()) the lease ends
    no_echo: bool = False
    via_port: bool = False


class SubscriptionFile:
    def __init__(self, folder: Path) -> None:
        self.path = folder / FILE
        self._newest: list[SavedSubscription] | None = None  # waiting to be written
        self._writer: asyncio.Task[None] | None = None

    def load(self) -> list[SavedSubscription]:
        """What the last run kept; nothing (and a warning) when the file is unreadable."""
        try:
            raw = json.loads(self.path.read_text())
            return [SavedSubscription.model_validate(item) for item in raw][:KEPT]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, ValidationError) as exc:
            log.warning("OSC subscriptions of the last run not taken back (%s): %s", self.path, exc)
            return []

    def save(self, subscriptions: list[SavedSubscription]) -> None:
        """Write this list soon, after any write under way (never from the event loop)."""
        self._newest = subscriptions[-KEPT:]
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_newest(), name="osc subscriptions file"
            )

    async def close(self) -> None:
        """Finish the last write (the director is stopping: what it had is what it keeps)."""
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=2.0)

    async def _write_newest(self) -> None:
        while self._newest is not None:
            newest, self._newest = self._newest, None
            text = json.dumps([s.model_dump() for s in newest])
            try:
                await asyncio.to_thread(_write_whole, self.path, text)
            except OSError as exc:
                log.warning("cannot keep the OSC subscriptions in %s: %s", self.path, exc)


def _write_whole(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)
