"""The application object: the owner of modules, their actions and the events."""

from __future__ import annotations

import asyncio
import inspect
import linecache
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
from pydantic import ValidationError

from pxcontrol.actions import ActionSpec, describe_validation_error
from pxcontrol.deadlines import Deadlines
from pxcontrol.events import Event, EventLog
from pxcontrol.loading import LoadedShow
from pxcontrol.module import Backoff, Module, ModuleStatus
from pxcontrol.observers import Observers
from pxcontrol.problems import did_you_mean
from pxcontrol.show import ACTION_REF, ShowFile
from pxcontrol.tasks import cancel_and_wait
from pxcontrol.threads import Escaped

log = logging.getLogger("pxcontrol")
#: An action that fails is a warning in the director's log; `pxcontrol call` prints it itself.
action_log = logging.getLogger("pxcontrol.actions")

MODULE_START_TIMEOUT = 5.0
#: One step of a module's start() that holds the event loop longer than this (s) raises an alarm.
BLOCKING_STEP = 0.25
MODULE_STOP_TIMEOUT = 3.0


@dataclass
class ActionRecord:
    """One action call, for the event log and the web page."""

    action: str
    args: dict[str, Any]
    source: str
    started: float
    on: str = ""  # the event kind of the mapping that ran it; "" when no mapping did
    ok: bool = False
    result: Any = None
    error: str = ""
    duration: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "args": self.args,
            "source": self.source,
            "started": self.started,
            "ok": self.ok,
            "result": self.result if _plain(self.result) else repr(self.result),
            "error": self.error,
            "duration": self.duration,
        }


@dataclass
class ModuleChanges:
    kept: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _unchanged(module: Module, decl: Any, loaded: LoadedShow) -> bool:
    mtype = loaded.catalog.types.get(decl.type)
    if mtype is None or type(module) is not mtype.cls:
        return False  # another type, or its code changed
    return module.settings == mtype.cls.Settings.model_validate(decl.settings)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


