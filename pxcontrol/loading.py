"""Loading a show: its file read and checked against the plugins and module types it needs.

What comes out, a LoadedShow, is a show that passed every check; what does not pass is
ShowInvalid with every problem at once, by file, line and key. The director loads in a
thread (`load_show_async`) under a time limit, so a reload never holds its event loop.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from pxcontrol.catalog import Catalog, DuplicateModuleType
from pxcontrol.checks.kinds import CheckKindError, collect_check_kinds
from pxcontrol.loader import Reporter, parse_structure, read_show
from pxcontrol.module import Module
from pxcontrol.plugins import (
    DropinCache,
    PluginProblem,
    load_dropins,
    make_plugin_manager,
)
from pxcontrol.problems import Problem, Severity, ShowInvalid
from pxcontrol.rules import check_show
from pxcontrol.show import ShowFile
from pxcontrol.threads import TookTooLong, call_in_thread, in_thread

log = logging.getLogger("pxcontrol")


@dataclass
class LoadedShow:
    """A show that passed every check, with the plugins and module types it was checked against."""

    path: Path
    show: ShowFile
    pm: pluggy.PluginManager
    catalog: Catalog
    warnings: list[Problem] = field(default_factory=list)
    dropins: DropinCache = field(default_factory=DropinCache)
    #: Each key's line in the file ("clients", 0, "ip") → 12, for what is said of it later.
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)

    def where(self, key: tuple[str | int, ...]) -> str:
        """`show.toml:12` for a key of the file; a key the file leaves out is placed at the
        table that would hold it (the file alone when there is none)."""
        while key and key not in self.lines:
            key = key[:-1]
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else str(self.path)

    @property
    def folder(self) -> Path:
        return self.path.parent


class PluginError(Exception):
    """A plugin's registration failed; the message names the plugin and what to change."""

    def __init__(self, message: str, file: Path | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.file = file  # a drop-in's file, where the failure was in one
        self.line = line


def collect_module_types(pm: pluggy.PluginManager) -> Catalog:
    """Ask each plugin for its module types, so each type knows the plugin it came from."""
    catalog = Catalog()
    for impl in pm.hook.register_module_types.get_hookimpls():  # registration order

        def register(cls: type[Module], name: str | None = None, _plugin: str = impl.plugin_name):
            catalog.register(cls, _plugin, name)

        try:
            result = impl.function(register=register)
        except DuplicateModuleType as exc:
            raise PluginError(str(exc)) from None
        except BaseException as exc:  # SystemExit from a plugin must not end the director
            file = inspect.getsourcefile(impl.function)
            lines = [
                f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == file
            ]
            dropin = file is not None and impl.plugin_name.endswith(".py")
            raise PluginError(
                f"plugin {impl.plugin_name!r} failed to register its module types: "
                f"{type(exc).__name__}: {exc}",
                Path(file) if dropin and file else None,
                lines[-1] if dropin and lines else None,
            ) from None
        if inspect.iscoroutine(result):
            result.close()  # never awaited: say why instead of a RuntimeWarning
        if inspect.isawaitable(result):
            raise PluginError(
                f"plugin {impl.plugin_name!r}: register_module_types must be a plain 'def', "
                "not 'async def': it runs once at load, before anything starts"
            )
    return catalog


def load_show(path: Path, dropins: DropinCache | None = None) -> LoadedShow:
    """Read, parse and check a show with its drop-in modules; ShowInvalid lists every problem.

    Pass the running show's DropinCache when reloading, so unchanged drop-in
    files are not imported again. Whatever goes wrong (a file nested too deep, a
    plugin that raises SystemExit) is a ShowInvalid naming the file; nothing
    else comes out of here.
    """
    try:
        return _load_show(path, dropins)
    except ShowInvalid:
        raise
    except BaseException as exc:
        if (
            isinstance(exc, KeyboardInterrupt)
            and threading.current_thread() is threading.main_thread()
        ):
            raise  # Ctrl-C at the command line; a drop-in's own raise comes in a thread
        log.debug("loading %s failed", path, exc_info=exc)
        raise ShowInvalid([_unexpected(path, exc)]) from None


def _load_show(path: Path, dropins: DropinCache | None) -> LoadedShow:
    source = read_show(path)
    report = source.reporter()
    show = parse_structure(source, report)
    pm, problems = make_plugin_manager()
    dropins = dropins if dropins is not None else DropinCache()
    problems += load_dropins(pm, path.parent / "modules", dropins)
    for problem in problems:
        report.problems.append(_plugin_problem(problem))
    try:
        catalog = collect_module_types(pm)
        catalog.check_kinds = collect_check_kinds(pm)
    except CheckKindError as exc:
        report.problems.append(Problem(path, None, "", str(exc)))
        raise ShowInvalid(report.problems) from None
    except PluginError as exc:
        report.problems.append(Problem(exc.file or path, exc.line, "", str(exc)))
        raise ShowInvalid(report.problems) from None
    check_show(show, catalog, report, source.data)
    if not report.has_errors:
        _check_modules_can_be_made(show, catalog, report)
    if report.has_errors:
        raise ShowInvalid(report.problems)
    show.index_clients()
    return LoadedShow(path, show, pm, catalog, report.problems, dropins, source.lines)


def _check_modules_can_be_made(show: ShowFile, catalog: Catalog, report: Reporter) -> None:
    """Make each module once, as the director will (its __init__, not start()): a module
    type whose constructor raises is refused here, before anything of the show changes."""
    for name, decl in show.modules.items():
        mtype = catalog.types[decl.type]
        try:
            mtype.cls(name, mtype.cls.Settings.model_validate(decl.settings))
        except BaseException as exc:  # SystemExit from a module must not end the director
            file = inspect.getsourcefile(mtype.cls)
            lines = [
                f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == file
            ]
            where = f" ({file}:{lines[-1]})" if file and lines else ""
            report.error(
                ("modules", name),
                f"{mtype.cls.__name__}(...) could not be made{where}: {type(exc).__name__}: {exc}",
                "keep __init__ to its signature (self, name, settings, host=None) and "
                "super().__init__(...); connect to the device in start()",
            )


def _unexpected(path: Path, exc: BaseException) -> Problem:
    """A failure the checks did not foresee, said with the file (a drop-in's, if it was in one)."""
    frames = traceback.extract_tb(exc.__traceback__)
    modules = (path.parent / "modules").resolve()
    mine = [f for f in frames if Path(f.filename).resolve().parent == modules]
    where = Path(mine[-1].filename) if mine else path
    return Problem(
        where,
        mine[-1].lineno if mine else None,
        "",
        f"the show could not be loaded: {type(exc).__name__}: {exc}",
        "fix that file; the director's log has the traceback" if mine else "",
    )


#: Loading a show, drop-in imports included, must end within this (s) at start and at reload.
LOAD_TIMEOUT = 60.0


def load_show_within(path: Path, dropins: DropinCache | None = None) -> LoadedShow:
    """load_show in a thread under LOAD_TIMEOUT: a file that blocks is a ShowInvalid naming it."""
    try:
        return call_in_thread(load_show, path, dropins, limit=LOAD_TIMEOUT, name="load show")
    except TookTooLong as late:
        raise ShowInvalid([_too_long(path, late)]) from None


async def load_show_async(path: Path, dropins: DropinCache | None = None) -> LoadedShow:
    """load_show_within for the event loop: the loop runs on while the show loads."""
    try:
        with _collection_paused():
            return await in_thread(load_show, path, dropins, limit=LOAD_TIMEOUT, name="load show")
    except TookTooLong as late:
        raise ShowInvalid([_too_long(path, late)]) from None


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """No garbage collection while a show loads in its thread.

    A collection is one pass with the GIL held, so the event loop cannot run
    meanwhile. Loading 10,000 clients sets off full collections (70-250 ms each
    over the whole heap), so collection pauses while the show loads. Collecting
    the young objects it made once collection resumes takes 40-90 ms at 10,000
    clients: that is left as it is. Freezing the heap instead (gc.freeze) would
    keep every cycle made before it for ever, a slow leak over a long show's many
    reloads; heartbeats keep their kernel arrival time through such a pause.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _too_long(path: Path, late: TookTooLong) -> Problem:
    modules = (path.parent / "modules").resolve()
    mine = [f for f in late.stack if Path(f.filename).resolve().parent == modules]
    frame = mine[-1] if mine else None
    doing = f" (it was at line {frame.lineno}: {frame.line})" if frame and frame.line else ""
    return Problem(
        Path(frame.filename) if frame else path,
        frame.lineno if frame else None,
        "",
        f"loading the show did not finish within {late.limit:g} s{doing}; the show was not "
        "changed. The loading thread cannot be stopped and is abandoned: restart the director "
        "to end it",
        "look for a call that blocks (a device, a network or a file that does not answer)",
    )


def _plugin_problem(problem: PluginProblem) -> Problem:
    # A broken file nobody uses should not stop the show; a type that is used
    # and missing is reported as an unknown type, with this warning next to it.
    return Problem(
        file=Path(problem.source) if problem.source.endswith(".py") else None,
        line=problem.line,
        key="",
        message=problem.message,
        hint="fix the file; the other modules loaded",
        severity=Severity.WARNING,
        details=problem.details,
    )
