"""Module types by the name a show uses, each with the plugin it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from pxcontrol.actions import ActionSpec
from pxcontrol.checks.kinds import CheckKinds
from pxcontrol.module import Module


@dataclass(frozen=True)
class ModuleType:
    name: str
    cls: type[Module]
    plugin: str

    @property
    def actions(self) -> dict[str, ActionSpec]:
        return self.cls.actions

    @property
    def description(self) -> str:
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""


class DuplicateModuleType(Exception):
    """A registration refused: two plugins with one type name (never silently renamed),
    or something that is not a Module class."""


@dataclass
class Catalog:
    types: dict[str, ModuleType] = field(default_factory=dict)
    check_kinds: CheckKinds = field(default_factory=CheckKinds)  # the agent's, for `check`

    def register(self, cls: type[Module], plugin: str, name: str | None = None) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Module)):
            raise DuplicateModuleType(
                f"plugin {plugin!r} registered {cls!r}, which is not a Module class"
            )
        type_name = name or cls.type_name or cls.__name__.lower()
        existing = self.types.get(type_name)
        if existing is not None:
            raise DuplicateModuleType(
                f"module type {type_name!r} is registered twice: by plugin {existing.plugin!r} "
                f"({existing.cls.__qualname__}) and by plugin {plugin!r} ({cls.__qualname__}). "
                f"Remove one, or register the second under another name: "
                f'register({cls.__name__}, name="{type_name}2")'
            )
        self.types[type_name] = ModuleType(name=type_name, cls=cls, plugin=plugin)

    def get(self, name: str) -> ModuleType | None:
        return self.types.get(name)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self.types.values(), key=lambda t: t.name))
