"""`{ tcp = "host:port" }`: the port accepts a connection."""

from __future__ import annotations

import asyncio
from typing import Annotated

from pydantic import AfterValidator, Field

from pxcontrol.checks.kind import Check, CheckFailed, CheckSettings, address_text, split_address


class TcpCheck(Check):
    kind = "tcp"

    class Settings(CheckSettings):
        tcp: Annotated[str, AfterValidator(address_text)] = Field(
            description="host:port that must accept a connection"
        )

    async def probe(self) -> None:
        host, port = split_address(self.target)
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            raise CheckFailed(f"{self.target} refused: {exc.strerror or exc}") from None
        writer.close()
