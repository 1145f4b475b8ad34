"""Mappings: on an event, run a list of actions — in order, or all at once.

A client's `on_backup` list is shorthand for a mapping on `backup.activated`:
on a backup client it runs when that backup takes over, on a playout client
when that client is taken over.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from pxcontrol.app import ActionRecord, App
from pxcontrol.events import TAKEOVER_KINDS, Event
from pxcontrol.placeholders import fill
from pxcontrol.show import ActionCall, MappingDecl, ShowFile
from pxcontrol.state import DONE, REPLAYING, Intent

log = logging.getLogger("pxcontrol.mapping")

#: Events a mapping never runs for: its own traces, so a mapping cannot feed itself.
NEVER_MAPPED = ("mapping.done",)


@dataclass(frozen=True)
class Mapping:
    name: str  # where it is declared, for traces: "mappings[0]" or "Backup1.on_backup"
    decl: MappingDecl

    def matches(self, event: Event) -> bool:
        if event.kind in NEVER_MAPPED or not fnmatch.fnmatchcase(event.kind, self.decl.on):
            return False
        for key in ("client", "backup", "reason"):
            wanted = getattr(self.decl, key)
            if wanted is not None and event.fields.get(key) != wanted:
                return False
        return True


def mappings_of(show: ShowFile) -> list[Mapping]:
    found = [Mapping(m.name or f"mappings[{i}]", m) for i, m in enumerate(show.mappings)]
    for client in show.clients:
        if not client.on_backup:
            continue
        key = "backup" if client.is_backup else "client"
        decl = MappingDecl.model_validate(
            {"on": "backup.activated", key: client.name, "do": client.on_backup}
        )
        found.append(Mapping(f"{client.name}.on_backup", decl))
    return found


class Journal(Protocol):
    """Where a takeover's mapped actions are recorded before they run and after (the state)."""

    async def record_intents(
        self,
        kind: str,
        event_seq: int,
        epoch: int,
        client: str,
        backup: str,
        when: float,
        mappings: list[tuple[str, list[dict[str, Any]]]],
    ) -> list[int]: ...

    async def finish_intent(
        self, intent: int, state: str, results: list[dict[str, Any]] | None = None
    ) -> None: ...


