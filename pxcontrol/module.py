"""The Module base class that every device module type derives from."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from pxcontrol.actions import ActionSpec, collect_actions
from pxcontrol.tasks import cancel_and_wait


class ModuleStatus(enum.StrEnum):
    """Connection health, in Companion's words, so operators see the same thing everywhere."""

    OK = "ok"
    CONNECTING = "connecting"
    DISCONNECTED = "disconnected"
    CONNECTION_FAILURE = "connection_failure"
    BAD_CONFIG = "bad_config"
    UNKNOWN_ERROR = "unknown_error"
    UNKNOWN_WARNING = "unknown_warning"


class ModuleHost(Protocol):
    """What a module may ask of the runtime that runs it."""

    def emit(self, kind: str, fields: dict[str, Any]) -> None: ...
    def status_changed(self, module: Module) -> None: ...


class _DetachedHost:
    """Stands in when a module runs outside a director (tests, `pxcontrol call`)."""

    def emit(self, kind: str, fields: dict[str, Any]) -> None:
        logging.getLogger("pxcontrol.events").info("%s %s", kind, fields)

    def status_changed(self, module: Module) -> None:
        pass


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnect attempts: doubling from `first` up to `maximum`, with jitter."""

    first: float = 0.25
    maximum: float = 10.0
    jitter: float = 0.2
    # A connection that stayed up this long counts as healthy: the next loss
    # starts again from `first` instead of waiting the long delay.
    healthy_after: float = 5.0

    def delays(self) -> Callable[[], float]:
        current = self.first

        def next_delay() -> float:
            nonlocal current
            delay = current * (1 + random.uniform(-self.jitter, self.jitter))
            current = min(current * 2, self.maximum)
            return delay

        return next_delay


class Module:
    """A device module type. Subclass it, nest a `Settings` model, mark actions with @action.

    A module instance is named in the show (`[modules.VideoRouter]`); its actions
    are called as `VideoRouter.Route`. `start()` and `stop()` run with the show.
    """

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")

    #: The name a show uses in `type = "..."`; defaults to the class name in lower case.
    type_name: ClassVar[str | None] = None
    #: Event kinds this module type raises with emit(), and what each means; mappings
    #: may use them in `on` (their events carry `module` and what the module adds).
    events: ClassVar[dict[str, str]] = {}
    actions: ClassVar[dict[str, ActionSpec]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        settings = cls.__dict__.get("Settings")
        if settings is not None and not issubclass(settings, Module.Settings):
            raise TypeError(
                f"{cls.__qualname__}.Settings must derive from Module.Settings "
                "(it forbids unknown keys so a typo in the show is caught)"
            )
        cls.actions = collect_actions(cls)

    def __init__(self, name: str, settings: BaseModel, host: ModuleHost | None = None) -> None:
        self.name = name
        self.settings = settings
        self.host: ModuleHost = host or _DetachedHost()
        self.log = logging.getLogger(f"pxcontrol.module.{name}")
        self.status = ModuleStatus.DISCONNECTED
        self.status_message = ""
        #: Set by the runtime as the module stops: a connection it closes is not lost.
        self.stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle: override what the device needs ---

    async def start(self) -> None:
        """Open connections, start background work. Keep it short: use spawn() for loops."""
        self.set_status(ModuleStatus.OK)

    async def stop(self) -> None:
        """Close what start() opened. Background tasks from spawn() are cancelled for you."""

    # --- helpers for module authors ---

    def set_status(self, status: ModuleStatus, message: str = "") -> None:
        if (status, message) == (self.status, self.status_message):
            return
        self.status, self.status_message = status, message
        self.host.status_changed(self)

    def emit(self, kind: str, **fields: Any) -> None:
        """Raise an event in the director: its event log and hooks, and mappings when the
        kind is one the class declares in `events`."""
        self.host.emit(kind, {"module": self.name, **fields})

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run background work that lives until the module stops."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}: {coro!r}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        """Background work that raised is never a silent end: its traceback is logged and
        the module's status says so (operators see module.status and the page)."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        self.log.error("%s: background work stopped", self.name, exc_info=error)
        self.set_status(
            ModuleStatus.UNKNOWN_ERROR,
            f"background work stopped: {_describe(error)} (its traceback is in the director's log)",
        )

    async def wait_connected(self, connected: asyncio.Event, timeout: float, where: str) -> None:
        """Wait up to `timeout` for the connection; else fail saying where, and why not."""
        try:
            async with asyncio.timeout(timeout):
                await connected.wait()
        except TimeoutError:
            raise ConnectionError(
                f"not connected to {where} ({self.status}: {self.status_message or 'no answer'})"
            ) from None

    async def maintain_connection(
        self, session: Callable[[], Awaitable[None]], backoff: Backoff = Backoff()
    ) -> None:
        """Keep a connection up for as long as the module runs.

        `session()` connects, calls `set_status(OK)` once the device answers, and
        returns or raises when the connection is lost; this loop reports the
        status and tries again after a growing delay. Start it with spawn().
        """
        loop = asyncio.get_running_loop()
        next_delay = backoff.delays()
        failing = False
        while True:
            # While a device stays away, the status stays one connection_failure: an
            # hour of retries must not write an hour of events.
            if not failing:
                self.set_status(ModuleStatus.CONNECTING)
            began = loop.time()
            try:
                await session()
                if self.stopping:  # stop() closed it: the show is stopping, the device is fine
                    return
                self.set_status(ModuleStatus.DISCONNECTED, "connection closed by the device")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping:
                    return
                if self.status is ModuleStatus.OK:  # a connection that worked was lost
                    self.set_status(ModuleStatus.DISCONNECTED, _describe(exc))
                    failing = False
                else:
                    self.set_status(ModuleStatus.CONNECTION_FAILURE, _describe(exc))
                    failing = True
            if loop.time() - began >= backoff.healthy_after:
                next_delay = backoff.delays()
            await asyncio.sleep(next_delay())

    async def stop_tasks(self) -> None:
        """Cancel what spawn() started; the runtime calls this after stop()."""
        await cancel_and_wait(list(self._tasks))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.status}>"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
