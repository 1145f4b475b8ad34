"""Supervised background work: nothing the director or an agent runs may stop silently.

A supervised task (or thread) that raises is logged with its traceback, reported
to the operators through `on_death` (the director raises an alarm), and started
again after a short, growing delay. One that keeps dying — `give_up_after` deaths
within `window` seconds — is past saving in this process: `on_give_up` is called
(the director stops and `pxcontrol run` exits non-zero) so that a service manager
starts a fresh one, which is better than a director that looks alive and judges
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pxcontrol.tasks import cancel_and_wait

log = logging.getLogger("pxcontrol.supervisor")

#: Deaths of one piece of work within WINDOW seconds that end the process.
GIVE_UP_AFTER = 5
WINDOW = 60.0
#: The first restart is almost at once (a one-off fault); then it waits longer each time.
FIRST_DELAY = 0.05
MAX_DELAY = 2.0


@dataclass
class Death:
    """One unexpected end of supervised work, for the operators."""

    name: str
    error: BaseException
    deaths: int  # within the window, this one included
    giving_up: bool

    @property
    def message(self) -> str:
        what = f"{type(self.error).__name__}: {self.error}"
        if self.giving_up:
            return (
                f"{self.name} failed {self.deaths} times within {WINDOW:g} s ({what}): "
                "the director stops so that its service manager starts it afresh"
            )
        return f"{self.name} failed ({what}) and was started again; see the director's log"


@dataclass
class _Record:
    deaths: deque[float] = field(default_factory=deque)


class Supervisor:
    """Owns long-lived work: restarts what dies, gives up loudly on what keeps dying."""

    def __init__(
        self,
        on_death: Callable[[Death], None] = lambda death: None,
        on_give_up: Callable[[Death], None] = lambda death: None,
        clock: Callable[[], float] = time.monotonic,
        give_up_after: int = GIVE_UP_AFTER,
        window: float = WINDOW,
        first_delay: float = FIRST_DELAY,
    ) -> None:
        self._first_delay = first_delay
        self._on_death = on_death
        self._on_give_up = on_give_up
        self._clock = clock
        self._give_up_after = give_up_after
        self._window = window
        self._records: dict[str, _Record] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = False
        self.gave_up: Death | None = None
        self.restarts = 0  # deaths survived, for the director's health

    # --- tasks on the loop ---

    def start(self, name: str, work: Callable[[], Awaitable[Any]]) -> asyncio.Task[None]:
        """Run `work()` until it returns, restarting it whenever it raises."""
        task = asyncio.get_running_loop().create_task(self._keep(name, work), name=name)
        self._tasks[name] = task
        return task

    async def _keep(self, name: str, work: Callable[[], Awaitable[Any]]) -> None:
        delay = self._first_delay
        while True:
            try:
                await work()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.error("%s failed", name, exc_info=error)
                if not self.died(name, error):
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    # --- threads ---

    def start_thread(
        self, name: str, work: Callable[[], None], loop: asyncio.AbstractEventLoop
    ) -> threading.Thread:
        """Run `work()` in a daemon thread of its own, restarting it whenever it raises.

        The death is reported on `loop` (the operators' side lives there)."""

        def keep() -> None:
            delay = self._first_delay
            while not self._stopping:
                try:
                    work()
                    return
                except Exception as error:
                    log.error("%s failed", name, exc_info=error)
                    if not self._died_in_thread(name, error, loop):
                        return
                time.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)

        thread = threading.Thread(target=keep, name=name, daemon=True)
        self._threads[name] = thread
        thread.start()
        return thread

    def _died_in_thread(self, name: str, error: Exception, loop: asyncio.AbstractEventLoop) -> bool:
        """Report a thread's death on the loop; True if the thread should start again."""
        outcome: list[bool] = []
        done = threading.Event()

        def report() -> None:
            outcome.append(self.died(name, error))
            done.set()

        try:
            loop.call_soon_threadsafe(report)
        except RuntimeError:  # the loop is closed: the process is ending
            return False
        # The loop may itself be stalled: the thread's own work matters more than waiting.
        done.wait(timeout=1.0)
        return not outcome or outcome[0]

    # --- deaths ---

    def died(self, name: str, error: BaseException) -> bool:
        """Count a death of `name`; True if it should be started again."""
        if self._stopping:
            return False
        record = self._records.setdefault(name, _Record())
        now = self._clock()
        record.deaths.append(now)
        while record.deaths and now - record.deaths[0] > self._window:
            record.deaths.popleft()
        giving_up = len(record.deaths) >= self._give_up_after
        death = Death(name, error, len(record.deaths), giving_up)
        try:
            self._on_death(death)
        except Exception:
            log.exception("reporting the failure of %s failed", name)
        if giving_up:
            log.critical("%s", death.message)
            self.gave_up = death
            self._on_give_up(death)
            return False
        self.restarts += 1
        return True

    async def stop(self) -> None:
        self._stopping = True
        await cancel_and_wait(self._tasks.values())
        self._tasks.clear()
