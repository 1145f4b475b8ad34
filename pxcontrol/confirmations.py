"""Takeovers announced, then confirmed: the client that plays now says so in its heartbeat.

A takeover (or move) is decided, saved and announced to the agents. Until the
heartbeat of the client that now plays the outputs carries the new epoch, it is
*announced, not yet confirmed* by that client: the status shows it, and past a
bound an `alarm` (`not confirmed`) says so. A later confirmation raises
`backup.confirmed` (with `alarmed = true` when it ends that alarm).

The event of the newest decision is kept here too: a notice repeated to an
agent that missed the original carries it, so the agent raises the same
`backup.activated` / `backup.moved` as the original would have made it raise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pxcontrol.events import TAKEOVER_KINDS


def confirm_within(interval: float) -> float:
    """How long the client that plays now may take to confirm: five heartbeats, at least 1 s."""
    return max(1.0, 5 * interval)


@dataclass
class Unconfirmed:
    playout: str  # whose outputs moved
    plays_on: str  # the client that must confirm: the backup, or the target of a move
    epoch: int
    since: float  # monotonic
    alarmed: bool = False


class Confirmations:
    def __init__(
        self,
        emit: Callable[..., object],
        interval: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.waiting: dict[str, Unconfirmed] = {}  # playout → its newest unconfirmed decision
        self.newest: dict[str, Any] | None = None  # the event of the newest decision
        self._emit = emit
        self._interval = interval
        self._clock = clock
        self._timers: set[asyncio.TimerHandle] = set()

    # --- decisions ---

    def announced(self, epoch: int, event: dict[str, Any] | None) -> None:
        """A decision at `epoch` was announced to the agents."""
        if event is None:
            return
        self.newest = dict(event)
        self._wait(event, epoch)

    def restore(self, events: Iterable[Any], epoch: int) -> None:
        """At start: the saved event log's decision of the current epoch, if it has it,
        is the one to repeat, and is confirmed afresh by the client that plays it."""
        for event in reversed(list(events)):
            if event.kind in TAKEOVER_KINDS and event.fields.get("epoch") == epoch:
                self.announced(epoch, event.fields)
                return

    def event_of(self, epoch: int) -> dict[str, Any] | None:
        """The event that made `epoch`, to repeat with a notice of that epoch, if known."""
        if self.newest is not None and self.newest.get("epoch") == epoch:
            return self.newest
        return None

    def _wait(self, event: dict[str, Any], epoch: int) -> None:
        plays_on = event.get("backup") or event.get("to")
        playout = event.get("client")
        if not isinstance(plays_on, str) or not isinstance(playout, str):
            return
        self.waiting[playout] = Unconfirmed(playout, plays_on, epoch, self._clock())
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a test driving check() itself)

        def fire() -> None:
            self._timers.discard(timer)
            self.check()

        timer = loop.call_later(confirm_within(self._interval()) + 0.01, fire)
        self._timers.add(timer)

    def close(self) -> None:
        """The director stops: no alarm from it after that."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    # --- heartbeats ---

    def heard(self, name: str, epoch: int) -> None:
        """A heartbeat of `name`'s agent, which follows `epoch`, was heard."""
        if not self.waiting:
            return
        for playout, waiting in list(self.waiting.items()):
            if waiting.plays_on == name and epoch >= waiting.epoch:
                del self.waiting[playout]
                self._emit(
                    "backup.confirmed",
                    client=playout,
                    plays_on=name,
                    epoch=waiting.epoch,
                    after=round(self._clock() - waiting.since, 3),
                    alarmed=waiting.alarmed,
                )

    def confirmed(self, playout: str) -> bool:
        """False while the newest decision for `playout` is announced but not confirmed."""
        return playout not in self.waiting

    def check(self) -> None:
        """Alarm, once each, for decisions not confirmed within the bound."""
        bound = confirm_within(self._interval())
        now = self._clock()
        for waiting in self.waiting.values():
            if waiting.alarmed or now - waiting.since < bound:
                continue
            waiting.alarmed = True
            self._emit(
                "alarm",
                client=waiting.playout,
                alarm="not confirmed",
                message=f"{waiting.playout}'s outputs were announced to {waiting.plays_on} "
                f"(epoch {waiting.epoch}) and {waiting.plays_on} has not confirmed within "
                f"{bound:g} s: its agent does not follow. Check {waiting.plays_on}'s machine "
                "and agent, or move the outputs",
            )
