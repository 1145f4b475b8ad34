"""A small file beside the director's state, rewritten whole whenever what it keeps changes.

Writes run in a thread, one at a time, and the newest text wins: something that changes
often (a console renewing its subscription, a flood of commands) never queues writes,
and the event loop never waits for the disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

log = logging.getLogger("pxcontrol.director")


class KeptFile:
    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what  # for the log: "the OSC subscriptions"
        self._newest: str | None = None  # waiting to be written
        self._writer: asyncio.Task[None] | None = None

    def read(self) -> str | None:
        """The text the last run kept; None when there is none (or it cannot be read)."""
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("%s of the last run not taken back (%s): %s", self.what, self.path, exc)
            return None

    def save(self, text: str) -> None:
        """Write this text soon, after any write under way."""
        self._newest = text
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_newest(), name=f"keeping {self.path.name}"
            )

    async def close(self) -> None:
        """Finish the last write (the director is stopping: what it had is what it keeps)."""
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=2.0)

    async def _write_newest(self) -> None:
        while self._newest is not None:
            text, self._newest = self._newest, None
            try:
                await asyncio.to_thread(_write_whole, self.path, text)
            except OSError as exc:
                log.warning("cannot keep %s in %s: %s", self.what, self.path, exc)
            except Exception:  # never a writer that ends unseen: the next save starts one
                log.exception("keeping %s in %s failed", self.what, self.path)


def _write_whole(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)
