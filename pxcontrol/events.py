"""Events: what happened, when, to whom. Mappings, hooks, OSC and the web page read them."""

from __future__ import annotations

import fnmatch
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: Event kinds the runtime raises; mappings may name these or `*` patterns over them.
KINDS: dict[str, str] = {
    "client.online": "a client's heartbeats are steady again",
    "client.offline": "a client's heartbeats stopped for offline_after",
    "client.late": "a client's heartbeats are late (late = true) or on time again (late = false)",
    "client.failed": "a client is heard but one of its checks failed: its show is not playing",
    "client.recovered": "every check of a failed client passes again",
    "backup.activated": "a takeover happened",
    "backup.moved": "outputs moved with 'move to'",
    "backup.failed": "a takeover or move could not happen",
    "backup.confirmed": "the client that plays a client's outputs now confirmed the decision",
    "backup.auto": "automatic backup was switched on or off for a client",
    "alarm": "something needs the operator (mass failure, backup busy, backup lost, …)",
    "alarm.acknowledged": "an operator acknowledged the alarms up to an event, for everyone",
    "show.loaded": "the director started a show",
    "show.reloaded": "the show or a module file changed and the new version is live",
    "show.error": "a show or module file change was refused; the running show is unchanged",
    "module.status": "a module's connection status changed",
    "action.failed": "an action raised, timed out or was called with wrong arguments",
    "mapping.done": "a mapping ran its actions (a trace: each action, result, duration)",
    "log.entry": "a Log module wrote an entry",
    "director.active": "this director took charge of the show (standby directors only)",
    "director.standby": "this director stands by: another is in charge, or none is",
    "director.mirrored": "a standby director took the show's state its director in charge wrote",
}


#: Events whose mappings are recorded as intent before they run and as done after.
TAKEOVER_KINDS = ("backup.activated", "backup.moved")

#: What the event log keeps room for longest when the disk falls behind: what happened to
#: clients and outputs, alarms and traces, before routine figures and module chatter.
KEPT_LONGER = ("backup.", "client.", "show.", "alarm", "mapping.done")

#: The fields each kind of event carries, besides seq, time and kind.
FIELDS: dict[str, tuple[str, ...]] = {
    "client.online": ("client", "ip"),
    "client.offline": ("client", "ip", "automatic", "why_not"),
    "client.late": ("client", "ip", "late"),
    "client.failed": ("client", "ip", "check", "message"),
    "client.recovered": ("client", "ip"),
    "backup.activated": (
        "client", "backup", "outputs", "live_inputs", "unmatched", "reason", "trigger", "by",
        "epoch",
    ),
    "backup.moved": ("client", "from", "to", "outputs", "reason", "trigger", "by", "epoch"),
    "backup.failed": ("client", "reason", "refusal", "message", "trigger", "by", "action"),
    "backup.confirmed": ("client", "plays_on", "epoch", "after", "alarmed"),
    "backup.auto": ("client", "on", "reason", "by"),
    "alarm": ("client", "alarm", "message"),
    "alarm.acknowledged": ("up_to", "by"),
    "show.loaded": (
        "file", "clients", "modules", "mappings", "epoch", "restored", "heartbeat_port", "osc_port",
        "web_port",
    ),
    "show.reloaded": ("file", "message"),
    "show.error": ("file", "message"),
    "module.status": ("module", "status", "message"),
    "action.failed": ("action", "message", "source", "on"),
    "mapping.done": ("mapping", "on", "event_seq", "client", "ok", "actions"),
    "log.entry": ("module", "message", "level"),
    "director.active": ("director", "address", "term"),
    "director.standby": ("director", "active", "address", "term", "why"),
    "director.mirrored": ("director", "epoch", "by"),
}  # fmt: skip

#: A value of the right type for each field, to check action arguments that use it.
SAMPLES: dict[str, Any] = {
    "client": "Playout1", "ip": "10.0.0.11", "automatic": True, "why_not": "", "late": True,
    "backup": "Backup1", "outputs": ["Output 1"], "live_inputs": ["Cam 1"], "unmatched": [],
    "reason": "manual", "by": "", "epoch": 1, "from": "Backup1", "to": "Playout1",
    "message": "text", "trigger": "auto", "refusal": "backup offline", "action": "Module.Action", "on": True,
    "alarm": "backup busy", "file": "show.toml", "clients": 2, "modules": 1, "mappings": 1,
    "restored": "", "heartbeat_port": 7401, "osc_port": 7400, "web_port": 7480, "module": "Log", "status": "ok", "source": "api", "mapping": "mappings[0]",
    "event_seq": 1, "ok": True, "actions": [], "level": "info",
    "seq": 1, "time": 0.0, "kind": "backup.activated",
    "up_to": 1, "plays_on": "Backup1", "after": 0.012, "alarmed": False, "check": "process Pixera.exe",
    "director": "DirA", "active": "DirB", "address": "10.0.0.2:7400", "term": 7, "why": "",
}  # fmt: skip


def fields_of(pattern: str, module_kinds: Iterable[str] = ()) -> tuple[str, ...]:
    """The fields every event matching `pattern` carries (seq, time and kind always);
    events that modules raise carry `module`."""
    fields = {**FIELDS, **{k: ("module",) for k in module_kinds}}
    kinds = [k for k in fields if fnmatch.fnmatchcase(k, pattern)]
    shared = set.intersection(*(set(fields[k]) for k in kinds)) if kinds else set()
    return ("seq", "time", "kind", *sorted(shared))


@dataclass(frozen=True)
class Event:
    kind: str
    fields: dict[str, Any]
    time: float = field(default_factory=time.time)
    seq: int = 0

    @property
    def client(self) -> str | None:
        return self.fields.get("client")

    def as_dict(self) -> dict[str, Any]:
        # The event's own seq, time and kind win over any field of the same name.
        return {**self.fields, "seq": self.seq, "time": self.time, "kind": self.kind}


class EventLog:
    """The recent events in order, and whoever listens for new ones."""

    def __init__(self, keep: int = 2000) -> None:
        self._events: deque[Event] = deque(maxlen=keep)
        self._seq = itertools.count(1)
        self._listeners: list[Callable[[Event], None]] = []

    def add(self, kind: str, fields: dict[str, Any]) -> Event:
        event = Event(kind=kind, fields=fields, seq=next(self._seq))
        self._events.append(event)
        for listener in list(self._listeners):
            listener(event)
        return event

    def restore(self, events: list[Event]) -> None:
        """Bring back the log of an earlier run; new events continue its numbering."""
        self._events.extend(events)
        if events:
            self._seq = itertools.count(events[-1].seq + 1)

    def listen(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        self._listeners.append(listener)

        def unlisten() -> None:  # a second call is harmless
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unlisten

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest event (0 before the first)."""
        return self._events[-1].seq if self._events else 0

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self._events if e.kind == kind]
