"""The director: a running show with its live systems, backup manager, mappings and state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_address
from pathlib import Path

from pydantic import BaseModel

from pxcontrol.acknowledged import Acknowledged, AlarmAcknowledgements
from pxcontrol.address import DirectorAddress, write_address
from pxcontrol.app import App
from pxcontrol.backup import BackupManager
from pxcontrol.detection import HEARD, ClientState, Guard
from pxcontrol.etcd import EtcdError, EtcdUnavailable
from pxcontrol.events import Event
from pxcontrol.health import LoopWatch
from pxcontrol.heartbeat import Placement
from pxcontrol.history import EVERY as HISTORY_EVERY
from pxcontrol.history import Figures, PerformanceHistory
from pxcontrol.live import LiveSystems
from pxcontrol.loading import LoadedShow, load_show_async
from pxcontrol.mapping import MappingRunner, mappings_of
from pxcontrol.osc_bridge import OscBridge
from pxcontrol.output import lines_lost
from pxcontrol.problems import Severity, ShowInvalid
from pxcontrol.reload import CANNOT_WATCH, ShowWatcher
from pxcontrol.standby import Standby, director_ports
from pxcontrol.state import REPLAYING, REPORTED, Intent, StateStore
from pxcontrol.status import ClientStatus, DirectorHealth, ShowStatus, StatusBoard, page_figures
from pxcontrol.supervisor import Death, Supervisor
from pxcontrol.tasks import cancel_and_wait
from pxcontrol.web import WebServer

log = logging.getLogger("pxcontrol.director")


def default_state_dir(show_path: Path) -> Path:
    return show_path.parent / ".pxcontrol"


class Director:
    def __init__(
        self,
        loaded: LoadedShow,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_port: int | None = None,
        osc_port: int | None = None,
        http_port: int | None = None,
        as_name: str | None = None,
    ) -> None:
        self.loaded = loaded
        self.clock = clock
        self.app = App(loaded)
        # Nothing the director runs may stop silently: what dies is an alarm and starts
        # again; what keeps dying stops the director with a non-zero exit.
        self.supervisor = Supervisor(self._task_died, self._give_up, clock)
        self.gave_up = asyncio.Event()
        self.loop_watch = LoopWatch(self._loop_blocked, clock)
        self.store = StateStore((state_dir or default_state_dir(loaded.path)) / "state.sqlite")
        show = loaded.show
        secret = show.director.secret.encode() if show.director.secret else None
        self.live = LiveSystems(
            show,
            self.app.emit,
            self._client_offline,
            secret,
            clock,
            self._would_take_over,
            on_failed=self._client_failed,
        )
        self.backup: BackupManager | None = None
        self.mappings = MappingRunner(self.app, mappings_of(show), self.store)
        self.board = StatusBoard(self)
        self.history = PerformanceHistory()  # the last ten minutes of every client's figures
        # Alarms acknowledged once for every operator, kept beside the state.
        self.acknowledgements = AlarmAcknowledgements(self.store.path.parent, self.app.emit)
        # With [[directors]]: one of them, in charge only while it holds the etcd lease.
        self.standby: Standby | None = None
        self._bind: str | None = None
        if as_name is not None:
            self.standby = Standby(show, as_name, self.app.emit)  # its own clock: see election
            self.app.refusal = self.standby.refusal
            mine = director_ports(show, as_name)
            self._bind = mine.bind
            heartbeat_port = mine.heartbeat_port if heartbeat_port is None else heartbeat_port
            osc_port = mine.osc_port if osc_port is None else osc_port
            http_port = mine.http_port if http_port is None else http_port
        self._heartbeat_port = heartbeat_port
        self._osc_port = osc_port
        self.osc = OscBridge(self)
        self._http_port = http_port
        self.web = WebServer(self)
        self.dropins = loaded.dropins
        self.watcher: ShowWatcher | None = None
        self._reloading = asyncio.Lock()
        self._refusal = ""
        self._restored_check: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()
        self._saving_seen: asyncio.Task[None] | None = None
        self._seen: set[str] = set()  # clients seen online, by this run or an earlier one
        self._recovery: asyncio.Task[None] | None = None

    @property
    def show(self):
        return self.loaded.show

    async def start(self) -> None:
        self.store.alarm = self._store_alarm
        saved = await self.store.open()
        await asyncio.to_thread(self.acknowledgements.load)
        self._seen = set(saved.seen)
        self.app.events.restore(saved.events)
        self.app.events.listen(self.board.listen)
        self.app.events.listen(self._persist)
        self.app.events.listen(self._maybe_retry)
        self.app.events.listen(self._remember_online)
        self.backup = BackupManager(
            self.show,
            saved,
            self.store,
            self.live.state,
            self.app.emit,
            self.live.announce,
            failed_of=self.live.failed,
            gpu_mismatch_of=self.live.gpu_mismatch,
        )
        self.backup.refusal = self.app.refusal
        if self.standby is not None:  # in charge only once elected: until then it decides nothing
            self.backup.also_save = self.standby.state.save
            self.standby.take_over_state = self._take_over_state
            self.standby.in_charge_again = self._in_charge_again
            self.supervisor.start("director election", self.standby.run)
            self.supervisor.start("directors and etcd watch", self.standby.look_around)
            self.supervisor.start("mirror the show's state", self._mirror_state)
        self.live.confirmations.restore(self.app.events, self.backup.epoch)
        self.mappings.attach()
        await self.app.start()
        director = self.show.director
        bind = self._bind or str(director.bind)
        port = director.heartbeat_port if self._heartbeat_port is None else self._heartbeat_port
        async with _listening(bind, port, "heartbeat_port"):
            self.live.on_newer_epoch = self.backup.catch_up
            await self.live.start(
                bind, port, self.placement_for, self.backup.epoch, self.supervisor
            )
            # Seen online before this start: silent from now on is a failure, not "dry".
            self.live.remember_seen(self._seen & {c.name for c in self.show.clients})
        self.supervisor.start("event loop watch", self.loop_watch.run)
        self.supervisor.start("performance history", self._keep_history)
        osc_port = director.osc_port if self._osc_port is None else self._osc_port
        async with _listening(bind, osc_port, "osc_port"):
            await self.osc.start(bind, osc_port)
        http_port = director.http_port if self._http_port is None else self._http_port
        async with _listening(bind, http_port, "http_port"):
            await self.web.start(bind, http_port)
        moved = {p: b for p, b in self.backup.placement.items() if p != b}
        self.app.emit(
            "show.loaded",
            file=str(self.loaded.path),
            clients=len(self.show.clients),
            modules=len(self.show.modules),
            mappings=len(self.mappings.mappings),
            epoch=self.backup.epoch,
            restored=", ".join(f"{p} on {b}" for p, b in moved.items()),
            heartbeat_port=self.live.port,
            osc_port=self.osc.port,
            web_port=self.web.port,
        )
        host = ip_address(bind)
        if host.is_unspecified:  # every interface: this machine answers on loopback
            host = ip_address("::1" if host.version == 6 else "127.0.0.1")
        here = DirectorAddress(
            osc=f"[{host}]:{self.osc.port}" if host.version == 6 else f"{host}:{self.osc.port}",
            passcode=director.passcode,
            show=str(self.loaded.path),
            pid=os.getpid(),
        )
        await asyncio.to_thread(write_address, self.store.path.parent, here)
        if moved:
            self._restored_check = asyncio.get_running_loop().create_task(
                self._check_restored(moved), name="check restored takeovers"
            )
        if saved.unfinished:
            self._recovery = asyncio.get_running_loop().create_task(
                self._recover(saved.unfinished), name="unconfirmed takeover actions"
            )

    async def _take_over_state(self) -> None:
        """Elected: the show's state from etcd, as the last director in charge left it (the
        first one in charge puts its own there)."""
        assert self.standby is not None and self.backup is not None
        shared = await self.standby.state.load(timeout=self.standby.timing.lease / 2)
        async with self.backup.lock:
            backup = self.backup
            if shared is None:
                await self.standby.state.save(backup.epoch, backup.placement, backup.auto_override)
                return
            backup.adopt(shared.epoch, shared.placement, shared.auto)
            try:  # this director's own copy, beside its event log
                await self.store.save(backup.epoch, backup.placement, backup.auto_override)
            except Exception as exc:
                log.error("could not keep a copy of the show's state on disk: %s", exc)
        self.board.touch_all()
        await self.live.announce(self.backup.epoch, None)

    async def _in_charge_again(self) -> None:
        """In charge: the automatic takeovers that waited for a director in charge go now."""
        assert self.backup is not None
        await self.backup.retry_waiting(by="detector: waited for a director in charge")

    async def _mirror_state(self) -> None:
        """Standing by: follow the state the director in charge writes, every lease, so the
        page, the status and agents that ask here show what is true now."""
        assert self.standby is not None and self.backup is not None
        standby, backup = self.standby, self.backup
        while True:
            await asyncio.sleep(standby.timing.lease)
            if standby.election.in_charge():
                continue  # it writes the state itself (or is reading it to take charge)
            try:
                shared = await standby.state.load(timeout=standby.timing.lease / 2)
            except (EtcdUnavailable, EtcdError):
                continue  # no quorum: "no director in charge" says it
            if shared is None or (shared.epoch, shared.placement, shared.auto) == (
                backup.epoch,
                dict(backup.placement),
                backup.auto_override,
            ):
                continue
            async with backup.lock:
                if standby.election.in_charge():
                    continue
                backup.adopt(shared.epoch, shared.placement, shared.auto)
            self.board.touch_all()
            self.app.emit(
                "director.mirrored", director=standby.name, epoch=shared.epoch, by=shared.by
            )

    async def _recover(self, unfinished: list[Intent]) -> None:
        """Takeovers whose mapped actions never completed before the last stop: say so, and
        run again, once, those the show marks replay_on_recovery."""
        if self.standby is not None:
            await self.standby.charged.wait()  # a standby runs no action: not even a replay
        for intent in unfinished:
            mapping = next((m for m in self.mappings.mappings if m.name == intent.mapping), None)
            replay = (
                intent.state != REPLAYING
                and mapping is not None
                and mapping.decl.replay_on_recovery
                and [c.action for c in mapping.decl.do] == intent.actions
            )
            where = f"the takeover of {intent.client} by {intent.backup} (epoch {intent.epoch})"
            if intent.kind == "backup.moved":
                where = f"the move of {intent.client} to {intent.backup} (epoch {intent.epoch})"
            actions = ", ".join(_call_text(c) for c in intent.calls)  # which cue, which route
            if replay:
                then = "they run again now (replay_on_recovery)"
            elif intent.state == REPLAYING:
                then = "they were being run again after a restart: not a second time; check them"
            elif mapping is not None and mapping.decl.replay_on_recovery:
                then = f"{intent.mapping} changed since: they are not run again; check them"
            else:
                then = (
                    "they are not run again: check them by hand (replay_on_recovery = true "
                    "on a mapping runs them again, where that is safe)"
                )
            self.app.emit(
                "alarm",
                client=intent.client,
                alarm="actions not confirmed",
                message=f"the director stopped before the actions of {intent.mapping} for "
                f"{where} were confirmed: {actions}; {then}",
                backup=intent.backup,
                epoch=intent.epoch,
                mapping=intent.mapping,
                actions=intent.actions,
                replay=replay,
            )
            try:
                if not replay:
                    await self.store.finish_intent(intent.id, REPORTED)
                    continue
                assert mapping is not None
                await self.mappings.replay(intent, mapping)
            except (
                Exception
            ) as exc:  # not saved: the alarm above stands, the next start says it again
                log.error("could not record the recovery of %s: %s", intent.mapping, exc)

    async def _check_restored(self, moved: dict[str, str]) -> None:
        """Outputs restored onto a backup that nobody hears: say so, once the backup had
        the time to come online."""
        timing = self.live.timing
        await asyncio.sleep(timing.offline_after + timing.online_after)
        assert self.backup is not None
        for playout, backup in moved.items():
            if self.backup.plays_on(playout) != backup:
                continue  # moved since
            if self.live.state(backup) in (ClientState.OFFLINE, ClientState.FAILED):
                continue  # silent since the restart, or failed: client_offline/_failed said so
            if self.live.state(backup) is not ClientState.ONLINE:
                self.app.emit(
                    "alarm",
                    client=backup,
                    alarm="backup lost",
                    message=f"backup {backup} plays the outputs of {playout} (restored at "
                    f"start) but is {self.live.state(backup)}: check it, or move "
                    f"{playout}'s outputs",
                )

    def watch(self) -> ShowWatcher | None:
        """Pick up saved edits of the show file and its modules folder from now on."""
        if CANNOT_WATCH:  # everything else runs: said plainly at start, once
            log.warning(
                "reload on save is off: %s. Edits of %s take effect when the director starts "
                "again; install a watchfiles this machine can load to have them live",
                CANNOT_WATCH,
                self.loaded.path,
            )
            return None
        self.watcher = ShowWatcher(
            self.loaded.path, self.reload, self._report_refusal, self._watcher_fault
        )
        self.watcher.start()
        return self.watcher

    async def reload(self) -> bool:
        """Load the show again; swap it in if it is valid, else keep the running one untouched."""
        async with self._reloading:
            try:
                loaded = await load_show_async(self.loaded.path, self.dropins)
            except ShowInvalid as exc:
                # The errors, and the drop-in files that did not load (often their cause).
                shown = [
                    p
                    for p in exc.problems
                    if p.severity is Severity.ERROR or (p.file and p.file.suffix == ".py")
                ]
                self._refusal = "\n".join(str(p) for p in shown)
                return False
            assert self.backup is not None
            refusal = self.backup.why_not_reload(loaded.show)
            if refusal is not None:
                self._refusal = f"{loaded.where(refusal.key)}: error: {refusal.message}"
                return False
            try:
                message = await self._apply(loaded)
            except Exception as exc:  # checked code that still failed: say it, watch on
                log.exception("applying the new version of %s failed", loaded.path)
                self._refusal = (
                    f"{loaded.path}: error: applying the new version failed: "
                    f"{type(exc).__name__}: {exc}. Part of it may be live: fix the cause "
                    "and save again, or restart the director"
                )
                return False
            for warning in loaded.warnings:  # what `check` would warn about, said here too
                log.warning("%s", warning)
            if loaded.warnings:
                message += f"; {len(loaded.warnings)} warning(s), see the director's log"
            self._refusal = ""
            self.app.emit("show.reloaded", file=str(loaded.path), message=message)
            return True

    def _report_refusal(self) -> None:
        if self._refusal:
            log.error("the edit was refused; the show runs as before:\n%s", self._refusal)
            self.app.emit("show.error", file=str(self.loaded.path), message=self._refusal)

    async def _apply(self, loaded: LoadedShow) -> str:
        assert self.backup is not None
        old = self.loaded.show
        new = loaded.show
        async with self.backup.lock:  # no decision sees half of the old and half of the new
            self.loaded = loaded
            self.live.update(new)
            self.backup.update(new)
            self.mappings.mappings = mappings_of(new)
        # The show is the one source of a client's checks: a changed list reaches its agent
        # now, not at the next decision.
        self.live.tell(
            [c.name for c in new.clients if old.checks_for(c.name) != new.checks_for(c.name)]
        )
        modules = await self.app.apply(loaded)
        parts = [
            f"modules kept: {', '.join(modules.kept) or 'none'}",
            *(f"{label}: {', '.join(names)}" for label, names in (
                ("restarted", modules.restarted),
                ("added", modules.added),
                ("removed", modules.removed),
            ) if names),
            f"{len(self.mappings.mappings)} mappings",
        ]  # fmt: skip
        added = [c.name for c in new.clients if old.client(c.name) is None]
        removed = [c.name for c in old.clients if new.client(c.name) is None]
        if added:
            parts.append(f"clients added: {', '.join(added)}")
        if removed:
            parts.append(f"clients removed: {', '.join(removed)}")
        changed = [
            f"{c.name} ({', '.join(keys)})"
            for c in new.clients
            if (before := old.client(c.name)) is not None and (keys := _changed_keys(before, c))
        ]
        if changed:
            parts.append(f"clients changed: {', '.join(changed)}")
        if detection := _changed_keys(old.detection, new.detection):
            parts.append(f"detection: {', '.join(detection)}")
        live = {"action_timeout", "allow", "passcode"}  # read afresh for every call or packet
        now = [
            f"director.{key}" for key in _changed_keys(old.director, new.director) if key in live
        ]
        if now:
            parts.append(f"applied: {', '.join(now)}")  # names only: a passcode is not logged
        later = [
            f"director.{key}"
            for key in _changed_keys(old.director, new.director)
            if key not in live
        ]
        if new.osc.feedback != old.osc.feedback:
            later.append("osc.feedback")
        later += [
            key for key in ("directors", "redundancy") if getattr(new, key) != getattr(old, key)
        ]
        if later:
            parts.append("restart the director to apply: " + ", ".join(later))
        return "; ".join(parts)

    async def stop(self) -> None:
        self.loop_watch.stop()
        await self.web.stop()  # first: open pages hear that the director stops
        await self.supervisor.stop()  # then the rest of its supervised work
        if self.standby is not None:  # the election ended with it: the lease is given up
            await self.standby.close()
        if self._restored_check is not None:
            self._restored_check.cancel()
        if self._recovery is not None:
            await cancel_and_wait([self._recovery])
        if self.watcher is not None:
            await self.watcher.stop()
        await self.osc.stop()
        await self.live.stop()
        await cancel_and_wait(self._retries)
        await cancel_and_wait(self.mappings.running, timeout=2.0)
        await self.app.stop()
        await self.acknowledgements.close()
        await self.store.close()

    def acknowledge_alarms(self, seq: int | None, by: str) -> Acknowledged:
        """Acknowledge, for every operator, the alarms up to event `seq` (every one so far
        when None); who did it (`by`) and when are kept and said in `alarm.acknowledged`."""
        newest = self.app.events.last_seq
        return self.acknowledgements.acknowledge(newest if seq is None else min(seq, newest), by)

    async def _keep_history(self) -> None:
        """Every client's figures every HISTORY_EVERY seconds; an unheard client's as unknown,
        so the timeline has no holes that would join a before and an after."""
        while True:
            await asyncio.sleep(HISTORY_EVERY)
            live = self.live
            names = {c.name for c in self.show.clients}
            samples: list[tuple[str, Figures]] = []
            for name in names:
                seen = live.clients.get(name)
                if seen is None or live.state(name) not in HEARD:
                    samples.append((name, (None, None, None, None)))
                    continue
                f = page_figures(seen.cpu, seen.memory, seen.gpu, seen.extra)
                samples.append((name, (f["cpu"], f["memory"], f["gpu"], f["fps"])))
            self.history.keep_only(names)
            self.history.sample(time.time(), samples)

    def status(self) -> ShowStatus:
        """The operator's view of the show now: OSC, the web page and the CLI show this.

        Assembled from rows kept up to date as events happen; figures are read fresh.
        """
        return self.board.status()

    def client_status(self, name: str) -> ClientStatus | None:
        """One client's status now (None when the show has no such client)."""
        return self.board.client(name)

    def health(self) -> DirectorHealth:
        """Is the director itself judging? Its loop's lag, its detector's last tick."""
        age = self.live.tick_age()
        return DirectorHealth(
            loop_lag_ms=round(self.loop_watch.lag * 1000, 1),
            detector_tick_age_ms=None if age is None else round(age * 1000, 1),
            state_queue=self.store.queue_depth,
            events_shed=self.store.shed,
            stalls=self.live.stalls,
            heartbeats=self.live.heartbeats,
            kernel_stamps=self.live.kernel_stamps,
            restarts=self.supervisor.restarts,
            output_lost=lines_lost(),
            **self._role(),
        )

    def _role(self) -> dict[str, object]:
        """Active or standby, and the director in charge (a show without [[directors]]: its
        one director, always active)."""
        if self.standby is None:
            return {}
        holder = self.standby.in_charge_now()
        return {
            "role": str(self.standby.role),
            "name": self.standby.name,
            "in_charge": holder.name if holder is not None else "",
            "in_charge_address": holder.address if holder is not None else "",
            "term": holder.term if holder is not None else 0,
            "others": self.standby.others,
        }

    # --- its own faults ---

    def _watcher_fault(self, message: str) -> None:
        self.app.emit("alarm", client="", alarm="director fault", message=message)

    def _task_died(self, death: Death) -> None:
        self.app.emit("alarm", client="", alarm="director fault", message=death.message)

    def _give_up(self, death: Death) -> None:
        self.gave_up.set()

    def _loop_blocked(self, seconds: float) -> None:
        """The loop woke far too late. If the detector found the whole director stopped,
        that alarm says it already; else the loop alone was blocked (detection went on)."""
        if seconds <= self.live.timing.offline_after:
            log.warning("the event loop was blocked for %.2f s", seconds)
            return
        # Both woke together if the whole process was stopped: give the detector's
        # thread a few of its ticks to say so first.
        wait = 4 * self.live.detector.check_every + 0.02
        asyncio.get_running_loop().call_later(wait, self._judge_block, seconds)

    def _judge_block(self, seconds: float) -> None:
        if self.live.stalled_within(seconds + 1.0):
            return  # the whole director was stopped: that alarm is raised already
        self.app.emit(
            "alarm",
            client="",
            alarm="director stalled",
            message=f"the director's event loop was blocked for {seconds:.1f} s: decisions, "
            "OSC and the page waited (heartbeats were still judged as they arrived). "
            "See the director's log for what ran",
        )

    def placement_for(self, agent: str) -> Placement:
        assert self.backup is not None
        return Placement(
            epoch=self.backup.epoch,
            interval=self.show.detection.heartbeat_interval,
            placement={p: b for p, b in self.backup.placement.items() if p != b},
            plays=self.backup.plays(agent),
            checks=self.show.checks_for(agent),
        )

    def _would_take_over(self, name: str) -> bool:
        return self.backup is not None and self.backup.wants_takeover(name)

    async def _client_offline(self, name: str, guard: Guard | None) -> None:
        assert self.backup is not None
        await self.backup.client_offline(name, guard)

    async def _client_failed(self, name: str, guard: Guard | None) -> None:
        assert self.backup is not None
        await self.backup.client_failed(name, guard)

    def _maybe_retry(self, event: Event) -> None:
        """A client online or recovered, or a backup freed: an automatic takeover that waited
        may go."""
        if self.backup is None or not self.backup.waiting:
            return
        if event.kind in ("client.online", "client.recovered", "backup.moved"):
            task = asyncio.get_running_loop().create_task(
                self.backup.retry_waiting(), name="retry automatic takeovers"
            )
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

    def _persist(self, event: Event) -> None:
        self.store.append(event)  # never waits: the event log has its own path

    def _store_alarm(self, alarm: str, message: str) -> None:
        self.app.emit("alarm", client="", alarm=alarm, message=message)

    def _remember_online(self, event: Event) -> None:
        """A client seen online is remembered: after a restart, its silence is a failure."""
        name = event.fields.get("client")
        if event.kind != "client.online" or name in self._seen:
            return
        self._seen.add(str(name))
        if self._saving_seen is None:  # one write at a time, of the newest set: not one each
            self._saving_seen = asyncio.get_running_loop().create_task(
                self._save_seen(), name="remember clients seen"
            )
            self._retries.add(self._saving_seen)
            self._saving_seen.add_done_callback(self._retries.discard)

    async def _save_seen(self) -> None:
        """Write the set of clients seen until it stops growing: 500 clients coming online
        at a first start are a handful of writes behind the decisions, not 500 fsyncs."""
        try:
            written = 0
            while len(self._seen) != written:
                written = len(self._seen)  # the set only grows
                await self.store.remember_seen(set(self._seen))
        except Exception as exc:
            log.error("could not remember the clients seen online: %s", exc)
        finally:
            self._saving_seen = None