class App:
    """A running show: its modules, its events, and the calls made to its actions."""

    def __init__(self, loaded: LoadedShow) -> None:
        self.loaded = loaded
        self.events = EventLog()
        self.modules: dict[str, Module] = {}
        self.calls: deque[ActionRecord] = deque(maxlen=500)
        self.last_calls: dict[str, ActionRecord] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.observers = Observers(lambda: self.pm)
        self._starting: dict[str, asyncio.Task[None]] = {}  # modules whose start failed
        self._resolved: dict[str, tuple[Module, ActionSpec]] = {}
        self._deadlines = Deadlines()
        # Set by a director that may stand by: why no action may run now (None: they may).
        self.refusal: Callable[[], str | None] = lambda: None

    @property
    def show(self) -> ShowFile:
        return self.loaded.show

    @property
    def pm(self) -> pluggy.PluginManager:
        return self.loaded.pm

    # --- lifecycle ---

    async def start(self, only: set[str] | None = None) -> None:
        """Create and start the show's modules (or `only` those named); a failing one is reported."""
        for name in self.show.all_modules:
            if only is None or name in only:
                self.modules[name] = self._create(name, self.loaded)
        await asyncio.gather(*(self._start_module(m) for m in self.modules.values()))

    def _create(self, name: str, loaded: LoadedShow) -> Module:
        decl = loaded.show.all_modules[name]
        mtype = loaded.catalog.types[decl.type]
        settings = mtype.cls.Settings.model_validate(decl.settings)
        return mtype.cls(name, settings, host=self)

    async def apply(self, loaded: LoadedShow) -> ModuleChanges:
        """Swap in a new version of the show; only modules whose type, code or settings
        changed are restarted, so an unchanged device connection stays up."""
        self.loaded = loaded
        self._resolved.clear()  # no reference kept to a module that is stopped below
        changes = ModuleChanges()
        for name, module in list(self.modules.items()):
            decl = loaded.show.all_modules.get(name)
            if decl is None:
                changes.removed.append(name)
            elif _unchanged(module, decl, loaded):
                changes.kept.append(name)
                continue
            else:
                changes.restarted.append(name)
            await self._stop_module(self.modules.pop(name))
        fresh = [n for n in loaded.show.all_modules if n not in self.modules]
        changes.added = [n for n in fresh if n not in changes.restarted]
        for name in fresh:
            self.modules[name] = self._create(name, loaded)
        await asyncio.gather(*(self._start_module(self.modules[n]) for n in fresh))
        return changes

    async def _start_module(self, module: Module) -> None:
        """Start a module; if it fails, keep trying with backoff (the device may come up later)."""
        if await self._try_start(module, first=True):
            return
        task = asyncio.get_running_loop().create_task(
            self._keep_starting(module), name=f"start {module.name}"
        )
        self._starting[module.name] = task
        task.add_done_callback(lambda _: self._starting.pop(module.name, None))

    async def _try_start(self, module: Module, first: bool = False) -> bool:
        """One start() under MODULE_START_TIMEOUT; a start that hangs is abandoned, not awaited."""
        stepped = _Stepped(module.start())
        task = asyncio.get_running_loop().create_task(
            _await(stepped), name=f"start() of {module.name}"
        )
        try:
            await asyncio.wait({task}, timeout=MODULE_START_TIMEOUT)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if stepped.longest > BLOCKING_STEP:
            self._blocked_loop(module, stepped.longest)
        if not task.done():
            where = _where_waiting(stepped.coro, module)
            task.cancel()  # not waited for: a start() that swallows its cancellation holds nobody
            self._keep(task)
            message = f"start() did not finish within {MODULE_START_TIMEOUT:g} s ({where})"
            log.warning("module %s: %s; it is started again later", module.name, message)
            module.set_status(ModuleStatus.CONNECTION_FAILURE, message)
            return False
        exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
        if exc is None:
            return True
        if isinstance(exc, TimeoutError):  # its own time limit, on connecting say
            message = f"start failed: {str(exc) or 'timed out'}"
            module.set_status(ModuleStatus.CONNECTION_FAILURE, message)
        else:
            if first:
                log.error("module %s failed to start", module.name, exc_info=exc)
            module.set_status(
                ModuleStatus.UNKNOWN_ERROR, f"start failed: {str(exc) or type(exc).__name__}"
            )
        return False

    def _blocked_loop(self, module: Module, seconds: float) -> None:
        message = (
            f"start() of {module.name} ({_source_file(module)}) held the event loop for "
            f"{seconds:.2f} s in one go: meanwhile the director judged no heartbeat and could "
            "take over nothing. A blocking call (time.sleep, requests, a plain socket) belongs "
            "in asyncio.to_thread(...), or use its asyncio form (await asyncio.sleep, "
            "asyncio.open_connection)"
        )
        log.warning("%s", message)
        self.emit("alarm", client="", alarm="blocked loop", message=message, module=module.name)

    async def _keep_starting(self, module: Module) -> None:
        next_delay = Backoff().delays()
        while True:
            await asyncio.sleep(next_delay())
            await module.stop_tasks()  # whatever the failed start left behind
            if await self._try_start(module):
                self._starting.pop(module.name, None)  # its actions run from this moment
                log.info("module %s started", module.name)
                return

    async def stop(self) -> None:
        # Actions still running are answered now and ended before their modules stop.
        running = [run for run in self._deadlines.pending() if isinstance(run, _ActionRun)]
        for run in running:
            run.end("the show is stopping")
        self._deadlines.clear()
        await cancel_and_wait([run.task for run in running if run.task is not None])
        modules, self.modules = list(self.modules.values()), {}
        self._resolved.clear()
        await asyncio.gather(*(self._stop_module(m) for m in modules))
        await cancel_and_wait(self._background)
        await self.observers.close()

    async def _stop_module(self, module: Module) -> None:
        module.stopping = True  # what its connections say from now on is not news
        starting = self._starting.pop(module.name, None)
        if starting is not None:  # its start() never succeeded: there is nothing to stop()
            await cancel_and_wait([starting])
        else:
            try:
                await asyncio.wait_for(module.stop(), MODULE_STOP_TIMEOUT)
            except Exception:
                log.exception("module %s did not stop cleanly", module.name)
        await module.stop_tasks()

    # --- actions ---

    def run_action(
        self,
        ref: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        source: str = "api",
        on: str = "",
    ) -> asyncio.Future[ActionRecord]:
        """Start `Module.Action` now (from any code, synchronous included); await the
        future for its record. Never raises: the record says how it went."""
        outcome: asyncio.Future[ActionRecord] = asyncio.get_running_loop().create_future()

        def settle(record: ActionRecord) -> None:
            if not outcome.done():  # the caller may have given up waiting
                outcome.set_result(record)

        self.start_action(ref, args, timeout=timeout, source=source, on=on, then=settle)
        return outcome

    def start_action(
        self,
        ref: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        source: str = "api",
        on: str = "",
        then: Callable[[ActionRecord], None],
    ) -> None:
        """Start an action; `then(record)` is called once, when it ends, fails or times out.
        `source` says who ran it, for people; `on`, the event kind of the mapping that ran
        it ("" when no mapping did).

        The action runs in a task of its own under its time limit; the task itself
        calls `then` as it ends, so an answer (an OSC reply) costs no further loop
        round. A call that cannot start (unknown action, wrong arguments, module not
        running) calls `then` before this returns.
        """
        record = ActionRecord(
            action=ref, args=dict(args or {}), source=source, on=on, started=time.time()
        )
        began = time.perf_counter()
        if (standby := self.refusal()) is not None:
            _answer(then, self._finish(record, began, error=standby))
            return
        try:
            module, spec = self.resolve(ref)
            kwargs = spec.validate(record.args)
            if module.name in self._starting:
                raise LookupError(
                    f"{ref}: module {module.name} is not running ({module.status_message}); "
                    "its start is retried until the device answers"
                )
        except (LookupError, ValidationError) as exc:
            message = (
                f"wrong arguments for {ref}: {describe_validation_error(exc)}"
                if isinstance(exc, ValidationError)
                else str(exc.args[0] if exc.args else exc)
            )
            _answer(then, self._finish(record, began, error=message))
            return
        limit = timeout or spec.timeout or self.show.director.action_timeout
        run = _ActionRun(self, record, began, then)
        task = asyncio.get_running_loop().create_task(
            run.run(getattr(module, spec.method), kwargs), name=ref
        )
        run.task = task
        self._deadlines.add(run, limit, lambda: run.expire(limit))

    def resolve(self, ref: str) -> tuple[Module, ActionSpec]:
        """The running module and action for `Module.Action`; LookupError says what is wrong."""
        known = self._resolved.get(ref)
        if known is not None and self.modules.get(known[0].name) is known[0]:
            return known  # still the running module: a reload or restart makes a new one
        found = self._resolve(ref)
        if len(self._resolved) > 1024:
            self._resolved.clear()
        self._resolved[ref] = found
        return found

    def _resolve(self, ref: str) -> tuple[Module, ActionSpec]:
        match = ACTION_REF.match(ref)
        if match is None:
            raise LookupError(f"{ref!r} is not an action: write it as ModuleName.ActionName")
        module_name, action_name = match.groups()
        module = self.modules.get(module_name)
        if module is None:
            known = ", ".join(self.modules) or "none"
            hint = did_you_mean(module_name, self.modules)
            raise LookupError(
                f"{ref}: no module {module_name!r} is running (modules: {known})"
                + (f"; {hint}" if hint else "")
            )
        spec = module.actions.get(action_name)
        if spec is None:
            known = ", ".join(module.actions) or "none"
            hint = did_you_mean(action_name, module.actions)
            raise LookupError(
                f"{ref}: {module_name} has no action {action_name!r} ({known})"
                + (f"; {hint}" if hint else "")
            )
        return module, spec

    def _finish(
        self, record: ActionRecord, began: float, *, result: Any = None, error: str = ""
    ) -> ActionRecord:
        record.duration = time.perf_counter() - began
        record.ok = not error
        record.result = result
        record.error = error
        self.calls.append(record)
        self.last_calls[record.action] = record
        if error:
            action_log.warning("%s", error)
            self.emit(
                "action.failed",
                action=record.action,
                message=error,
                source=record.source,
                on=record.on,
            )
        return record

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_forget_result)

    # --- events ---

    def emit(self, kind: str, /, fields: Mapping[str, Any] | None = None, **more: Any) -> Event:
        """Record an event and let every plugin observe it, without waiting for them."""
        event = self.events.add(kind, {**(fields or {}), **more})
        self.observers.tell(event)
        return event

    # ModuleHost

    def status_changed(self, module: Module) -> None:
        self.emit(
            "module.status",
            module=module.name,
            status=str(module.status),
            message=module.status_message,
        )


