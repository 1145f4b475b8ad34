"""Time limits for many short jobs on one loop timer, not a timer each.

An action that ends in time costs a dict insert and a delete here, instead of
creating, scheduling and cancelling a TimerHandle. The one timer is armed for
the earliest deadline; when it fires it expires what is due and arms itself for
the next one.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Hashable

log = logging.getLogger("pxcontrol")


class Deadlines:
    def __init__(self) -> None:
        self._due: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = math.inf

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: Hashable, limit: float, expired: Callable[[], None]) -> None:
        """Call `expired()` in `limit` seconds unless `discard(key)` comes first."""
        loop = asyncio.get_running_loop()
        at = loop.time() + limit
        self._due[key] = (at, expired)
        if at < self._armed_for:
            self._arm(loop, at)

    def pending(self) -> list[Hashable]:
        """The jobs not yet discarded or expired, oldest first."""
        return list(self._due)

    def discard(self, key: Hashable) -> None:
        self._due.pop(key, None)  # the timer may still fire: it finds nothing due

    def clear(self) -> None:
        self._due.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_for = None, math.inf

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(at, self._fire, loop)
        self._armed_for = at

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._armed_for = None, math.inf
        now = loop.time()
        due = [key for key, (at, _) in self._due.items() if at <= now]
        for key in due:
            _, expired = self._due.pop(key)
            try:
                expired()
            except Exception:  # one broken callback must not stop the others expiring
                log.exception("a time-limit callback failed")
        if self._due:
            self._arm(loop, min(at for at, _ in self._due.values()))
