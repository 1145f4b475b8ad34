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

from watchfiles import Change, awatch

log = logging.getLogger("pxcontrol.reload")

#: watchfiles waits this long for more changes before it reports a batch (ms).
STEP_MS = 10
#: …but never longer than this in all, however busy the folder (ms).
DEBOUNCE_MS = 200
#: A refused edit is reported only if nothing else changes within this (s).
GRACE = 0.15


class ShowWatcher:
    """Calls `reload()` after every change to show.toml or a modules/*.py file."""

    def __init__(
        self,
        show_file: Path,
        reload: Callable[[], Awaitable[bool]],
        report_error: Callable[[], None],
    ) -> None:
        self.show_file = show_file.resolve()
        self.modules = self.show_file.parent / "modules"
        self._reload = reload
        self._report_error = report_error
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending_error: asyncio.TimerHandle | None = None
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
        folder = self.show_file.parent
        try:
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
                if not _:
                    continue
                if self._pending_error is not None:
                    self._pending_error.cancel()  # a newer edit: the old error is moot
                    self._pending_error = None
                if not await self._reload_safely():
                    loop = asyncio.get_running_loop()
                    self._pending_error = loop.call_later(GRACE, self._report_error)
        except Exception:
            log.exception("watching %s stopped; edits are no longer picked up", folder)

    async def _reload_safely(self) -> bool:
        """One reload; whatever it raises is logged and the watch goes on for the next save."""
        try:
            return await self._reload()
        except Exception:
            log.exception("reloading %s failed; the show runs as before", self.show_file)
            return False
