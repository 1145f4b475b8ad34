"""The application object: the one caller of plugin hooks, the owner of modules and events."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from pydantic import ValidationError

from pxcontrol.actions import ActionSpec, describe_validation_error
from pxcontrol.catalog import Catalog, DuplicateModuleType
from pxcontrol.events import Event, EventLog
from pxcontrol.loader import parse_structure, read_show
from pxcontrol.module import Module, ModuleStatus
from pxcontrol.plugins import PluginProblem, load_dropins, make_plugin_manager
from pxcontrol.problems import Problem, Severity, ShowInvalid
from pxcontrol.rules import check_show
from pxcontrol.show import ACTION_REF, ShowFile
from pxcontrol.tasks import cancel_and_wait

log = logging.getLogger("pxcontrol")

MODULE_START_TIMEOUT = 5.0
MODULE_STOP_TIMEOUT = 3.0
OBSERVER_TIMEOUT = 2.0


@dataclass
class LoadedShow:
    """A show that passed every check, with the plugins and module types it was checked against."""

    path: Path
    show: ShowFile
    pm: pluggy.PluginManager
    catalog: Catalog
    warnings: list[Problem] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.path.parent


def collect_module_types(pm: pluggy.PluginManager) -> Catalog:
    """Ask each plugin for its module types, so each type knows the plugin it came from."""
    catalog = Catalog()
    for impl in pm.hook.register_module_types.get_hookimpls():

        def register(cls: type[Module], name: str | None = None, _plugin: str = impl.plugin_name):
            catalog.register(cls, _plugin, name)

        impl.function(register=register)
    return catalog


def load_show(path: Path) -> LoadedShow:
    """Read, parse and check a show with its drop-in modules; ShowInvalid lists every problem."""
    source = read_show(path)
    report = source.reporter()
    show = parse_structure(source, report)
    pm, problems = make_plugin_manager()
    problems += load_dropins(pm, path.parent / "modules")
    for problem in problems:
        report.problems.append(_plugin_problem(problem))
    try:
        catalog = collect_module_types(pm)
    except (DuplicateModuleType, TypeError) as exc:
        report.error((), str(exc))
        raise ShowInvalid(report.problems) from None
    check_show(show, catalog, report, source.data)
    if report.has_errors:
        raise ShowInvalid(report.problems)
    return LoadedShow(path=path, show=show, pm=pm, catalog=catalog, warnings=report.problems)


def _plugin_problem(problem: PluginProblem) -> Problem:
    # A broken file nobody uses should not stop the show; a type that is used
    # and missing is reported as an unknown type, with this warning next to it.
    return Problem(
        file=Path(problem.source) if problem.source.endswith(".py") else None,
        line=None,
        key="",
        message=problem.message,
        hint="fix the file; the other modules loaded",
        severity=Severity.WARNING,
        details=problem.details,
    )


@dataclass
class ActionRecord:
    """One action call, for the event log and the web page."""

    action: str
    args: dict[str, Any]
    source: str
    started: float
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

    @property
    def show(self) -> ShowFile:
        return self.loaded.show

    @property
    def pm(self) -> pluggy.PluginManager:
        return self.loaded.pm

    # --- lifecycle ---

    async def start(self, only: set[str] | None = None) -> None:
        """Create and start the show's modules (or `only` those named); a failing one is reported."""
        for name, decl in self.show.modules.items():
            if only is not None and name not in only:
                continue
            mtype = self.loaded.catalog.types[decl.type]
            settings = mtype.cls.Settings.model_validate(decl.settings)
            self.modules[name] = mtype.cls(name, settings, host=self)
        await asyncio.gather(*(self._start_module(m) for m in self.modules.values()))

    async def _start_module(self, module: Module) -> None:
        try:
            await asyncio.wait_for(module.start(), MODULE_START_TIMEOUT)
        except TimeoutError:
            module.set_status(
                ModuleStatus.CONNECTION_FAILURE,
                f"start() took longer than {MODULE_START_TIMEOUT} s",
            )
        except Exception as exc:
            log.exception("module %s failed to start", module.name)
            module.set_status(ModuleStatus.UNKNOWN_ERROR, f"start failed: {exc}")

    async def stop(self) -> None:
        modules, self.modules = list(self.modules.values()), {}
        await asyncio.gather(*(self._stop_module(m) for m in modules))
        await cancel_and_wait(self._background)

    async def _stop_module(self, module: Module) -> None:
        try:
            await asyncio.wait_for(module.stop(), MODULE_STOP_TIMEOUT)
        except Exception:
            log.exception("module %s did not stop cleanly", module.name)
        await module.stop_tasks()

    # --- actions ---

    async def call(self, ref: str, /, **args: Any) -> ActionRecord:
        """Run `Module.Action` with keyword arguments; never raises, the record says how it went."""
        return await self.run_action(ref, args)

    async def run_action(
        self,
        ref: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        source: str = "api",
    ) -> ActionRecord:
        record = ActionRecord(action=ref, args=dict(args or {}), source=source, started=time.time())
        began = time.perf_counter()
        try:
            module, spec = self.resolve(ref)
            kwargs = spec.validate(record.args)
        except (LookupError, ValidationError) as exc:
            message = (
                f"wrong arguments for {ref}: {describe_validation_error(exc)}"
                if isinstance(exc, ValidationError)
                else str(exc.args[0] if exc.args else exc)
            )
            return self._finish(record, began, error=message)
        limit = timeout or spec.timeout or self.show.director.action_timeout
        method = getattr(module, spec.method)
        task = asyncio.get_running_loop().create_task(method(**kwargs), name=ref)
        # Not wait_for: an action that swallows its cancellation must not hold the caller.
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:
            task.cancel()
            self._keep(task)
            return self._finish(record, began, error=f"{ref} timed out after {limit:g} s")
        if task.exception() is not None:
            exc = task.exception()
            log.debug("action %s raised", ref, exc_info=exc)
            text = str(exc) or type(exc).__name__
            return self._finish(record, began, error=f"{ref} failed: {text}")
        return self._finish(record, began, result=task.result())

    def resolve(self, ref: str) -> tuple[Module, ActionSpec]:
        """The running module and action for `Module.Action`; LookupError says what is wrong."""
        match = ACTION_REF.match(ref)
        if match is None:
            raise LookupError(f"{ref!r} is not an action: write it as ModuleName.ActionName")
        module_name, action_name = match.groups()
        module = self.modules.get(module_name)
        if module is None:
            known = ", ".join(self.modules) or "none"
            raise LookupError(f"{ref}: no module {module_name!r} is running (modules: {known})")
        spec = module.actions.get(action_name)
        if spec is None:
            known = ", ".join(module.actions) or "none"
            raise LookupError(f"{ref}: {module_name} has no action {action_name!r} ({known})")
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
            log.warning("%s", error)
            self.emit("action.failed", action=record.action, message=error, source=record.source)
        return record

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_forget_result)

    # --- events ---

    def emit(self, kind: str, /, fields: Mapping[str, Any] | None = None, **more: Any) -> Event:
        """Record an event and let every plugin observe it, without waiting for them."""
        event = self.events.add(kind, {**(fields or {}), **more})
        impls = self.pm.hook.observe_event.get_hookimpls()
        if impls:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            for impl in impls:
                try:
                    result = impl.function(event=event)
                except Exception:
                    log.exception("plugin %s failed observing %s", impl.plugin_name, kind)
                    continue
                if inspect.isawaitable(result) and loop is not None:
                    self._keep(loop.create_task(_observe(result, impl.plugin_name)))
        return event

    # ModuleHost

    def status_changed(self, module: Module) -> None:
        self.emit(
            "module.status",
            module=module.name,
            status=str(module.status),
            message=module.status_message,
        )


async def _observe(awaitable: Any, plugin: str) -> None:
    try:
        await asyncio.wait_for(awaitable, OBSERVER_TIMEOUT)
    except Exception:
        log.exception("plugin %s failed observing an event", plugin)


def _forget_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("late failure of %s: %r", task.get_name(), task.exception())