def _call_text(call: dict) -> str:
    """An action as it was called: `Console.Send(address='/eos/cue/91/fire')`."""
    args = ", ".join(f"{k}={v!r}" for k, v in (call.get("args") or {}).items())
    return f"{call['action']}({args})" if args else str(call["action"])


def _changed_keys(old: BaseModel, new: BaseModel) -> list[str]:
    """The fields whose values differ, in the model's order."""
    if old.__dict__ == new.__dict__:  # the common case, at C speed: 10,000 clients on a reload
        return []
    return [key for key in type(new).model_fields if getattr(old, key) != getattr(new, key)]


class CannotListen(Exception):
    """A port the show names is taken: say which, and what to change."""


@contextlib.asynccontextmanager
async def _listening(bind: str, port: int, key: str) -> AsyncIterator[None]:
    try:
        yield
    except OSError as exc:
        raise CannotListen(
            f"cannot listen on {bind}:{port} (director.{key}): {exc.strerror or exc}. "
            f"Another director may be running here: stop it, or give this show another "
            f"director.{key} (or pxcontrol run --{key.replace('_', '-')} N)"
        ) from None


async def run_director(
    loaded: LoadedShow,
    stop: asyncio.Event,
    state_dir: Path | None = None,
    on_started: Callable[[Director], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    watch: bool = True,
    ports: dict[str, int | None] | None = None,
    as_name: str | None = None,
) -> Director:
    """Run a show until `stop` is set, then stop modules and close sockets in order.

    `ports` may override the show's heartbeat_port, osc_port and http_port.
    """
    director = Director(loaded, state_dir, **(ports or {}), as_name=as_name)
    if on_event is not None:
        director.app.events.listen(on_event)
    try:
        await director.start()
        if watch:
            director.watch()
        if on_started is not None:
            on_started(director)
        stopping = asyncio.ensure_future(stop.wait())
        failing = asyncio.ensure_future(director.gave_up.wait())
        try:
            await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            failing.cancel()
    finally:
        await director.stop()
    return director


def stop_on_signals(stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM end the show cleanly: modules stopped, sockets closed.

    Windows' Proactor loop has no add_signal_handler: there Python's own handlers take
    Ctrl-C (SIGINT, also what NSSM sends to stop a service) and Ctrl-Break (SIGBREAK) and
    pass them to the loop, which a signal wakes (it listens on a wake-up socket).
    """
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, *_WINDOWS_ONLY_SIGNALS):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows' Proactor loop
            signal.signal(sig, lambda _sig, _frame: loop.call_soon_threadsafe(stop.set))


_WINDOWS_ONLY_SIGNALS = (signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ()
