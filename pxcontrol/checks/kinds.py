"""Check kinds by the key a show writes, each with the plugin it came from."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import pluggy

from pxcontrol.checks.kind import Check

BUILTIN = "pxcontrol"  # the plugin name of the built-in kinds


class CheckKindError(Exception):
    """A registration refused: two plugins with one kind name, or not a Check class."""


@dataclass(frozen=True)
class CheckKind:
    name: str
    cls: type[Check]
    plugin: str


@dataclass
class CheckKinds:
    kinds: dict[str, CheckKind] = field(default_factory=dict)

    def register(self, cls: type[Check], plugin: str, name: str | None = None) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Check)):
            raise CheckKindError(
                f"plugin {plugin!r} registered {cls!r} as a check kind, which is not a "
                "Check class (from pxcontrol.checks import Check)"
            )
        kind = name or cls.kind
        if not kind or kind not in cls.Settings.model_fields:
            raise CheckKindError(
                f"plugin {plugin!r}: check kind {cls.__qualname__} must set `kind` to the key "
                f"a show writes, and its Settings must have a field of that name (has: "
                f"{', '.join(cls.Settings.model_fields)})"
            )
        existing = self.kinds.get(kind)
        if existing is not None:
            raise CheckKindError(
                f"check kind {kind!r} is registered twice: by plugin {existing.plugin!r} "
                f"({existing.cls.__qualname__}) and by plugin {plugin!r} ({cls.__qualname__}). "
                "Remove one of them: a check must mean one thing"
            )
        self.kinds[kind] = CheckKind(kind, cls, plugin)

    def kind_of(self, declaration: dict[str, Any]) -> list[str]:
        """The kind keys a declaration names (exactly one in a valid one)."""
        return [key for key in declaration if key in self.kinds]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self.kinds))


def builtin_kinds() -> list[type[Check]]:
    from pxcontrol.checks.command import CommandCheck
    from pxcontrol.checks.figure import FigureCheck
    from pxcontrol.checks.http import HttpCheck
    from pxcontrol.checks.osc import OscCheck
    from pxcontrol.checks.process import ProcessCheck
    from pxcontrol.checks.tcp import TcpCheck

    return [ProcessCheck, TcpCheck, HttpCheck, OscCheck, CommandCheck, FigureCheck]


def collect_check_kinds(pm: pluggy.PluginManager) -> CheckKinds:
    """The built-in kinds, then each plugin's, so every kind knows the plugin it came from.

    Raises CheckKindError naming the plugin when a registration is refused or raises.
    """
    kinds = CheckKinds()
    for cls in builtin_kinds():
        kinds.register(cls, BUILTIN)
    for impl in pm.hook.register_check_kinds.get_hookimpls():

        def register(cls: type[Check], name: str | None = None, _plugin: str = impl.plugin_name):
            kinds.register(cls, _plugin, name)

        try:
            result = impl.function(register=register)
        except CheckKindError:
            raise
        except BaseException as exc:  # SystemExit from a plugin must not end the director
            raise CheckKindError(
                f"plugin {impl.plugin_name!r} failed to register its check kinds: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if inspect.iscoroutine(result):
            result.close()
            raise CheckKindError(
                f"plugin {impl.plugin_name!r}: register_check_kinds must be a plain 'def', "
                "not 'async def'"
            )
    return kinds
