"""The plugin manager: default plugins, installed ones (entry points), a show's drop-in files."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import itertools
import os
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pluggy

from pxcontrol import essential, hookspecs
from pxcontrol.threads import TookTooLong, call_in_thread, original

ENTRY_POINT_GROUP = "pxcontrol"
#: Comma-separated distribution or entry-point names to load; empty loads none.
#: Unset loads every installed plugin. The test suite sets it empty so a stray
#: installed plugin never changes a result.
LOAD_PLUGINS_ENV = "PXCONTROL_LOAD_PLUGINS"

#: Shipped in the same wheel and registered by name, always (they have no entry points):
#: the types and check kinds every show can count on.
DEFAULT_PLUGINS = (
    "pxcontrol_log",
    "pxcontrol_osc",
    "pxcontrol_udp",
    "pxcontrol_tcp",
    "pxcontrol_http",
    "pxcontrol_videohub",
    "pxcontrol_mpv",
)


@dataclass(frozen=True)
class PluginProblem:
    """A plugin or drop-in file that could not be loaded; the others still were."""

    source: str
    message: str
    details: str = ""
    line: int | None = None  # in the drop-in file, where there is one


def make_plugin_manager() -> tuple[pluggy.PluginManager, list[PluginProblem]]:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    pm.register(essential, name="pxcontrol.essential")  # cannot be disabled
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    return pm, load_entry_points(pm)


def hook_order(hook: pluggy.HookCaller) -> list[pluggy.HookImpl]:
    """A hook's implementations in the order pluggy itself would call them (tryfirst first).

    The runtime calls each one separately so one failing plugin cannot stop the others.
    """
    return list(reversed(hook.get_hookimpls()))


def load_entry_points(pm: pluggy.PluginManager) -> list[PluginProblem]:
    wanted = os.environ.get(LOAD_PLUGINS_ENV)
    names = None if wanted is None else {_norm(n) for n in wanted.split(",") if n.strip()}
    problems = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = _norm(ep.dist.name) if ep.dist else ""
        if names is not None and _norm(ep.name) not in names and dist not in names:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:
            problems.append(
                PluginProblem(
                    source=f"plugin {ep.name!r} ({ep.value})",
                    message=f"could not be loaded: {type(exc).__name__}: {exc}",
                    details=traceback.format_exc(),
                )
            )
    return problems


_dropin_counter = itertools.count(1)

#: A drop-in file's import must end within this (s); a slow SDK import fits, a blocking call does not.
DROPIN_IMPORT_TIMEOUT = 10.0


class DropinCache:
    """Drop-in files already imported, by content: a reload re-imports only what changed.

    Reusing the module object keeps its classes the same objects, so a module
    instance whose file did not change is recognised as unchanged. A file whose
    import did not finish in time is remembered too: it is not imported again
    (another thread that never ends) until its content changes.
    """

    def __init__(self) -> None:
        self._modules: dict[Path, tuple[bytes, ModuleType]] = {}
        self._hung: dict[Path, tuple[bytes, PluginProblem]] = {}

    def get(self, path: Path, digest: bytes) -> ModuleType | None:
        found = self._modules.get(path)
        return found[1] if found and found[0] == digest else None

    def put(self, path: Path, digest: bytes, module: ModuleType) -> None:
        self._modules[path] = (digest, module)

    def hung(self, path: Path, digest: bytes) -> PluginProblem | None:
        found = self._hung.get(path)
        return found[1] if found and found[0] == digest else None

    def put_hung(self, path: Path, digest: bytes, problem: PluginProblem) -> None:
        self._hung[path] = (digest, problem)


def load_dropins(
    pm: pluggy.PluginManager, folder: Path, cache: DropinCache | None = None
) -> list[PluginProblem]:
    """Register every `*.py` file in a show's modules folder; a broken file is reported, not fatal.

    Each file is imported in a thread of its own under DROPIN_IMPORT_TIMEOUT, so a
    file that blocks at import (or raises anything, SystemExit included) is a
    problem that names it, and the other files still load.
    """
    problems = []
    if not folder.is_dir():
        return problems
    cache = cache if cache is not None else DropinCache()
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith(("_", ".")):
            continue
        try:
            module = _import_cached(path, cache)
        except _NotLoaded as not_loaded:
            problems.append(not_loaded.problem)
            continue
        unmarked = [
            name
            for name in _hook_names()
            if callable(getattr(module, name, None))
            and not hasattr(getattr(module, name), "pxcontrol_impl")
        ]
        if unmarked:  # without the mark pluggy ignores them: the types would just be missing
            problems.append(
                PluginProblem(
                    source=str(path),
                    message=f"defines {', '.join(unmarked)} without @hookimpl, so pxcontrol "
                    "does not call it: put @hookimpl (from pxcontrol import hookimpl) above it",
                )
            )
        try:
            pm.register(module, name=str(path))
            pm.check_pending()  # a misspelt hook name would otherwise be ignored in silence
        except pluggy.PluginValidationError as exc:
            if pm.is_registered(module):
                pm.unregister(module)
            problems.append(
                PluginProblem(
                    source=str(path),
                    message=f"has a hook pxcontrol does not know: {exc}",
                    details="hooks: " + ", ".join(_hook_names()) + " (see docs/hooks.md)",
                )
            )
    return problems


class _NotLoaded(Exception):
    def __init__(self, problem: PluginProblem) -> None:
        self.problem = problem


def _import_cached(path: Path, cache: DropinCache) -> ModuleType:
    try:
        digest = hashlib.sha256(path.read_bytes()).digest()
    except OSError as exc:
        raise _NotLoaded(
            PluginProblem(str(path), f"could not be read: {exc.strerror or exc}")
        ) from None
    module = cache.get(path, digest)
    if module is not None:
        return module
    hung = cache.hung(path, digest)
    if hung is not None:  # the same content again: it would only hang again
        raise _NotLoaded(hung)
    limit = DROPIN_IMPORT_TIMEOUT
    try:
        module = call_in_thread(_import_file, path, limit=limit, name=f"import {path.name}")
    except TookTooLong as late:
        frame = late.last_frame_in({str(path.resolve()), str(path)})
        where = f" (it was at line {frame.lineno}: {frame.line})" if frame and frame.line else ""
        problem = PluginProblem(
            source=str(path),
            message=f"did not finish importing within {limit:g} s{where}. A drop-in must not "
            "block at import: connect to devices in start(), not at the top of the file. Its "
            "import thread cannot be stopped and is abandoned (restart the director to end "
            "it); the file is not imported again until it changes",
            line=frame.lineno if frame else None,
        )
        cache.put_hung(path, digest, problem)
        raise _NotLoaded(problem) from None
    except Exception as exc:
        raised = original(exc)
        raise _NotLoaded(
            PluginProblem(
                source=str(path),
                message=f"could not be loaded: {type(raised).__name__}: {raised}",
                details=_traceback_in(path, raised),
                line=_line_in(path, raised),
            )
        ) from None
    cache.put(path, digest, module)
    return module


def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "pxcontrol_spec")]


def _import_file(path: Path) -> ModuleType:
    # A fresh name per load: a reload imports the new code without disturbing
    # classes that the running show still uses from the old one.
    stem = re.sub(r"\W", "_", path.stem)
    name = f"pxcontrol_dropin_{stem}_{next(_dropin_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python module: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _line_in(path: Path, exc: BaseException) -> int | None:
    """The line of the user's file where `exc` was raised (or its syntax error is)."""
    if (
        isinstance(exc, SyntaxError)
        and exc.filename
        and Path(exc.filename).resolve() == path.resolve()
    ):
        return exc.lineno
    here = path.resolve()
    lines = [
        f.lineno
        for f in traceback.extract_tb(exc.__traceback__)
        if Path(f.filename).resolve() == here
    ]
    return lines[-1] if lines else None


def _traceback_in(path: Path, exc: BaseException) -> str:
    """The traceback from the first frame in the user's file: our own import machinery is noise."""
    frames = traceback.extract_tb(exc.__traceback__)
    here = path.resolve()
    start = next((i for i, f in enumerate(frames) if Path(f.filename).resolve() == here), None)
    if start is None:  # a SyntaxError: no frame ran in the file; the message has its line
        return "".join(traceback.format_exception_only(type(exc), exc))
    lines = traceback.format_list(frames[start:])
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()
