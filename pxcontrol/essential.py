"""The essential plugin: the `Show` module every show has without declaring it."""

from __future__ import annotations

import asyncio
from typing import Annotated

from pydantic import Field

from pxcontrol.actions import action
from pxcontrol.hookspecs import hookimpl
from pxcontrol.module import Module


class Show(Module):
    """Built into every show as `Show`: actions that belong to no device."""

    type_name = "show"

    @action(timeout=24 * 3600)  # a Wait is as long as it says, not the default limit
    async def wait(
        self,
        seconds: Annotated[float, Field(ge=0, le=24 * 3600, description="how long to wait")],
    ) -> None:
        """Wait before the next action of a mapping (in order), e.g. for a projector shutter."""
        await asyncio.sleep(seconds)


@hookimpl
def register_module_types(register):
    register(Show)
