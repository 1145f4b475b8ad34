"""Actions: async methods of a module, whose signature is their schema.

The parameter model is built once from the method's signature, so the show
file, OSC, the web page and the CLI all validate a call the same way.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar, get_args, get_origin, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__pxcontrol_action__"
ACTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class _Options:
    name: str | None
    timeout: float | None


@dataclass(frozen=True)
class ActionSpec:
    """What a UI, the CLI and the show checker know about one action."""

    name: str
    method: str
    description: str
    params: type[BaseModel]
    timeout: float | None

    def schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()

    @cached_property
    def fields(self) -> tuple[str, ...]:
        """The parameters' names, in the method's order."""
        return tuple(self.params.model_fields)

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Validated keyword arguments for the method; raises pydantic's ValidationError."""
        fields = self.fields
        if not fields and not args:
            return {}  # nothing to check or fill in: the common call of a button's action
        model = self.params.model_validate(dict(args))
        return {field: getattr(model, field) for field in fields}


@overload
def action(func: F, /) -> F: ...
@overload
def action(*, name: str | None = None, timeout: float | None = None) -> Callable[[F], F]: ...


def action(
    func: F | None = None, /, *, name: str | None = None, timeout: float | None = None
) -> F | Callable[[F], F]:
    """Mark an async method of a Module as an action.

    The action's name is the method name in PascalCase (`switch_to_backup` →
    `SwitchToBackup`) unless `name` is given; `timeout` overrides the runtime's
    default time limit for this action.
    """

    def mark(f: F) -> F:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(
                f"@action {f.__qualname__} must be 'async def': actions run on the director's "
                "event loop and must never block it"
            )
        if name is not None and not ACTION_NAME.match(name):
            raise TypeError(f"@action name {name!r} must be a plain identifier such as 'Route'")
        setattr(f, _MARK, _Options(name=name, timeout=timeout))
        return f

    return mark(func) if func is not None else mark


def pascal_case(method_name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in method_name.split("_") if part)


def collect_actions(cls: type) -> dict[str, ActionSpec]:
    """Every action of a module class, by action name, including inherited ones."""
    found: dict[str, ActionSpec] = {}
    by_method: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for attr, func in vars(klass).items():
            options = getattr(func, _MARK, None)
            if options is None:
                continue
            spec = _spec_for(cls, attr, func, options)
            if attr in by_method:  # an override replaces the inherited action
                found.pop(by_method[attr], None)
            clash = found.get(spec.name)
            if clash is not None and clash.method != attr:
                raise TypeError(
                    f"{cls.__qualname__}: action name {spec.name!r} is declared twice, by "
                    f"{clash.method}() and {attr}(); give one of them @action(name=...)"
                )
            found[spec.name] = spec
            by_method[attr] = spec.name
    return found


def _spec_for(cls: type, attr: str, func: Callable[..., Any], options: _Options) -> ActionSpec:
    name = options.name or pascal_case(attr)
    signature = inspect.signature(func, eval_str=True)
    fields: dict[str, Any] = {}
    for index, param in enumerate(signature.parameters.values()):
        if index == 0:
            continue  # self
        where = f"{cls.__qualname__}.{attr}({param.name})"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{where}: actions take named parameters, not *args or **kwargs")
        if param.annotation is inspect.Parameter.empty:
            raise TypeError(f"{where}: give the parameter a type, e.g. '{param.name}: int'")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (param.annotation, default)
    params = create_model(  # type: ignore[call-overload]
        f"{cls.__name__}.{name}",
        __config__=ConfigDict(extra="forbid"),
        __doc__=inspect.getdoc(func) or "",
        **fields,
    )
    return ActionSpec(
        name=name,
        method=attr,
        description=(inspect.getdoc(func) or "").strip(),
        params=params,
        timeout=options.timeout,
    )


# --- arguments that arrive as text or as a flat list (OSC, CLI) ---


def arguments_from_list(spec: ActionSpec, values: Iterable[Any]) -> dict[str, Any]:
    """Fill an action's parameters from a flat list, as OSC and the CLI send them.

    Plain values fill parameters in order; a string `name=value` whose name is a
    parameter fills that one. Text for a non-string parameter is read as JSON
    when it parses (`[1, 2]`, `true`), else left for pydantic's own coercion.
    """
    names = spec.fields
    args: dict[str, Any] = {}
    position = 0
    for value in values:
        if isinstance(value, str):
            key, sep, text = value.partition("=")
            if sep and key in spec.params.model_fields:
                args[key] = _from_text(spec, key, text)
                continue
        while position < len(names) and names[position] in args:
            position += 1
        if position >= len(names):
            raise TooManyArguments(
                f"{spec.name} takes {len(names)} argument(s) ({', '.join(names) or 'none'}); "
                f"got one more: {value!r}"
            )
        key = names[position]
        args[key] = _from_text(spec, key, value) if isinstance(value, str) else value
        position += 1
    return args


class TooManyArguments(ValueError):
    pass


def _from_text(spec: ActionSpec, key: str, text: str) -> Any:
    annotation = spec.params.model_fields[key].annotation
    if _accepts_plain_text(annotation):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _accepts_plain_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    origin = get_origin(annotation)
    if origin is None:
        return False
    return any(arg is str for arg in get_args(annotation))


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, in the words of the action's parameters."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        if item["type"] == "extra_forbidden":
            parts.append(f"{where}: no such parameter")
        elif item["type"] == "missing":
            parts.append(f"{where}: required")
        else:
            parts.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(parts)