class _ActionRun:
    """One action in flight: its task reports the outcome as it ends, or the deadline does."""

    __slots__ = ("answered", "app", "began", "record", "task", "then")

    def __init__(
        self, app: App, record: ActionRecord, began: float, then: Callable[[ActionRecord], None]
    ) -> None:
        self.app = app
        self.record = record
        self.began = began
        self.then = then
        self.task: asyncio.Task[Any] | None = None
        self.answered = False

    async def run(self, method: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> None:
        # Asked again as the task begins: a director paused in between may be out of charge.
        if (standby := self.app.refusal()) is not None:
            self._answer(error=standby)
            return
        try:
            result = await method(**kwargs)  # called here: a task ended unstarted leaves nothing
        except asyncio.CancelledError:
            self._answer(error=f"{self.record.action} was cancelled")
            raise
        except Exception as exc:
            if not self.answered:
                log.debug("action %s raised", self.record.action, exc_info=exc)
            self._answer(error=f"{self.record.action} failed: {str(exc) or type(exc).__name__}")
        else:
            self._answer(result=result)

    def end(self, why: str) -> None:
        """Answer now and cancel: the caller is not kept waiting for what follows."""
        if self.answered:
            return
        if self.task is not None:
            self.task.cancel()
        self._answer(error=f"{self.record.action} was cancelled: {why}")

    def expire(self, limit: float) -> None:
        if self.answered:
            return
        # Not waited for: an action that swallows its cancellation must not hold anyone.
        assert self.task is not None
        self.task.cancel()
        self.app._keep(self.task)
        self._answer(error=f"{self.record.action} timed out after {limit:g} s")

    def _answer(self, *, result: Any = None, error: str = "") -> None:
        if self.answered:
            return  # timed out before: the late outcome is not reported again
        self.answered = True
        self.app._deadlines.discard(self)
        _answer(self.then, self.app._finish(self.record, self.began, result=result, error=error))


def _answer(then: Callable[[ActionRecord], None], record: ActionRecord) -> None:
    try:
        then(record)
    except Exception:  # the caller's bug must not look like the action's failure
        log.exception("answering %s failed", record.action)


class _Stepped:
    """Awaits a coroutine and keeps the longest time one step of it held the event loop.

    A coroutine that makes a blocking call cannot be cut off by a timeout (the
    loop that would fire it is the one blocked); this at least says so after.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.longest = 0.0

    def __await__(self) -> Generator[Any, Any, Any]:
        value: Any = None
        error: BaseException | None = None
        while True:
            began = time.perf_counter()
            try:
                yielded = self.coro.throw(error) if error is not None else self.coro.send(value)
            except StopIteration as stop:
                return stop.value
            finally:
                self.longest = max(self.longest, time.perf_counter() - began)
            try:
                value, error = (yield yielded), None
            except GeneratorExit:
                self.coro.close()
                raise
            except BaseException as exc:  # cancellation goes on into the coroutine
                value, error = None, exc


async def _await(stepped: _Stepped) -> Any:
    try:
        return await stepped
    except (SystemExit, KeyboardInterrupt) as exc:  # from a module, not from Ctrl-C: a
        raise Escaped(exc) from exc  # task would pass them on and end the director


def _source_file(module: Module) -> str:
    """The file a module's type is written in (a drop-in's path, or the plugin's file)."""
    try:
        return inspect.getsourcefile(type(module)) or type(module).__module__
    except TypeError:
        return type(module).__module__


def _where_waiting(coro: Any, module: Module) -> str:
    """`file:line: code` where a suspended start() waits, in the module's own file if it can."""
    source = _source_file(module)
    frames = []
    while coro is not None and getattr(coro, "cr_frame", None) is not None:
        frames.append((coro.cr_frame.f_code.co_filename, coro.cr_frame.f_lineno))
        coro = coro.cr_await
    mine = [f for f in frames if f[0] == source]
    if not mine:
        return source
    filename, line = mine[-1]
    code = linecache.getline(filename, line).strip()
    return f"{filename}:{line}: {code}" if code else f"{filename}:{line}"


def _forget_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("late failure of %s: %r", task.get_name(), task.exception())
