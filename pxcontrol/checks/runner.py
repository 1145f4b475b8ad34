"""The agent's checks: each one probed on its own schedule as a task, judged by rise and fall.

A probe never holds anything up: it runs as a task of its own and is cut off at its
time limit (a failure, "timed out"). The heartbeat only reads `failed`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from pxcontrol.checks.kind import (
    DEFAULT_FALL,
    DEFAULT_INTERVAL,
    DEFAULT_RISE,
    TIMEOUT_CAP,
    Check,
    CheckContext,
    CheckFailed,
    CheckSettings,
)
from pxcontrol.checks.kinds import CheckKinds
from pxcontrol.checks.risefall import Change, RiseFall
from pxcontrol.heartbeat import FailedCheck
from pxcontrol.tasks import cancel_and_wait

log = logging.getLogger("pxcontrol.checks")

OnChange = Callable[[str, Change, str], None]


@dataclass
class Running:
    """One check as the agent runs it."""

    name: str
    check: Check
    interval: float
    timeout: float
    state: RiseFall
    task: asyncio.Task[None] | None = None
    probes: int = 0
    ends: int = 0  # times the watched thing ended for certain (a process exit)


class Checks:
    def __init__(
        self,
        kinds: CheckKinds,
        on_change: OnChange,
        figures: Callable[[], dict[str, Any]] = dict,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kinds = kinds
        self.on_change = on_change
        self.figures = figures
        self.clock = clock
        self.declared: list[dict[str, Any]] = []
        self.running: list[Running] = []
        self._probes: set[asyncio.Task[None]] = set()  # probing now, or cut off and not ended

    @property
    def failed(self) -> FailedCheck | None:
        """The first failed check in the show's order, or None while every check is healthy."""
        for run in self.running:
            if not run.state.healthy:
                return FailedCheck(check=run.name[:200], message=run.state.message[:300])
        return None

    async def update(self, declared: list[dict[str, Any]]) -> None:
        """Run these checks from now on; the same list again changes nothing."""
        if declared == self.declared:
            return
        await self.close()
        for number, declaration in enumerate(declared, 1):
            run = self._make(number, declaration)
            self.running.append(run)
            run.task = asyncio.get_running_loop().create_task(
                self._probe_forever(run), name=f"check {run.name}"
            )
            run.task.add_done_callback(lambda task, run=run: self._stopped(run, task))
        self.declared = declared  # only once every check of it runs
        if self.running:
            log.info("checks: %s", ", ".join(run.name for run in self.running))

    def _make(self, number: int, declaration: dict[str, Any]) -> Running:
        found = self.kinds.kind_of(declaration)
        if len(found) != 1:
            # The director checked the show with its plugins; this agent lacks one of them.
            # Failed, not left out: a show this agent cannot watch is not known to play.
            return self._cannot_run(
                number,
                declaration,
                f"this agent knows no check kind in {sorted(declaration)} (kinds here: "
                f"{', '.join(self.kinds)}): install the plugin that provides it on this client",
            )
        kind = self.kinds.kinds[found[0]]
        try:
            settings = kind.cls.Settings.model_validate(declaration)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(map(str, first["loc"]))
            return self._cannot_run(
                number,
                declaration,
                f"not valid for this agent's {kind.name!r}: {where}: {first['msg']}",
            )
        holder: list[Running] = []
        context = CheckContext(figures=self.figures, ended=lambda m: self._ended(holder[0], m))
        try:
            check = kind.cls(settings, context)
            name = settings.name or check.describe()
        except Exception as exc:  # a plugin's bug: this check fails, the others run
            return self._cannot_run(
                number, declaration, f"{kind.name!r} could not start: {type(exc).__name__}: {exc}"
            )
        interval = settings.interval or DEFAULT_INTERVAL
        timeout = settings.timeout or kind.cls.default_timeout or min(TIMEOUT_CAP, 5 * interval)
        run = Running(
            name=name,
            check=check,
            interval=interval,
            timeout=timeout,
            state=RiseFall(
                settings.fall or DEFAULT_FALL, settings.rise or DEFAULT_RISE, self.clock
            ),
        )
        holder.append(run)
        return run

    def _cannot_run(self, number: int, declaration: dict[str, Any], why: str) -> Running:
        log.error("check %d %s: %s", number, declaration, why)
        name = declaration.get("name")
        check = _CannotRun(why)
        return Running(
            name=name if isinstance(name, str) and name else f"check {number}",
            check=check,
            interval=1.0,
            timeout=1.0,
            state=RiseFall(1, 1, self.clock),
        )

    async def _probe_forever(self, run: Running) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            ends = run.ends
            message = await self._probe(run)
            run.probes += 1
            if run.ends != ends:
                pass  # it ended during this probe: a success it saw is from before the end
            elif message is None:
                self._tell(run, run.state.passed())
            else:
                self._tell(run, run.state.failed(message))
            due += run.interval
            delay = due - loop.time()
            if delay < 0:  # a probe that took its whole time limit: the next one now
                due = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    async def _probe(self, run: Running) -> str | None:
        """None when healthy, else why not. A probe is its own task: cut off, it is only
        cancelled, never waited for, so one that ignores cancellation holds nothing up."""
        probe = asyncio.get_running_loop().create_task(
            run.check.probe(), name=f"probe of {run.name}"
        )
        self._probes.add(probe)
        probe.add_done_callback(self._probes.discard)
        done, _ = await asyncio.wait({probe}, timeout=run.timeout)
        if not done:
            probe.add_done_callback(_quiet)
            # Ended in the background; one that swallows its cancellation is closed after
            # its time limit again (cancel_and_wait): hung probes must not pile up.
            closer = asyncio.get_running_loop().create_task(
                cancel_and_wait([probe], timeout=run.timeout), name=f"ending {probe.get_name()}"
            )
            self._probes.add(closer)
            closer.add_done_callback(self._probes.discard)
            return f"timed out after {run.timeout:g} s"
        try:
            probe.result()
        except CheckFailed as failed:
            return str(failed) or "failed"
        except asyncio.CancelledError:
            return "cancelled"
        except Exception as exc:  # a plugin's bug is a failed probe, never a dead check
            return f"{type(exc).__name__}: {exc}"
        return None

    def _stopped(self, run: Running, task: asyncio.Task[None]) -> None:
        """A check's loop that ends on its own is a bug: say so, and fail the check rather
        than leave it healthy for ever."""
        if task.cancelled() or run not in self.running:
            return
        error = task.exception()
        log.error("check %s stopped", run.name, exc_info=error)
        self._tell(run, run.state.failed_now(f"the check stopped: {error!r}"))

    def _ended(self, run: Running, message: str) -> None:
        run.ends += 1
        self._tell(run, run.state.failed_now(message))

    def _tell(self, run: Running, change: Change | None) -> None:
        if change is None:
            return
        if change == "failed":
            log.warning("check %s failed: %s", run.name, run.state.message)
        else:
            log.warning("check %s recovered", run.name)
        try:
            self.on_change(run.name, change, run.state.message)
        except Exception:
            log.exception("telling that check %s %s failed", run.name, change)

    async def close(self) -> None:
        running, self.running, self.declared = self.running, [], []
        await cancel_and_wait([run.task for run in running if run.task is not None])
        await cancel_and_wait(list(self._probes), timeout=0.2)
        for run in running:
            try:
                await asyncio.wait_for(run.check.close(), 1.0)
            except Exception:
                log.exception("check %s did not close cleanly", run.name)


class _CannotRun(Check):
    """A declared check this agent cannot run: it fails, saying why."""

    def __init__(self, why: str) -> None:
        super().__init__(CheckSettings(), CheckContext())
        self.why = why

    async def probe(self) -> None:
        raise CheckFailed(self.why)


def _quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a probe cut off may still end in an error
