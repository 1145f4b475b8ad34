"""The director's own health: is its event loop turning, is its detector ticking?

Operators trust a director only if they can see that it is judging: the page,
OSC status and `pxcontrol status` show the event loop's lag, the age of the
detector's last tick and what waits to be written. A loop that was blocked for
longer than `offline_after` is an alarm; while it is blocked, a watchdog thread
says so in the log, since the loop cannot.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("pxcontrol.health")

EVERY = 0.1  # seconds between the loop's ticks
WINDOW = 10.0  # the lag shown is the worst within this
WATCHDOG_AFTER = 1.0  # a loop silent this long is logged from the watchdog thread


class LoopWatch:
    """Measures the loop's lag from a task that asks to wake every EVERY seconds."""

    def __init__(
        self,
        blocked: Callable[[float], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._blocked = blocked  # called on the loop with the length of a long block
        self._clock = clock
        self._lags: deque[tuple[float, float]] = deque()  # (when, lag)
        self.seen = clock()  # the loop last ran then
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    @property
    def lag(self) -> float:
        """The worst lag of the loop within the last WINDOW seconds."""
        return max((lag for _, lag in self._lags), default=0.0)

    async def run(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name="event loop watchdog", daemon=True
            )
            self._watchdog.start()
        while True:
            due = self._clock() + EVERY
            await asyncio.sleep(EVERY)
            now = self._clock()
            self.seen = now
            lag = max(0.0, now - due)
            self._lags.append((now, lag))
            while self._lags and now - self._lags[0][0] > WINDOW:
                self._lags.popleft()
            if lag > WATCHDOG_AFTER / 2:
                self._blocked(lag)

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        """From a thread: the loop itself cannot say it is stuck."""
        said = False
        while not self._stop.wait(WATCHDOG_AFTER / 4):
            silent = self._clock() - self.seen
            if silent > WATCHDOG_AFTER and not said:
                said = True
                log.error(
                    "the director's event loop has not run for %.1f s: decisions, OSC and "
                    "the page wait (heartbeats are still judged)",
                    silent,
                )
            elif silent <= WATCHDOG_AFTER and said:
                said = False
