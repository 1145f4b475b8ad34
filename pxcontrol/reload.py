"""Hot reload: watch the show folder; a saved edit is live in milliseconds, a broken one is refused.

The folder is watched, not the file: editors save by writing a temporary file
and renaming it over the old one. A change that does not parse is reported only
if no further change follows within a moment, so an editor that writes in two
steps never shows a spurious error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchfiles import Change

log = logging.getLogger("pxcontrol.reload")

try:
    from watchfiles import awatch
except ImportError as exc:  # a build this system cannot load (a DLL it lacks): no reload
    #: Why saved edits cannot be picked up here ("" where they can).
    CANNOT_WATCH = f"watchfiles cannot be loaded here ({exc})"
else:
    CANNOT_WATCH = ""

#: watchfiles waits this long for more changes before it reports a batch (ms).
STEP_MS = 10
#: …but never longer than this in all, however busy the folder (ms).
DEBOUNCE_MS = 200
#: A refused edit is reported only if nothing else changes within this (s).
GRACE = 0.15
#: A watch that failed is tried again this often (s).
RETRY = 1.0


class ShowWatcher:
    """Calls `reload()` after every change to show.toml or a modules/*.py file."""

    def __init__(
        self,
        show_file: Path,
        reload: Callable[[], Awaitable[bool]],
        report_error: Callable[[], None],
        on_fault: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.show_file = show_file.resolve()
        self._on_fault = on_fault
        self.modules = self.show_file.parent / "modules"
        self._reload = reload
        self._report_error = report_error
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending_error: asyncio.TimerHandle | None = None
        self._failing = False  # the watch failed and has not worked since: said once
        self.ready = asyncio.Event()

    def relevant(self, change: Change, path: str) -> bool:
        p = Path(path)
        if p == self.show_file:
            return True
        return p.parent == self.modules and p.suffix == ".py" and not p.name.startswith((".", "_"))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="show watcher")

    async def stop(self) -> None:
        self._stop.set()
        if self._pending_error is not None:
            self._pending_error.cancel()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    async def _watch(self) -> None:
        """Watch until stopped. A watch that fails (the folder deleted or unmounted, the
        system out of watches) is an alarm, once, and is tried again every second: edits
        are picked up again as soon as it works, and the running show is never touched."""
        folder = self.show_file.parent
        self._failing = False
        while not self._stop.is_set():
            try:
                await self._watch_once(folder)
                return  # stopped
            except Exception as exc:
                log.error("watching %s failed: %s", folder, exc, exc_info=not self._failing)
                if not self._failing:
                    self._failing = True
                    self._on_fault(
                        f"the show watcher cannot watch {folder} ({type(exc).__name__}: {exc}): "
                        "edits are not picked up until it can; the running show goes on. "
                        "Tried again every second"
                    )
            try:
                await asyncio.wait_for(self._stop.wait(), RETRY)
            except TimeoutError:
                pass

    async def _watch_once(self, folder: Path) -> None:
        async for _ in awatch(
            folder,
            watch_filter=self.relevant,
            step=STEP_MS,
            debounce=DEBOUNCE_MS,
            stop_event=self._stop,
            rust_timeout=200,
            yield_on_timeout=True,  # the first (empty) batch says the watch is up
        ):
            self.ready.set()
            if self._failing:  # watching again: a later failure is an alarm of its own
                self._failing = False
                log.warning("watching %s again: edits are picked up", folder)
            if not _:
                continue
            if self._pending_error is not None:
                self._pending_error.cancel()  # a newer edit: the old error is moot
                self._pending_error = None
            if not await self._reload_safely():
                loop = asyncio.get_running_loop()
                self._pending_error = loop.call_later(GRACE, self._report_held_error)

    @property
    def holding_error(self) -> bool:
        """A refused edit waits for GRACE: an editor's second write may still mend it."""
        return self._pending_error is not None

    def _report_held_error(self) -> None:
        self._pending_error = None
        self._report_error()

    async def _reload_safely(self) -> bool:
        """One reload; whatever it raises is logged and the watch goes on for the next save."""
        try:
            return await self._reload()
        except Exception:
            log.exception("reloading %s failed; the show runs as before", self.show_file)
            return False
