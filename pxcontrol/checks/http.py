"""`{ http = "http://…", expect_status = 200 }`: an HTTP GET answers with that status."""

from __future__ import annotations

import logging
from typing import Annotated

import httpx
from pydantic import AnyHttpUrl, Field

from pxcontrol.checks.kind import Check, CheckContext, CheckFailed, CheckSettings

# httpx logs every request at INFO: ten lines a second per check would bury the agent's log.
logging.getLogger("httpx").setLevel(logging.WARNING)


class HttpCheck(Check):
    kind = "http"

    class Settings(CheckSettings):
        http: AnyHttpUrl = Field(description="the address to GET")
        expect_status: Annotated[int, Field(ge=100, le=599)] = 200

    def __init__(self, settings: Settings, context: CheckContext) -> None:
        super().__init__(settings, context)
        self.settings: HttpCheck.Settings = settings
        self._client: httpx.AsyncClient | None = None

    def describe(self) -> str:
        return f"http {self.settings.http}"

    async def probe(self) -> None:
        if self._client is None:  # the runner cuts a probe off; httpx's own limit is a guard
            self._client = httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        try:
            response = await self._client.get(str(self.settings.http))
        except httpx.HTTPError as exc:
            raise CheckFailed(f"{self.settings.http}: {type(exc).__name__}: {exc}") from None
        if response.status_code != self.settings.expect_status:
            raise CheckFailed(
                f"{self.settings.http} answered {response.status_code}, expected "
                f"{self.settings.expect_status}"
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
