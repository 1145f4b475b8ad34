"""The backup manager: which backup covers which client, takeover, move to, automatic backup.

Every decision goes through here, whoever asks (automatic detection, OSC, the
web page, the CLI), is serialised, carries a new epoch, and is on disk before
it is announced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from pxcontrol.detection import ClientState, Guard
from pxcontrol.heartbeat import FailedCheck
from pxcontrol.show import ClientDecl, ShowFile
from pxcontrol.state import SavedState, StateNotSaved, StateStore
from pxcontrol.status import summarise_names

log = logging.getLogger("pxcontrol.backup")

Emit = Callable[..., object]


@dataclass(frozen=True)
class Transfer:
    """What moves from a playout client to a backup: same-named outputs and live inputs."""

    outputs: tuple[str, ...]
    live_inputs: tuple[str, ...]
    unmatched: tuple[str, ...]

    @classmethod
    def between(cls, playout: ClientDecl, backup: ClientDecl) -> Transfer:
        outputs = tuple(o for o in playout.outputs if o in backup.outputs)
        inputs = tuple(i for i in playout.live_inputs if i in backup.live_inputs)
        unmatched = tuple(
            n for n in (*playout.outputs, *playout.live_inputs) if n not in (*outputs, *inputs)
        )
        return cls(outputs, inputs, unmatched)

    @property
    def empty(self) -> bool:
        return not self.outputs and not self.live_inputs


class PlacementMap(dict[str, str]):
    """Where each playout client's outputs play (playout → client), with the reverse kept:
    which playouts each client carries, so "is this backup busy?" is a lookup, not a scan
    of every client (the status asks it for each of 10,000)."""

    def __init__(self, items: dict[str, str] | None = None) -> None:
        super().__init__()
        self._carried: dict[str, dict[str, None]] = {}
        for playout, where in (items or {}).items():
            self[playout] = where

    def __setitem__(self, playout: str, where: str) -> None:
        if playout in self:
            del self[playout]
        super().__setitem__(playout, where)
        if where != playout:
            self._carried.setdefault(where, {})[playout] = None

    def __delitem__(self, playout: str) -> None:
        where = self[playout]
        super().__delitem__(playout)
        carried = self._carried.get(where)
        if carried is not None:
            carried.pop(playout, None)
            if not carried:
                del self._carried[where]

    def pop(self, playout: str, *default: str) -> str:  # type: ignore[override]
        if playout not in self:
            if default:
                return default[0]
            raise KeyError(playout)
        where = self[playout]
        del self[playout]
        return where

    def update(self, *args: object, **kwargs: str) -> None:  # type: ignore[override]
        for playout, where in dict(*args, **kwargs).items():  # type: ignore[arg-type]
            self[playout] = where

    def setdefault(self, playout: str, where: str) -> str:  # type: ignore[override]
        if playout not in self:
            self[playout] = where
        return self[playout]

    def clear(self) -> None:
        super().clear()
        self._carried.clear()

    def popitem(self) -> tuple[str, str]:
        raise TypeError("PlacementMap.popitem: remove a named playout with pop()")

    def __ior__(self, other: object) -> PlacementMap:  # type: ignore[override]
        self.update(other)
        return self

    def carried_by(self, client: str) -> list[str]:
        """The playouts whose outputs play on `client` now (not its own)."""
        return list(self._carried.get(client, ()))


@dataclass(frozen=True)
class Decision:
    ok: bool
    message: str
    epoch: int = 0
    # why it was refused, as in backup.failed: "backup offline", "state not saved" …
    reason: str = ""


#: Refusals of an automatic takeover that a backup becoming ready can end: it waits for one.
class ReloadRefused(NamedTuple):
    """Why an edit cannot be applied now, and the key of the new file it is about."""

    message: str
    key: tuple[str | int, ...] = ()


WAITS_FOR = ("backup offline", "backup dry", "backup busy", "backup failed")


def _words(failed: FailedCheck) -> str:
    """A failed check as people read it: its name, then the agent's words."""
    return f"{failed.check!r}: {failed.message}" if failed.message else repr(failed.check)


class Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class BackupManager:
    def __init__(
        self,
        show: ShowFile,
        saved: SavedState,
        store: StateStore | None,
        state_of: Callable[[str], ClientState],
        emit: Emit,
        announce: Callable[[int, dict | None], Awaitable[None] | None] | None = None,
        failed_of: Callable[[str], FailedCheck | None] = lambda name: None,
        gpu_mismatch_of: Callable[[str], str | None] = lambda name: None,
    ) -> None:
        self.show = show
        self.epoch = saved.epoch
        self._placement = PlacementMap()
        self.placement = {c.name: c.name for c in self.playouts()}
        self.placement.update({k: v for k, v in saved.placement.items() if k in self.placement})
        self.auto_override = dict(saved.auto)
        self._saved_placement = dict(self.placement)  # as on disk: a failed save goes back to it
        self._store = store
        self._state_of = state_of
        self._emit = emit
        self._announce = announce
        self._failed_of = failed_of  # the check that failed on a FAILED client
        self._gpu_mismatch_of = gpu_mismatch_of  # why its real GPU is not the show's, or None
        self.lock = asyncio.Lock()
        # Set by a director that may stand by: why it may not decide now (None: it may).
        self.refusal: Callable[[], str | None] = lambda: None
        # Set with standby directors: every decision is also written there (etcd), or not made.
        self.also_save: Callable[[int, dict[str, str], dict[str, bool]], Awaitable[None]] | None = (
            None
        )
        self.waiting: set[str] = set()  # offline or failed, automatic, no backup was ready

    @property
    def placement(self) -> PlacementMap:
        return self._placement

    @placement.setter
    def placement(self, value: dict[str, str]) -> None:
        self._placement = PlacementMap(value)

    # --- a reloaded show ---

    def why_not_reload(self, show: ShowFile) -> ReloadRefused | None:
        """A reload must never lose or change where outputs play now; None if it does not."""
        for playout, where in self.placement.items():
            if playout == where:
                continue
            new_playout, new_backup = show.client(playout), show.client(where)
            if new_playout is None or new_backup is None:
                gone = playout if new_playout is None else where
                return ReloadRefused(
                    f"{playout}'s outputs play on {where} now: the edit removes {gone}. "
                    f"Move {playout}'s outputs home first, then remove it"
                )
            if new_playout.ip not in new_backup.backup_for:
                return ReloadRefused(
                    f"{playout}'s outputs play on {where} now: the edit makes {where} no longer "
                    f"a backup of {playout}. Move the outputs home first",
                    ("clients", show.clients.index(new_backup), "backup_for"),
                )
        return None

    def update(self, show: ShowFile) -> None:
        """Take a reloaded show (checked with why_not_reload first): placement is kept."""
        self.show = show
        self.placement = {c.name: self.placement.get(c.name, c.name) for c in self.playouts()}
        self._saved_placement = dict(self.placement)

    # --- the declarations ---

    def client(self, name: str) -> ClientDecl:
        found = self.show.client(name)
        if found is None:
            known = summarise_names(c.name for c in self.show.clients) or "none"
            raise Refused("unknown client", f"no client is called {name!r} (clients: {known})")
        return found

    def backups_for(self, playout: ClientDecl) -> list[ClientDecl]:
        return self.show.backups_of(playout.ip)

    def playouts(self) -> list[ClientDecl]:
        """Clients that some backup covers."""
        return self.show.covered()

    def plays_on(self, name: str) -> str:
        return self.placement.get(name, name)

    def carrying(self, backup: str) -> str | None:
        """The playout client whose outputs this backup plays now, if any."""
        return next(iter(self.placement.carried_by(backup)), None)

    def auto_enabled(self, name: str) -> bool:
        """Automatic backup for a playout client: the operator's switch, else the show's."""
        if name in self.auto_override:
            return self.auto_override[name]
        playout = self.show.client(name)
        if playout is None:
            return False
        if "auto_backup" in playout.model_fields_set:
            return playout.auto_backup
        return any(b.auto_backup for b in self.backups_for(playout))

    def why_not_takeover(self, name: str) -> str | None:
        """The reason a takeover would be refused now, or None; for buttons that explain."""
        try:
            self._choose_backup(self.client(name))
        except Refused as refused:
            return refused.message
        return None

    def move_targets(self, name: str) -> list[str]:
        """The clients a playout client's outputs may move to now, for a "Move To" picker."""
        playout = self.show.client(name)
        if playout is None or not self.backups_for(playout):
            return []
        source = self.plays_on(name)
        targets = []
        for to in [playout, *self.backups_for(playout)]:
            try:
                self._check_move(playout, to, source)
            except Refused:
                continue
            targets.append(to.name)
        return targets

    def plays(self, agent: str) -> dict[str, list[str]]:
        """What an agent's machine should play now: playout client → output and input names."""
        result: dict[str, list[str]] = {}
        me = self.show.client(agent)
        if me is None:
            return result
        if self.plays_on(agent) == agent and not me.backup_for:
            result[agent] = [*me.outputs, *me.live_inputs]
        for playout in self.placement.carried_by(agent):
            transfer = Transfer.between(self.client(playout), me)
            result[playout] = [*transfer.outputs, *transfer.live_inputs]
        return result

    # --- decisions ---

    async def takeover(self, name: str, trigger: str, by: str = "") -> Decision:
        """Move a playout client's outputs to its backup now."""
        async with self.lock:
            if (standby := self.refusal()) is not None:
                return Decision(False, standby, self.epoch, "standby")
            try:
                playout = self.client(name)
                backup, transfer = self._choose_backup(playout)
            except Refused as refused:
                return self._refuse(name, refused, trigger, by)
            return await self._activate(playout, backup, transfer, trigger, by)

    async def _activate(
        self, playout: ClientDecl, backup: ClientDecl, transfer: Transfer, trigger: str, by: str
    ) -> Decision:
        """Outputs go from home to a backup: a takeover, whether chosen or moved to."""
        self.epoch += 1
        self.placement[playout.name] = backup.name
        not_saved = await self._save_or_roll_back(playout.name, trigger, by, "takeover")
        if not_saved is not None:
            return not_saved
        event = {
            "client": playout.name,
            "backup": backup.name,
            "outputs": list(transfer.outputs),
            "live_inputs": list(transfer.live_inputs),
            "unmatched": list(transfer.unmatched),
            "reason": trigger,  # the design's name; `trigger` says which meaning it has here
            "trigger": trigger,
            "by": by,
            "epoch": self.epoch,
        }
        await self._tell_agents(event)
        self._emit("backup.activated", event)  # the event log writes it on its own path
        if transfer.unmatched:
            self._emit(
                "alarm",
                client=playout.name,
                alarm="names mismatch",
                message=f"{', '.join(transfer.unmatched)} of {playout.name} have no "
                f"same-named counterpart on {backup.name} and were not transferred",
            )
        return Decision(True, f"{playout.name} is on {backup.name}", self.epoch)

    async def catch_up(self, seen: int) -> None:
        """An agent follows epoch `seen`, newer than ours: the next decision goes past it."""
        async with self.lock:
            if seen > self.epoch:
                before, self.epoch = self.epoch, seen
                try:
                    await self._save()
                except StateNotSaved as error:
                    self.epoch = before  # caught up with again at the agent's next heartbeat
                    self._alarm_not_saved("", error)

    async def move_to(self, name: str, target: str | None, trigger: str, by: str = "") -> Decision:
        """Move a playout client's outputs from where they play now to `target` (default: home)."""
        async with self.lock:
            if (standby := self.refusal()) is not None:
                return Decision(False, standby, self.epoch, "standby")
            try:
                playout = self.client(name)
                if not self.backups_for(playout):
                    raise Refused("no backup", f"{name} has no backup: its outputs never move")
                to = self.client(target or name)
                source = self.plays_on(playout.name)
                self._check_move(playout, to, source)
            except Refused as refused:
                return self._refuse(name, refused, trigger, by, action="move")
            if source == playout.name:  # from home to a backup: a takeover onto that one
                transfer = Transfer.between(playout, to)
                return await self._activate(playout, to, transfer, trigger, by)
            self.epoch += 1
            self.placement[playout.name] = to.name
            not_saved = await self._save_or_roll_back(playout.name, trigger, by, "move")
            if not_saved is not None:
                return not_saved
            outputs = (
                [*playout.outputs, *playout.live_inputs]
                if to.name == playout.name
                else [*(t := Transfer.between(playout, to)).outputs, *t.live_inputs]
            )
            event = {
                "client": playout.name,
                "from": source,
                "to": to.name,
                "outputs": outputs,
                "reason": trigger,
                "trigger": trigger,
                "by": by,
                "epoch": self.epoch,
            }
            await self._tell_agents(event)
            self._emit("backup.moved", event)
            where = "back on" if to.name == playout.name else "on"
            return Decision(True, f"{playout.name}'s outputs are {where} {to.name}", self.epoch)

    async def set_auto(self, name: str, on: bool, trigger: str, by: str = "") -> Decision:
        async with self.lock:
            if (standby := self.refusal()) is not None:
                return Decision(False, standby, self.epoch, "standby")
            try:
                playout = self.client(name)
            except Refused as refused:
                return Decision(False, refused.message, self.epoch)
            if not self.backups_for(playout):
                return Decision(False, f"{name} has no backup to switch to", self.epoch)
            before = dict(self.auto_override)
            self.auto_override[name] = on
            try:
                await self._save()
            except StateNotSaved as error:
                self.auto_override = before
                self._alarm_not_saved(name, error)
                return Decision(False, error.message, self.epoch, "state not saved")
            self._emit("backup.auto", client=name, on=on, reason=trigger, by=by)
            state = "on" if on else "off"
            return Decision(True, f"automatic backup for {name} is {state}", self.epoch)

    def wants_takeover(self, name: str) -> bool:
        """Does the show want this client taken over automatically if it goes offline or
        fails now?

        It has a backup, automatic backup is on for it, and its outputs play at home.
        """
        client = self.show.client(name)
        return bool(
            client is not None
            and self.backups_for(client)
            and self.auto_enabled(name)
            and self.plays_on(name) == name
        )

    async def client_offline(self, name: str, guard: Guard | None = None) -> None:
        """The detector declared a client offline: take over automatically if the show says
        so and no guard holds it back."""
        await self._lost(name, guard, "went offline")

    async def client_failed(self, name: str, guard: Guard | None = None) -> None:
        """The detector judged a failed client (its show stopped, its machine runs on): the
        same rule as offline. A client that recovered before it was judged is left alone."""
        failed = self._failed_of(name)
        if failed is None:
            return
        await self._lost(name, guard, f"failed its check {_words(failed)}")

    async def _lost(self, name: str, guard: Guard | None, how: str) -> None:
        """A client stopped playing (`how`: what happened): one rule for "would a backup
        take it over now", whether it went silent or its checks failed."""
        client = self.show.client(name)
        if client is None:
            return
        carried = self.carrying(name)
        if carried is not None:
            self._emit(
                "alarm",
                client=name,
                alarm="backup lost",
                message=f"backup {name} {how} while playing the outputs of {carried}",
            )
        if not self.wants_takeover(name):
            return
        if guard is not None:
            self._refuse(
                name,
                Refused(guard.code, f"no automatic takeover of {name}: {guard.why}"),
                "auto",
                by="detector",
            )
            return
        decision = await self.takeover(name, "auto", by="detector")
        if not decision.ok and (decision.reason == "standby" or self._blocked_by_backup(name)):
            # Taken over as soon as a backup can, or this director is in charge again:
            # see retry_waiting().
            self.waiting.add(name)

    def _blocked_by_backup(self, name: str) -> bool:
        try:
            self._choose_backup(self.client(name))
        except Refused as refused:
            return refused.reason in WAITS_FOR
        return False

    async def retry_waiting(self, by: str = "detector: a backup is ready again") -> None:
        """A client came online or recovered, or a backup was freed (or this director is in
        charge again): take over, automatically, the offline or failed clients whose
        automatic takeover found no backup ready (or no director in charge)."""
        if self.refusal() is not None:
            return  # standing by: they wait for this director to be in charge
        for name in sorted(self.waiting):
            if (
                self._state_of(name) not in (ClientState.OFFLINE, ClientState.FAILED)
                or self.plays_on(name) != name
                or not self.wants_takeover(name)
            ):
                self.waiting.discard(name)  # back, taken over by hand, or switched off
                continue
            if self._blocked_by_backup(name):
                continue  # still none ready: no new backup.failed for each retry
            self.waiting.discard(name)
            await self.takeover(name, "auto", by=by)

    # --- rules ---

    def _choose_backup(self, playout: ClientDecl) -> tuple[ClientDecl, Transfer]:
        backups = self.backups_for(playout)
        if not backups:
            raise Refused("no backup", f"{playout.name} has no backup client in the show")
        where = self.plays_on(playout.name)
        if where != playout.name:
            raise Refused("already taken over", f"{playout.name} already plays on {where}")
        self._check_gpu(playout)
        refusal: Refused | None = None
        for backup in backups:
            try:
                return backup, self._check_backup(playout, backup)
            except Refused as refused:
                refusal = refusal or refused
        assert refusal is not None
        raise refusal

    def _check_backup(self, playout: ClientDecl, backup: ClientDecl) -> Transfer:
        state = self._state_of(backup.name)
        if state is ClientState.FAILED:
            failed = self._failed_of(backup.name)
            words = _words(failed) if failed is not None else "(no detail)"
            raise Refused(
                "backup failed", f"backup {backup.name} failed its check {words}; nothing can move"
            )
        if state is ClientState.DRY:
            raise Refused(
                "backup dry",
                f"backup {backup.name} is dry (declared, never heard from): nothing can move",
            )
        if state is not ClientState.ONLINE:
            raise Refused("backup offline", f"backup {backup.name} is {state}: nothing can move")
        busy = self.carrying(backup.name)
        if busy is not None:
            raise Refused(
                "backup busy",
                f"backup {backup.name} already plays the outputs of {busy}; move {busy} back first",
            )
        transfer = Transfer.between(playout, backup)
        if transfer.empty:
            raise Refused(
                "names mismatch",
                f"none of {playout.name}'s outputs or live inputs has a same-named "
                f"counterpart on {backup.name}",
            )
        self._check_gpu(backup)
        return transfer

    def _check_gpu(self, client: ClientDecl) -> None:
        """A takeover onto or from a machine whose real GPU is not the show's would be refused
        by the media server (Pixera takes over only between equal GPU names)."""
        mismatch = self._gpu_mismatch_of(client.name)
        if mismatch is not None:
            raise Refused("gpu mismatch", f"{mismatch}: no takeover onto or from {client.name}")

    def _check_move(self, playout: ClientDecl, to: ClientDecl, source: str) -> None:
        if to.name == source:
            raise Refused("already there", f"{playout.name}'s outputs already play on {to.name}")
        if to.name != playout.name and to not in self.backups_for(playout):
            raise Refused(
                "not a backup",
                f"{to.name} does not back up {playout.name}: only {playout.name} itself or "
                "its backups can play its outputs",
            )
        state = self._state_of(to.name)
        if state is ClientState.FAILED:
            failed = self._failed_of(to.name)
            words = _words(failed) if failed is not None else "(no detail)"
            raise Refused(
                "target failed",
                f"{to.name} failed its check {words}; move outputs only to a healthy client",
            )
        if state is not ClientState.ONLINE:
            raise Refused(
                "target offline",
                f"{to.name} is {state}: move outputs only to a client that is online",
            )
        if source == playout.name:  # from home to a backup: a takeover from the playout
            self._check_gpu(playout)
        self._check_gpu(to)
        if to.name != playout.name:
            busy = self.carrying(to.name)
            if busy is not None:
                raise Refused("backup busy", f"{to.name} already plays the outputs of {busy}")
            if Transfer.between(playout, to).empty:
                raise Refused(
                    "names mismatch", f"{to.name} has none of {playout.name}'s output names"
                )

    def _refuse(
        self, name: str, refused: Refused, trigger: str, by: str = "", action: str = "takeover"
    ) -> Decision:
        self._emit(
            "backup.failed",
            client=name,
            reason=refused.reason,  # the design's name; `refusal` says which meaning it has here
            refusal=refused.reason,
            message=refused.message,
            trigger=trigger,
            by=by,
            action=action,
        )
        if refused.reason == "backup busy" and trigger == "auto":
            # Nobody asked and nobody was answered: the show is exposed, so it is an alarm.
            # An operator's refused command is answered to them and logged, not an alarm.
            self._emit("alarm", client=name, alarm="backup busy", message=refused.message)
        return Decision(False, refused.message, self.epoch, refused.reason)

    async def _save(self) -> None:
        if self._store is not None:
            await self._store.save(self.epoch, self.placement, self.auto_override)
        if self.also_save is not None:
            await self.also_save(self.epoch, self.placement, self.auto_override)

    def adopt(self, epoch: int, placement: dict[str, str], auto: dict[str, bool]) -> None:
        """Take the state another director left (standby directors), as a start restores it."""
        self.epoch = epoch
        self.placement = {c.name: c.name for c in self.playouts()}
        self.placement.update({k: v for k, v in placement.items() if k in self.placement})
        self.auto_override = dict(auto)
        self._saved_placement = dict(self.placement)

    async def _save_or_roll_back(
        self, name: str, trigger: str, by: str, action: str
    ) -> Decision | None:
        """Save a decision made in memory (epoch and placement changed); if it cannot be
        saved, undo it in memory, raise the alarm and return the refusal: a takeover is
        saved and announced, or not done at all."""
        try:
            await self._save()
        except StateNotSaved as error:
            self.epoch -= 1
            self.placement[name] = self._saved_placement.get(name, name)
            self._alarm_not_saved(name, error)
            return self._refuse(
                name, Refused("state not saved", error.message), trigger, by, action
            )
        self._saved_placement = dict(self.placement)
        return None

    def _alarm_not_saved(self, name: str, error: StateNotSaved) -> None:
        self._emit("alarm", client=name, alarm="state not saved", message=error.message)

    async def _tell_agents(self, event: dict) -> None:
        if self._announce is not None and self.refusal() is None:
            result = self._announce(self.epoch, event)
            if result is not None:
                await result
