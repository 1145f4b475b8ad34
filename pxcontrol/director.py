"""The director: a running show with its live systems, backup manager, mappings and state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from pydantic import BaseModel

from pxcontrol.app import App, LoadedShow, load_show_async
from pxcontrol.backup import BackupManager
from pxcontrol.detection import ClientState
from pxcontrol.events import Event
from pxcontrol.heartbeat import Placement
from pxcontrol.live import LiveSystems
from pxcontrol.mapping import MappingRunner, mappings_of
from pxcontrol.osc_bridge import OscBridge
from pxcontrol.problems import Severity, ShowInvalid
from pxcontrol.reload import ShowWatcher
from pxcontrol.state import StateStore
from pxcontrol.status import ShowStatus, snapshot
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
    ) -> None:
        self.loaded = loaded
        self.app = App(loaded)
        self.store = StateStore((state_dir or default_state_dir(loaded.path)) / "state.sqlite")
        show = loaded.show
        secret = show.director.secret.encode() if show.director.secret else None
        self.live = LiveSystems(
            show, self.app.emit, self._client_offline, secret, clock, self._would_take_over
        )
        self.backup: BackupManager | None = None
        self.mappings = MappingRunner(self.app, mappings_of(show))
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

    @property
    def show(self):
        return self.loaded.show

    async def start(self) -> None:
        saved = await self.store.open()
        self.app.events.restore(saved.events)
        self.app.events.listen(self._persist)
        self.app.events.listen(self._maybe_retry)
        self.backup = BackupManager(
            self.show, saved, self.store, self.live.state, self.app.emit, self.live.announce
        )
        self.mappings.attach()
        await self.app.start()
        director = self.show.director
        bind = str(director.bind)
        port = director.heartbeat_port if self._heartbeat_port is None else self._heartbeat_port
        async with _listening(bind, port, "heartbeat_port"):
            self.live.on_newer_epoch = self.backup.catch_up
            await self.live.start(bind, port, self.placement_for, self.backup.epoch)
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
        if moved:
            self._restored_check = asyncio.get_running_loop().create_task(
                self._check_restored(moved), name="check restored takeovers"
            )

    async def _check_restored(self, moved: dict[str, str]) -> None:
        """Outputs restored onto a backup that nobody hears: say so, once the backup had
        the time to come online."""
        timing = self.live.timing
        await asyncio.sleep(timing.offline_after + timing.online_after)
        assert self.backup is not None
        for playout, backup in moved.items():
            if self.backup.plays_on(playout) != backup:
                continue  # moved since
            if self.live.state(backup) is not ClientState.ONLINE:
                self.app.emit(
                    "alarm",
                    client=backup,
                    alarm="backup lost",
                    message=f"backup {backup} plays the outputs of {playout} (restored at "
                    f"start) but is {self.live.state(backup)}: check it, or move "
                    f"{playout}'s outputs",
                )

    def watch(self) -> ShowWatcher:
        """Pick up saved edits of the show file and its modules folder from now on."""
        self.watcher = ShowWatcher(self.loaded.path, self.reload, self._report_refusal)
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
                self._refusal = f"{self.loaded.path}: error: {refusal}"
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
        if later:
            parts.append("restart the director to apply: " + ", ".join(later))
        return "; ".join(parts)

    async def stop(self) -> None:
        if self._restored_check is not None:
            self._restored_check.cancel()
        await self.web.stop()  # first: open pages hear that the director stops
        if self.watcher is not None:
            await self.watcher.stop()
        await self.osc.stop()
        await self.live.stop()
        await cancel_and_wait(self._retries)
        await cancel_and_wait(self.mappings.running, timeout=2.0)
        await self.app.stop()
        await self.store.close()

    def status(self) -> ShowStatus:
        """The operator's view of the show now: OSC, the web page and the CLI show this."""
        return snapshot(self)

    def placement_for(self, agent: str) -> Placement:
        assert self.backup is not None
        return Placement(
            epoch=self.backup.epoch,
            interval=self.show.detection.heartbeat_interval,
            placement={p: b for p, b in self.backup.placement.items() if p != b},
            plays=self.backup.plays(agent),
        )

    def _would_take_over(self, name: str) -> bool:
        return self.backup is not None and self.backup.wants_takeover(name)

    async def _client_offline(self, name: str, eligible: bool, why_not: str) -> None:
        assert self.backup is not None
        await self.backup.client_offline(name, eligible, why_not)

    def _maybe_retry(self, event: Event) -> None:
        """A client online, or a backup freed: an automatic takeover that waited may go."""
        if self.backup is None or not self.backup.waiting:
            return
        if event.kind in ("client.online", "backup.moved"):
            task = asyncio.get_running_loop().create_task(
                self.backup.retry_waiting(), name="retry automatic takeovers"
            )
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)

    def _persist(self, event: Event) -> None:
        self.store.append(event).add_done_callback(_log_failure)


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


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("could not write the event log: %s", future.exception())


async def run_director(
    loaded: LoadedShow,
    stop: asyncio.Event,
    state_dir: Path | None = None,
    on_started: Callable[[Director], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    watch: bool = True,
    ports: dict[str, int | None] | None = None,
) -> Director:
    """Run a show until `stop` is set, then stop modules and close sockets in order.

    `ports` may override the show's heartbeat_port, osc_port and http_port.
    """
    director = Director(loaded, state_dir, **(ports or {}))
    if on_event is not None:
        director.app.events.listen(on_event)
    try:
        await director.start()
        if watch:
            director.watch()
        if on_started is not None:
            on_started(director)
        await stop.wait()
    finally:
        await director.stop()
    return director


def stop_on_signals(stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM end the show cleanly: modules stopped, sockets closed."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
