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

ENTRY_POINT_GROUP = "pxcontrol"
#: Comma-separated distribution or entry-point names to load; empty loads none.
#: Unset loads every installed plugin. The test suite sets it empty so a stray
#: installed plugin never changes a result.
LOAD_PLUGINS_ENV = "PXCONTROL_LOAD_PLUGINS"

#: Shipped in the same wheel and registered like any third-party plugin.
DEFAULT_PLUGINS = (
    "pxcontrol_log",
    "pxcontrol_osc",
    "pxcontrol_udp",
    "pxcontrol_tcp",
    "pxcontrol_http",
    "pxcontrol_videohub",
)


@dataclass(frozen=True)
class PluginProblem:
    """A plugin or drop-in file that could not be loaded; the others still were."""

    source: str
    message: str
    details: str = ""


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


class DropinCache:
    """Drop-in files already imported, by content: a reload re-imports only what changed.

    Reusing the module object keeps its classes the same objects, so a module
    instance whose file did not change is recognised as unchanged.
    """

    def __init__(self) -> None:
        self._modules: dict[Path, tuple[bytes, ModuleType]] = {}

    def get(self, path: Path, digest: bytes) -> ModuleType | None:
        found = self._modules.get(path)
        return found[1] if found and found[0] == digest else None

    def put(self, path: Path, digest: bytes, module: ModuleType) -> None:
        self._modules[path] = (digest, module)


def load_dropins(
    pm: pluggy.PluginManager, folder: Path, cache: DropinCache | None = None
) -> list[PluginProblem]:
    """Register every `*.py` file in a show's modules folder; a broken file is reported, not fatal."""
    problems = []
    if not folder.is_dir():
        return problems
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith(("_", ".")):
            continue
        try:
            digest = hashlib.sha256(path.read_bytes()).digest()
            module = cache.get(path, digest) if cache is not None else None
            if module is None:
                module = _import_file(path)
                if cache is not None:
                    cache.put(path, digest, module)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            problems.append(
                PluginProblem(
                    source=str(path),
                    message=f"could not be loaded: {type(exc).__name__}: {exc}",
                    details=_traceback_in(path, exc),
                )
            )
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
