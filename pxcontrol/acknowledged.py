"""Alarms acknowledged once, for every operator, by the director.

An operator who acknowledges the alarms on the page, over OSC or from the command line
acknowledges them for everyone: every page stops showing them, and a page opened
later does not show them again. What is kept is a watermark, the newest event
acknowledged, with who did it and when; every alarm-kind event up to it is
acknowledged. It is written beside the state (`acknowledged.json`) and so survives a
restart, as the event log does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pxcontrol.kept import KeptFile

log = logging.getLogger("pxcontrol.director")

FILE = "acknowledged.json"


class Acknowledged(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int = Field(0, ge=0, description="events up to this one are acknowledged")
    by: str = Field("", description="who acknowledged them: an address, osc …, cli")
    at: float = Field(0.0, description="when (wall-clock time)")


class AlarmAcknowledgements:
    def __init__(self, folder: Path, emit: Callable[..., object]) -> None:
        self.file = KeptFile(folder / FILE, "the acknowledged alarms")
        self.now = Acknowledged()
        self._emit = emit

    def load(self) -> None:
        text = self.file.read()
        if text is None:
            return
        try:
            self.now = Acknowledged.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            log.warning("acknowledged alarms of the last run not taken back: %s", exc)

    def acknowledge(self, seq: int, by: str) -> Acknowledged:
        """Acknowledge every alarm up to event `seq` for everyone; an older `seq` than the
        one acknowledged already changes nothing (two operators pressing at once)."""
        if seq > self.now.seq:
            self.now = Acknowledged(seq=seq, by=by, at=time.time())
            self.file.save(self.now.model_dump_json())
            self._emit("alarm.acknowledged", up_to=seq, by=by)
        return self.now

    async def close(self) -> None:
        await self.file.close()
