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


class ClientState(enum.StrEnum):
    DRY = "dry"  # declared, never heard from
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Timing:
    heartbeat_interval: float
    offline_after: float
    online_after: float
    mass_failure_guard: float

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


@dataclass(frozen=True)
class Change:
    """Something the detector decided; the director turns these into events."""

    kind: str  # "online", "offline", "late", "on_time", "mass_failure", "stalled"
    client: str  # "" for "stalled": the director itself
    at: float
    # for "offline": may a backup take over automatically?
    eligible: bool = False
    why_not: str = ""
    clients: tuple[str, ...] = ()  # for "mass_failure": who dropped together
    # for "mass_failure": how far apart their last heartbeats arrived; for "stalled": the gap
    seconds: float = 0.0


@dataclass
class Detector:
    timing: Timing
    clients: dict[str, ClientWatch] = field(default_factory=dict)
    last_check: float | None = None  # when check() last ran: a long gap is a stall

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
            if watch.state is ClientState.ONLINE:
                changes.append(Change("on_time", name, now))
        if (
            watch.state is not ClientState.ONLINE
            and now - watch.steady_since >= self.timing.online_after
        ):
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
            if watch.state is not ClientState.ONLINE:
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
        return changes

    @property
    def check_every(self) -> float:
        """How often the caller should call check(): the granularity of detection."""
        return min(self.timing.heartbeat_interval / 4, self.timing.offline_after / 20)

    def _online(self, watch: ClientWatch, now: float) -> list[Change]:
        watch.state = ClientState.ONLINE
        watch.seen_online = True
        watch.guarded = False
        watch.late = False
        return [Change("online", watch.name, now)]

    def _rebase(self, now: float) -> None:
        """After a stall, silence starts now: nobody is offline for the director's own pause."""
        for watch in self.clients.values():
            if watch.last_heard is not None:
                watch.last_heard = now
            if watch.steady_since is not None:
                # A run of heartbeats that the stall hid is not known to be steady.
                watch.steady_since = min(watch.steady_since, now)

    def _offline(self, watch: ClientWatch, now: float) -> list[Change]:
        changes: list[Change] = []
        if not watch.guarded:
            dropped = self._dropped_together(watch, now)
            watched = len(dropped) + sum(
                1
                for w in self.clients.values()
                if w.state is ClientState.ONLINE and w.name not in dropped
            )
            share = len(dropped) / watched  # never zero: `dropped` holds this client
            if len(dropped) > 1 and share > self.timing.mass_failure_guard:
                for name in dropped:
                    self.clients[name].guarded = True
                heard = [self.clients[n].last_heard or now for n in dropped]
                changes.append(
                    Change(
                        "mass_failure",
                        watch.name,
                        now,
                        clients=tuple(dropped),
                        seconds=max(heard) - min(heard),
                    )
                )
        watch.state = ClientState.OFFLINE
        watch.steady_since = None
        watch.late = False
        if watch.guarded:
            why = "mass failure guard: many clients dropped at once (the director's network?)"
            changes.append(Change("offline", watch.name, now, eligible=False, why_not=why))
        elif not watch.seen_online:
            why = "startup guard: not seen online since the director started"
            changes.append(Change("offline", watch.name, now, eligible=False, why_not=why))
        else:
            changes.append(Change("offline", watch.name, now, eligible=True))
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
        return dropped
