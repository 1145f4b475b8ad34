"""Mappings: on an event, run a list of actions — in order, or all at once.

A client's `on_backup` list is shorthand for a mapping on `backup.activated`:
on a backup client it runs when that backup takes over, on a playout client
when that client is taken over.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from dataclasses import dataclass
from typing import Any

from pxcontrol.app import ActionRecord, App
from pxcontrol.events import Event
from pxcontrol.placeholders import fill
from pxcontrol.show import ActionCall, MappingDecl, ShowFile

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
    found = [Mapping(f"mappings[{i}]", m) for i, m in enumerate(show.mappings)]
    for client in show.clients:
        if not client.on_backup:
            continue
        key = "backup" if client.is_backup else "client"
        decl = MappingDecl.model_validate(
            {"on": "backup.activated", key: client.name, "do": client.on_backup}
        )
        found.append(Mapping(f"{client.name}.on_backup", decl))
    return found


class MappingRunner:
    """Listens to the app's events and runs the mappings that match each one."""

    def __init__(self, app: App, mappings: list[Mapping]) -> None:
        self.app = app
        self.mappings = mappings
        self.running: set[asyncio.Task[None]] = set()

    def attach(self) -> None:
        self.app.events.listen(self.dispatch)

    def dispatch(self, event: Event) -> None:
        # An action that fails inside a mapping run for action.failed must not start another.
        if event.kind == "action.failed" and str(event.fields.get("source", "")).startswith(
            "mapping:action.failed"
        ):
            return
        for mapping in self.mappings:
            if mapping.matches(event):
                task = asyncio.get_running_loop().create_task(
                    self.run(mapping, event), name=f"{mapping.name} on {event.kind}"
                )
                self.running.add(task)
                task.add_done_callback(self.running.discard)

    async def run(self, mapping: Mapping, event: Event) -> list[ActionRecord]:
        source = f"mapping:{event.kind}:{mapping.name}"
        calls = mapping.decl.do
        fields = event.as_dict()
        if mapping.decl.parallel:
            records = list(await asyncio.gather(*(self._call(c, fields, source) for c in calls)))
        else:
            records = []
            for call in calls:
                record = await self._call(call, fields, source)
                records.append(record)
                if not record.ok and mapping.decl.stop_on_error:
                    break
        self.app.emit(
            "mapping.done",
            mapping=mapping.name,
            on=event.kind,
            event_seq=event.seq,
            client=event.fields.get("client"),
            ok=all(r.ok for r in records) and len(records) == len(calls),
            actions=[_trace(r) for r in records],
        )
        return records

    async def _call(self, call: ActionCall, fields: dict[str, Any], source: str) -> ActionRecord:
        args = fill(call.args, fields)
        return await self.app.run_action(call.action, args, timeout=call.timeout, source=source)


def _trace(record: ActionRecord) -> dict[str, Any]:
    return {
        "action": record.action,
        "ok": record.ok,
        "error": record.error,
        "duration": round(record.duration, 6),
    }
