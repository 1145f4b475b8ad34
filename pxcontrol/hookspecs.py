"""Every hook a pxcontrol plugin can implement. Keep them few."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pxcontrol.events import Event

hookspec = pluggy.HookspecMarker("pxcontrol")
hookimpl = pluggy.HookimplMarker("pxcontrol")


# --- module types ---


@hookspec
def register_module_types(register: Callable[..., None]) -> None:
    """Register module types: call `register(ModuleClass)` (or `register(cls, name="x")`) once per type."""


# --- events ---


@hookspec
def observe_event(event: Event) -> Awaitable[None] | None:
    """See every event the director raises; may be async (awaited under a time limit, errors logged)."""


# --- agent ---


@hookspec
def agent_performance() -> dict[str, Any] | Awaitable[dict[str, Any]] | None:
    """Return extra performance figures for the agent's heartbeat, e.g. `{"fps": 59.94}`."""


@hookspec
def register_check_kinds(register: Callable[..., None]) -> None:
    """Register check kinds for the agent: call `register(CheckClass)` (or `register(cls, name="x")`) once per kind."""