class MappingRunner:
    """Listens to the app's events and runs the mappings that match each one."""

    def __init__(self, app: App, mappings: list[Mapping], journal: Journal | None = None) -> None:
        self.app = app
        self.mappings = mappings
        self.journal = journal
        self.running: set[asyncio.Task[Any]] = set()

    def attach(self) -> None:
        self.app.events.listen(self.dispatch)

    def dispatch(self, event: Event) -> None:
        if self.app.refusal() is not None:
            return  # a director standing by runs no mapping (its actions would be refused)
        # An action that fails inside a mapping run for action.failed must not start another.
        if event.kind == "action.failed" and event.fields.get("on") == "action.failed":
            return
        matching = [m for m in self.mappings if m.matches(event)]
        if not matching:
            return
        if self.journal is not None and event.kind in TAKEOVER_KINDS:
            # One write records every mapping of the takeover; then all start, in order.
            self.start(self._run_recorded(matching, event), f"mappings on {event.kind}")
            return
        for mapping in matching:
            self.start(self.run(mapping, event), f"{mapping.name} on {event.kind}")

    def start(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def run(self, mapping: Mapping, event: Event) -> list[ActionRecord]:
        """Run one mapping for an event (a takeover's is recorded as intent first)."""
        calls = _filled(mapping, event)
        (intent,) = await self._record_intents([(mapping, calls)], event)
        return await self._run(mapping, event, calls, intent)

    async def _run_recorded(self, mappings: list[Mapping], event: Event) -> None:
        prepared = [(m, _filled(m, event)) for m in mappings]
        intents = await self._record_intents(prepared, event)
        for (mapping, calls), intent in zip(prepared, intents, strict=True):
            self.start(self._run(mapping, event, calls, intent), f"{mapping.name} on {event.kind}")

    async def _run(
        self, mapping: Mapping, event: Event, calls: list[ActionCall], intent: int | None
    ) -> list[ActionRecord]:
        return await self._done(
            mapping, calls, intent, event.kind, event.seq, event.fields.get("client")
        )

    async def replay(self, intent: Intent, mapping: Mapping) -> list[ActionRecord]:
        """Run again, once, a takeover's actions that a stopped director never confirmed."""
        assert self.journal is not None
        await self.journal.finish_intent(intent.id, REPLAYING)  # a second restart never replays
        calls = [ActionCall.model_validate(c) for c in intent.calls]
        return await self._done(
            mapping, calls, intent.id, intent.kind, intent.event_seq, intent.client, replay=True
        )

    async def _done(
        self,
        mapping: Mapping,
        calls: list[ActionCall],
        intent: int | None,
        on: str,
        event_seq: int,
        client: object,
        replay: bool = False,
    ) -> list[ActionRecord]:
        """Run the calls, mark their intent done, and leave the trace (mapping.done)."""
        source = f"mapping:{on}:{mapping.name}" + (":replay" if replay else "")
        records = await self.run_calls(calls, mapping.decl, source, on)
        if intent is not None:
            await self._finish(intent, DONE, records)
        self.app.emit(
            "mapping.done",
            mapping=mapping.name,
            on=on,
            event_seq=event_seq,
            client=client,
            ok=all(r.ok for r in records) and len(records) == len(calls),
            actions=[_trace(r) for r in records],
            **({"replayed": True} if replay else {}),
        )
        return records

    async def run_calls(
        self, calls: list[ActionCall], decl: MappingDecl, source: str, on: str = ""
    ) -> list[ActionRecord]:
        """Run calls whose arguments are filled in, as the mapping says: in order or at once.
        `on`: the event kind the mapping runs on."""
        if decl.parallel:
            return list(await asyncio.gather(*(self._call(c, source, on) for c in calls)))
        records = []
        for call in calls:
            record = await self._call(call, source, on)
            records.append(record)
            if not record.ok and decl.stop_on_error:
                break
        return records

    async def _record_intents(
        self, prepared: list[tuple[Mapping, list[ActionCall]]], event: Event
    ) -> list[int | None]:
        """A takeover's actions are on disk as intent before the first one runs."""
        if self.journal is None or event.kind not in TAKEOVER_KINDS:
            return [None] * len(prepared)
        fields = event.fields
        try:
            return list(
                await self.journal.record_intents(
                    kind=event.kind,
                    event_seq=event.seq,
                    epoch=int(fields.get("epoch", 0)),
                    client=str(fields.get("client", "")),
                    backup=str(fields.get("backup", fields.get("to", ""))),
                    when=event.time,
                    mappings=[(m.name, [c.model_dump() for c in calls]) for m, calls in prepared],
                )
            )
        except Exception as exc:  # the actions run all the same: the takeover happened
            log.error("could not record the intent of a takeover's mappings: %s", exc)
            return [None] * len(prepared)

    async def _finish(self, intent: int, state: str, records: list[ActionRecord]) -> None:
        assert self.journal is not None
        try:
            await self.journal.finish_intent(intent, state, [_trace(r) for r in records])
        except Exception as exc:
            log.error("could not record that intent %d is done: %s", intent, exc)

    async def _call(self, call: ActionCall, source: str, on: str) -> ActionRecord:
        return await self.app.run_action(
            call.action, call.args, timeout=call.timeout, source=source, on=on
        )


def _filled(mapping: Mapping, event: Event) -> list[ActionCall]:
    """The mapping's calls with the event's fields filled into their arguments."""
    fields = event.as_dict()
    return [
        ActionCall(action=c.action, args=fill(c.args, fields), timeout=c.timeout)
        for c in mapping.decl.do
    ]


def _trace(record: ActionRecord) -> dict[str, Any]:
    return {
        "action": record.action,
        "ok": record.ok,
        "error": record.error,
        "duration": round(record.duration, 6),
    }
