"""Failure detection: a pure state machine over heartbeats and a clock the caller supplies.

Suspicion and decision are kept apart (the classic false takeover is "busy, not
dead"): a client is *late* long before it is *offline*, and a client that comes
back must be steady for `online_after` before it counts as online again, so a
flapping link cannot flap the state. Nothing here reads a clock or does I/O:
every method takes `now`, so tests drive it exactly.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol


class ClientState(enum.StrEnum):
    DRY = "dry"  # declared, never heard from
    ONLINE = "online"
    OFFLINE = "offline"
    FAILED = "failed"  # heard, but its latest heartbeat says one of its checks failed


#: States of a client whose agent is heard: its silence is judged the same way in both.
HEARD = frozenset({ClientState.ONLINE, ClientState.FAILED})


class ReportedFailure(Protocol):
    """What an agent reports of a failed check (pxcontrol.heartbeat.FailedCheck)."""

    @property
    def check(self) -> str: ...

    @property
    def message(self) -> str: ...


@dataclass(frozen=True)
class Timing:
    heartbeat_interval: float
    offline_after: float
    online_after: float
    mass_failure_guard: float
    #: Checks reported failed within this of each other failed together. A failed client's
    #: takeover waits this long, so that a crash of many players at once (one cause: a bad
    #: file, a network share, an operator) is seen as one before any of them is taken over.
    #: An agent notices a process exit within 20 ms: this covers that spread and some jitter.
    failed_together: float = 0.025

    @property
    def stall_after(self) -> float:
        """A gap between two checks longer than this means the director itself was stopped
        (a pause, a VM hiccup, SIGSTOP) or its clock jumped: silence it caused is no evidence."""
        return self.offline_after / 2

    @property
    def together(self) -> float:
        """Clients whose last heartbeats arrived within this of each other dropped together:
        one heartbeat interval spreads their phases, half of one more is jitter."""
        return 1.5 * self.heartbeat_interval

    @property
    def late_after(self) -> float:
        """Silence that makes a client suspect: past any healthy jitter, short of offline.

        At the moment the first of several clients that died together goes
        offline, the others have been silent at least offline_after minus one
        heartbeat interval; a healthy client, about one interval. This threshold
        sits between the two, so a mass failure is recognised at once.
        """
        return max(2 * self.heartbeat_interval, self.offline_after - 1.5 * self.heartbeat_interval)


@dataclass
class ClientWatch:
    name: str
    state: ClientState = ClientState.DRY
    last_heard: float | None = None
    steady_since: float | None = None  # start of the current run of heartbeats
    late: bool = False
    seen_online: bool = False  # since the director started: the startup guard
    guarded: bool = False  # went silent in a mass failure: no automatic takeover
    failed: ReportedFailure | None = None  # the check its latest heartbeat says failed
    failed_at: float | None = None  # when it turned FAILED
    seen_healthy: bool = False  # online with every check passing, since the director started
    # Online when the director last stopped, not heard since it started: heard again in
    # time, it is online at once (a director restart is no reason for `online_after`).
    remembered: bool = False


@dataclass(frozen=True)
class Guard:
    """A guard that holds an automatic takeover back: which one (the refusal code of the
    `backup.failed` that follows) and why, for people."""

    code: Literal["startup guard", "mass failure guard"]
    why: str


@dataclass(frozen=True)
class Change:
    """Something the detector decided; the director turns these into events."""

    # "online", "offline", "late", "on_time", "mass_failure", "stalled", "failed",
    # "recovered", "failed_decision"
    kind: str
    client: str  # "" for "stalled": the director itself
    at: float
    # for "offline" and "failed_decision": the guard that holds an automatic takeover back
    # (None: a backup may take over automatically)
    guard: Guard | None = None
    clients: tuple[str, ...] = ()  # for "mass_failure": who dropped together
    # for "mass_failure": how far apart their last heartbeats arrived; for "stalled": the gap
    seconds: float = 0.0
    # for "failed": which check failed and the agent's words; for "mass_failure": True when
    # the clients failed their checks together (heard, not silent)
    check: str = ""
    message: str = ""
    by_checks: bool = False

    @property
    def eligible(self) -> bool:
        """May a backup take over automatically (no guard holds it back)?"""
        return self.guard is None

    @property
    def why_not(self) -> str:
        return "" if self.guard is None else self.guard.why


@dataclass
class Detector:
    timing: Timing
    clients: dict[str, ClientWatch] = field(default_factory=dict)
    last_check: float | None = None  # when check() last ran: a long gap is a stall
    # FAILED clients → when they failed; and those whose takeover is not yet judged
    failing: dict[str, float] = field(default_factory=dict)
    undecided: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_clients(cls, timing: Timing, names: Iterable[str]) -> Detector:
        return cls(timing, {n: ClientWatch(n) for n in names})

    def heard(self, name: str, now: float) -> list[Change]:
        """A valid heartbeat from `name` arrived at `now`."""
        watch = self.clients[name]
        changes: list[Change] = []
        if watch.last_heard is not None and now < watch.last_heard:
            now = watch.last_heard  # stamped before a stall that moved the baseline past it
        gap = None if watch.last_heard is None else now - watch.last_heard
        if watch.steady_since is None or (gap is not None and gap >= self.timing.offline_after):
            watch.steady_since = now  # a silence breaks the run: back to the start
        watch.last_heard = now
        if watch.late:
            watch.late = False
            if watch.state in HEARD:
                changes.append(Change("on_time", name, now))
        if (
            watch.remembered
            and watch.state is ClientState.DRY
            and gap is not None
            and gap < self.timing.offline_after
        ):
            # Its silence counted from the director's start and never reached offline_after:
            # the run of heartbeats it was on before the restart goes on.
            return [*changes, *self._online(watch, now)]
        if watch.state not in HEARD and now - watch.steady_since >= self.timing.online_after:
            changes.extend(self._online(watch, now))
        return changes

    def check(self, now: float) -> list[Change]:
        """Look at every client's silence; call this often (every few milliseconds).

        Read every heartbeat that has arrived before calling it. A gap since the last
        check longer than `stall_after`, or a clock that went backwards, means the
        director was stopped or its clock jumped: every client's silence then counts
        from now, judged by the heartbeats that arrive after the stall.
        """
        changes: list[Change] = []
        previous, self.last_check = self.last_check, now
        if previous is not None and not 0 <= now - previous <= self.timing.stall_after:
            self._rebase(now)
            changes.append(Change("stalled", "", now, seconds=now - previous))
        for watch in self.clients.values():
            if watch.last_heard is None:
                continue
            silence = now - watch.last_heard
            if watch.state not in HEARD:
                if silence >= self.timing.offline_after:
                    watch.steady_since = None  # a returning client starts its run again
                    if watch.state is ClientState.DRY:
                        # Heard, then silent before it was steady: not "never heard" any
                        # more, but offline (under the startup guard: it never was online).
                        changes.extend(self._offline(watch, now))
                continue
            if silence >= self.timing.offline_after:
                changes.extend(self._offline(watch, now))
            elif silence >= self.timing.late_after and not watch.late:
                watch.late = True
                changes.append(Change("late", watch.name, now))
        if self.undecided:
            for name, failed_at in list(self.undecided.items()):
                if now - failed_at >= self.timing.failed_together:
                    changes.extend(self._judge_failure(self.clients[name], now))
        return changes

    def health(self, name: str, failed: ReportedFailure | None, now: float) -> list[Change]:
        """What a heartbeat from `name` said of its checks: `failed` (None: all healthy).

        Call it for every heartbeat, after heard(): it costs a comparison when nothing
        changed. Only a client that is heard (online) turns FAILED; silence wins over
        it, and a client coming back online with a failed check turns FAILED then.
        """
        watch = self.clients[name]
        was, watch.failed = watch.failed, failed
        if (was is None) == (failed is None) or watch.state not in HEARD:
            return []  # no change, or judged when it is online again (_online)
        if failed is not None:
            return self._failed(watch, now)
        watch.state = ClientState.ONLINE
        watch.seen_healthy = True
        watch.guarded = False  # a new failure is judged afresh
        self._not_failing(watch)
        return [Change("recovered", name, now)]

    def due_in(self, now: float) -> float | None:
        """Seconds until a failed client's takeover is to be judged (None: none waits)."""
        if not self.undecided:
            return None
        first = min(self.undecided.values())
        return max(0.0, first + self.timing.failed_together - now)

    def forget(self, name: str) -> None:
        """A client removed from the show."""
        self.clients.pop(name, None)
        self.failing.pop(name, None)
        self.undecided.pop(name, None)

    def _failed(self, watch: ClientWatch, now: float) -> list[Change]:
        assert watch.failed is not None
        watch.state = ClientState.FAILED
        watch.failed_at = now
        self.failing[watch.name] = now
        self.undecided[watch.name] = now
        failed = watch.failed
        return [Change("failed", watch.name, now, check=failed.check, message=failed.message)]

    def _not_failing(self, watch: ClientWatch) -> None:
        watch.failed_at = None
        self.failing.pop(watch.name, None)
        self.undecided.pop(watch.name, None)

    def _judge_failure(self, watch: ClientWatch, now: float) -> list[Change]:
        """May a backup take over this failed client? Judged `failed_together` after it
        failed, with every client that failed together with it known by then."""
        del self.undecided[watch.name]
        assert watch.failed_at is not None
        changes: list[Change] = []
        if not watch.guarded:
            window = self.timing.failed_together
            dropped = [watch.name] + [
                n
                for n, at in self.failing.items()
                if n != watch.name and abs(at - watch.failed_at) <= window
            ]
            at = [self.failing[n] for n in dropped]
            changes.extend(self._mass_failure(watch, dropped, at, now, by_checks=True))
        guard = None
        if watch.guarded:
            why = "mass failure guard: many clients failed their checks at once"
            guard = Guard("mass failure guard", why)
        elif not watch.seen_healthy:
            why = "startup guard: not seen healthy since the director started"
            guard = Guard("startup guard", why)
        changes.append(Change("failed_decision", watch.name, now, guard=guard))
        return changes

    @property
    def check_every(self) -> float:
        """How often the caller should call check(): the granularity of detection."""
        return min(self.timing.heartbeat_interval / 4, self.timing.offline_after / 20)

    def _online(self, watch: ClientWatch, now: float) -> list[Change]:
        watch.remembered = False
        watch.state = ClientState.ONLINE
        watch.seen_online = True
        watch.guarded = False
        watch.late = False
        changes = [Change("online", watch.name, now)]
        if watch.failed is not None:  # heard steadily, its show not playing
            changes.extend(self._failed(watch, now))
        else:
            watch.seen_healthy = True
        return changes

    def _rebase(self, now: float) -> None:
        """After a stall, silence starts now: nobody is offline for the director's own pause."""
        for watch in self.clients.values():
            if watch.last_heard is not None:
                watch.last_heard = now
            if watch.steady_since is not None:
                # A run of heartbeats that the stall hid is not known to be steady.
                watch.steady_since = min(watch.steady_since, now)

    def _mass_failure(
        self,
        watch: ClientWatch,
        dropped: list[str],
        times: list[float],
        now: float,
        by_checks: bool = False,
    ) -> list[Change]:
        """The guard: more than `mass_failure_guard` of the watched clients lost together
        (`dropped` holds `watch`; `times` when each was lost) — none is taken over."""
        watched = len(dropped) + sum(
            1 for w in self.clients.values() if w.state in HEARD and w.name not in dropped
        )
        share = len(dropped) / watched  # never zero: `dropped` holds this client
        if len(dropped) <= 1 or share <= self.timing.mass_failure_guard:
            return []
        for name in dropped:
            self.clients[name].guarded = True
        seconds = max(times) - min(times)
        return [
            Change(
                "mass_failure",
                watch.name,
                now,
                clients=tuple(dropped),
                seconds=seconds,
                by_checks=by_checks,
            )
        ]

    def _offline(self, watch: ClientWatch, now: float) -> list[Change]:
        watch.remembered = False
        changes: list[Change] = []
        if not watch.guarded:
            dropped = self._dropped_together(watch, now)
            heard = [self.clients[n].last_heard or now for n in dropped]
            changes.extend(self._mass_failure(watch, dropped, heard, now))
        watch.state = ClientState.OFFLINE
        watch.steady_since = None
        watch.late = False
        watch.failed = None  # silence wins: its checks are unknown until it is heard again
        self._not_failing(watch)
        guard = None
        if watch.guarded:
            why = "mass failure guard: many clients dropped at once (the director's network?)"
            guard = Guard("mass failure guard", why)
        elif not watch.seen_online:
            guard = Guard(
                "startup guard", "startup guard: not seen online since the director started"
            )
        changes.append(Change("offline", watch.name, now, guard=guard))
        return changes

    def _dropped_together(self, going: ClientWatch, now: float) -> list[str]:
        """Clients that went silent together with the one going offline now (this one first).

        "Together" is by when their last heartbeats *arrived*, within `together` of
        this one's, whatever order they are judged in: those still online are late
        by now, those judged before it are offline already.
        """
        assert going.last_heard is not None
        dropped = [going.name]
        for w in self.clients.values():
            if (
                w is not going
                and w.last_heard is not None
                and (w.state is not ClientState.DRY or w.seen_online)  # seen before a restart
                and abs(w.last_heard - going.last_heard) <= self.timing.together
                and now - w.last_heard >= self.timing.late_after
            ):
                dropped.append(w.name)
        for name, failed_at in self.failing.items():  # failed their checks at that moment
            if name not in dropped and abs(failed_at - going.last_heard) <= self.timing.together:
                dropped.append(name)
        return dropped
