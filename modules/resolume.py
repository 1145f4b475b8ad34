"""Resolume Arena/Avenue over OSC: a drop-in module, as a show keeps it in its modules/ folder.

Copy this file into your show's `modules/` folder and declare:

    [modules.Resolume]
    type = "resolume"
    host = "10.0.0.30"

It builds on the built-in `osc` module type, so it has its `Send` action too.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pxcontrol import action, hookimpl
from pxcontrol_osc import Osc

Layer = Annotated[int, Field(ge=1, description="layer number as shown in Resolume (1 = bottom)")]


class Resolume(Osc):
    """Resolume Arena/Avenue: launch clips, fade layers, over OSC."""

    class Settings(Osc.Settings):
        port: Annotated[int, Field(ge=1, le=65535)] = Field(
            7000, description="Resolume's OSC input port (Preferences → OSC)"
        )

    @action
    async def clip(
        self,
        layer: Layer,
        clip: Annotated[int, Field(ge=1, description="clip column")],
    ) -> None:
        """Launch a clip."""
        await self.send(f"/composition/layers/{layer}/clips/{clip}/connect", [1])

    @action
    async def opacity(
        self, layer: Layer, value: Annotated[float, Field(ge=0, le=1, description="0 to 1")]
    ) -> None:
        """Set a layer's opacity."""
        await self.send(f"/composition/layers/{layer}/video/opacity", [value])

    @action
    async def clear(self, layer: Layer) -> None:
        """Clear a layer (stop its clip)."""
        await self.send(f"/composition/layers/{layer}/clear", [1])


@hookimpl
def register_module_types(register):
    register(Resolume)
