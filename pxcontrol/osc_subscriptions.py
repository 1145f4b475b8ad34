"""OSC subscriptions kept on disk, so that a restarted director pushes to the same consoles.

A console subscribes once and renews before its lease ends; a director that restarts
in between must not leave it without pushes until its next renewal. UDP subscriptions
are written beside the director's state (`subscriptions.json`) with the wall-clock time
their lease ends, whenever they change; a starting director takes back those whose
lease still runs. A TCP subscription lives with its connection and is not kept.

Writes happen in a thread, one at a time, the newest list winning (pxcontrol.kept): a
console that renews every few seconds, or a flood of subscribe commands, never queues
writes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pxcontrol.kept import KeptFile

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
        self.file = KeptFile(folder / FILE, "the OSC subscriptions")

    @property
    def path(self) -> Path:
        return self.file.path

    def load(self) -> list[SavedSubscription]:
        """What the last run kept; nothing (and a warning) when the file is unreadable."""
        text = self.file.read()
        if text is None:
            return []
        try:
            return [SavedSubscription.model_validate(item) for item in json.loads(text)][:KEPT]
        except (ValueError, TypeError, ValidationError) as exc:
            log.warning("OSC subscriptions of the last run not taken back (%s): %s", self.path, exc)
            return []

    def save(self, subscriptions: list[SavedSubscription]) -> None:
        """Write this list soon, after any write under way (never from the event loop)."""
        self.file.save(json.dumps([s.model_dump() for s in subscriptions[-KEPT:]]))

    async def close(self) -> None:
        await self.file.close()
