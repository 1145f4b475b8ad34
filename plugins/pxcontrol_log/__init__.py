"""The `log` module type: write an entry to the director's log and its event log."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from pydantic import Field

from pxcontrol import Module, action, hookimpl

LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class Log(Module):
    """Write entries to the director's log and event log."""

    class Settings(Module.Settings):
        prefix: str = Field("", description="put before every entry, e.g. the show's name")

    @action
    async def entry(
        self,
        message: Annotated[str, Field(description="the text of the entry")] = "",
        level: Annotated[
            Literal["info", "warning", "error"], Field(description="severity")
        ] = "info",
    ) -> str:
        """Write one entry."""
        text = f"{self.settings.prefix}{message}"
        self.log.log(LEVELS[level], "%s", text)
        self.emit("log.entry", message=text, level=level)
        return text


@hookimpl
def register_module_types(register):
    register(Log)
