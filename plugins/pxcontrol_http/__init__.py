"""The `http` module type: requests to a device's or service's HTTP API."""

from __future__ import annotations

from typing import Annotated, Literal

import httpx
from pydantic import Field, HttpUrl

from pxcontrol import Module, ModuleStatus, action, hookimpl


class Http(Module):
    """Send HTTP requests to one base URL (a media server's REST API, a webhook)."""

    class Settings(Module.Settings):
        base_url: HttpUrl = Field(description="e.g. http://10.0.0.60:8080")
        timeout: Annotated[float, Field(gt=0)] = Field(2.0, description="seconds per request")
        headers: dict[str, str] = Field({}, description="sent with every request")

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=str(self.settings.base_url),
            timeout=self.settings.timeout,
            headers=self.settings.headers,
        )
        self.set_status(ModuleStatus.OK)

    async def stop(self) -> None:
        await self._client.aclose()

    @action
    async def request(
        self,
        path: Annotated[str, Field(description="path under base_url, e.g. /api/cue/3")] = "/",
        method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET",
        body: Annotated[str | None, Field(description="request body, sent as is")] = None,
        content_type: str = "application/json",
        expect_status: Annotated[
            int | None,
            Field(description="the status that counts as success; default any below 400"),
        ] = None,
    ) -> dict:
        """Send one request; fails on an unexpected status, returns status and body."""
        headers = {"content-type": content_type} if body is not None else {}
        try:
            response = await self._client.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.set_status(ModuleStatus.CONNECTION_FAILURE, f"{type(exc).__name__}: {exc}")
            raise ConnectionError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        self.set_status(ModuleStatus.OK)
        wanted = expect_status if expect_status is not None else None
        if (wanted is not None and response.status_code != wanted) or (
            wanted is None and response.status_code >= 400
        ):
            expected = f"expected {wanted}" if wanted is not None else "expected success"
            raise RuntimeError(
                f"{method} {path} answered {response.status_code} ({expected}): "
                f"{response.text[:200]}"
            )
        return {"status": response.status_code, "body": response.text[:2000]}


@hookimpl
def register_module_types(register):
    register(Http)
