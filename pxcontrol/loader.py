"""Reading a show file: TOML syntax, then structure, each problem with its file and line."""

from __future__ import annotations

import re
import tomllib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from pxcontrol.problems import Problem, Severity, ShowInvalid, did_you_mean, key_text
from pxcontrol.show import ClientDecl, ShowFile
from pxcontrol.toml_lines import key_lines, line_of

SHOW_FILE = "show.toml"
DEMO_SHOW = Path(__file__).parent / "demo" / SHOW_FILE

Path_ = Sequence[str | int]


def resolve_show_path(arg: str | Path | None) -> Path:
    """A show is a folder with show.toml, or the file itself; none given means ./show.toml or the demo."""
    if arg is None:
        here = Path.cwd() / SHOW_FILE
        return here if here.is_file() else DEMO_SHOW
    path = Path(arg)
    return path / SHOW_FILE if path.is_dir() else path


@dataclass
class Reporter:
    """Collects problems against one show file, finding each key's line."""

    file: Path
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def error(self, path: Path_, message: str, hint: str = "", details: str = "") -> None:
        self._add(path, message, hint, Severity.ERROR, details)

    def warning(self, path: Path_, message: str, hint: str = "") -> None:
        self._add(path, message, hint, Severity.WARNING, "")

    def _add(self, path: Path_, message: str, hint: str, severity: Severity, details: str) -> None:
        line = line_of(self.lines, path) if path else None
        self.problems.append(
            Problem(self.file, line, key_text(path), message, hint, severity, details)
        )

    @property
    def has_errors(self) -> bool:
        return any(p.severity is Severity.ERROR for p in self.problems)


@dataclass
class ShowSource:
    path: Path
    text: str
    data: dict[str, Any]
    lines: dict[tuple[str | int, ...], int]

    def reporter(self) -> Reporter:
        return Reporter(self.path, self.lines)


def read_show(path: Path) -> ShowSource:
    """The parsed TOML of a show file, or ShowInvalid saying why it cannot be read."""
    try:
        if path.is_dir():
            hint = f"name the show folder ({path.parent}) or a .toml file, not a folder"
            raise ShowInvalid([Problem(path, None, "", "this is a folder, not a show file", hint)])
        if path.exists() and not path.is_file():  # a pipe or a device would block the read
            raise ShowInvalid([Problem(path, None, "", "this is not a regular file")])
        raw = path.read_bytes()
    except FileNotFoundError:
        hint = f"create {path}, or name another show: a folder with show.toml, or the .toml file"
        raise ShowInvalid([Problem(path, None, "", "no show file here", hint)]) from None
    except OSError as exc:
        message = f"cannot read the show file: {exc.strerror or exc}"
        raise ShowInvalid([Problem(path, None, "", message)]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ShowInvalid(
            [
                Problem(
                    path,
                    line,
                    "",
                    f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {column}",
                    "save the file as UTF-8 (most editors: 'Save with encoding')",
                )
            ]
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        line = int(found.group(1)) if found else None
        column = f", column {found.group(2)}" if found else ""
        where, hint = syntax_hint(message, text, line)
        if where != line:
            column = f" (noticed at line {line}{column})"
        raise ShowInvalid(
            [Problem(path, where, "", f"TOML syntax error{column}: {message}", hint)]
        ) from None
    except RecursionError:
        raise ShowInvalid([_too_deep(path, text)]) from None
    try:
        lines = key_lines(text)
    except RecursionError:
        raise ShowInvalid([_too_deep(path, text)]) from None
    return ShowSource(path=path, text=text, data=data, lines=lines)


#: Nesting past this depth is where the error's line points (the readers recurse per level).
NESTING_LIMIT = 100


def _too_deep(path: Path, text: str) -> Problem:
    """A show nested too deep for the TOML reader, with the line where it went past the limit."""
    depth = 0
    line = None
    for number, row in enumerate(text.splitlines(), 1):
        for char in row:
            depth += char in "[{"
            depth -= char in "]}"
            if depth > NESTING_LIMIT:
                line = number
                break
        if line is not None:
            break
    return Problem(
        path,
        line,
        "",
        "arrays or inline tables are nested too deep to read",
        "a show needs a few levels at most: look for a run of '[' or '{' that never closes",
    )


_OPENS = {"array": ("[", "]", "list"), "inline table": ("{", "}", "inline table")}


def syntax_hint(message: str, text: str, line: int | None) -> tuple[int | None, str]:
    """Where a TOML syntax error really is, and what to change there.

    tomllib notices an unclosed list only where the next thing starts (often a table
    two lines on); the line to fix is the one that opened it.
    """
    rows = text.splitlines()
    unclosed = re.match(r"Unclosed (array|inline table)", message)
    if unclosed and line is not None:
        opening, closing, what = _OPENS[unclosed.group(1)]
        for number in range(min(line, len(rows)), 0, -1):
            row = _without_strings(rows[number - 1])
            if row.count(opening) > row.count(closing) and "=" in row:
                return number, (
                    f"the {what} opened on this line with {opening!r} is not closed: end it "
                    f"with {closing!r}" + ("" if number == line else f" before line {line}")
                )
    if "Illegal character '\\n'" in message or "Unterminated string" in message:
        return line, 'a text value is not closed: end it with " on the same line'
    if message.startswith(("Expected newline or end of document", "Invalid value")):
        return line, (
            'text needs quotes (ip = "10.0.0.11", name = "Playout 1"), and each key = value '
            "is a line of its own"
        )
    if message.startswith("Expected '=' after a key"):
        return line, 'write key = value, e.g. port = 9990 (a name with spaces in quotes: "My Key")'
    if message.startswith(("Cannot declare", "Cannot overwrite", "Cannot mutate")):
        return line, "this key or table is set twice in the file: keep one of them"
    return line, "fix the syntax on that line (quotes around text, '=' between key and value)"


def _without_strings(row: str) -> str:
    """A line of TOML with its quoted strings and comment taken out (for counting brackets)."""
    row = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', '""', row)
    return row.split("#", 1)[0]


def parse_structure(source: ShowSource, report: Reporter) -> ShowFile:
    """The show's tables and keys as models; problems go to `report`.

    When parts are invalid, the valid parts are still returned, so the rules
    can check them too and the user sees every problem in one pass.
    """
    try:
        return _validate(source.data)
    except ValidationError as exc:
        report_validation_error(report, exc, source.data, ShowFile)
    valid: dict[str, Any] = {}
    places: dict[str, list[int]] = {}  # where each entry kept is in the file
    for key, value in source.data.items():
        if key not in ShowFile.model_fields:
            continue
        if isinstance(value, list):
            places[key] = [i for i, item in enumerate(value) if _is_valid({key: [item]})]
            valid[key] = [value[i] for i in places[key]]
        elif isinstance(value, dict) and key == "modules":
            valid[key] = {k: v for k, v in value.items() if _is_valid({key: {k: v}})}
        elif _is_valid({key: value}):
            valid[key] = value
    return ShowFile.model_validate(valid).left_out(places)


#: Lists longer than this are validated an entry at a time (see _validate).
VALIDATE_APART = 64


def _validate(data: dict[str, Any]) -> ShowFile:
    """ShowFile.model_validate, with a long client list validated one client at a time first.

    One validation call holds the GIL for its whole length: for 10,000 clients a
    third of a second in which the director's loop cannot run, though the reload
    loads in a thread. Between clients the loop gets its turn. Any client that is
    invalid leaves the whole validation to find it, with its place in the file.
    """
    clients = data.get("clients")
    if isinstance(clients, list) and len(clients) > VALIDATE_APART:
        try:
            checked = [ClientDecl.model_validate(c) for c in clients]
        except ValidationError:
            return ShowFile.model_validate(data)
        return ShowFile.model_validate({**data, "clients": checked})
    return ShowFile.model_validate(data)


def _is_valid(piece: dict[str, Any]) -> bool:
    try:
        ShowFile.model_validate(piece)
    except ValidationError:
        return False
    return True


def report_validation_error(
    report: Reporter,
    error: ValidationError,
    data: Any,
    model: type[BaseModel],
    prefix: Path_ = (),
) -> None:
    """Turn pydantic's errors into problems in the show's own words."""
    report_errors(report, error.errors(include_url=False), data, model, prefix)


def report_errors(
    report: Reporter,
    items: Sequence[Any],
    data: Any,
    model: type[BaseModel],
    prefix: Path_ = (),
) -> None:
    for item in items:
        path = (*prefix, *_data_path(data, item["loc"]))
        kind = item["type"]
        if kind == "extra_forbidden":
            allowed = _fields_at(model, path[len(prefix) : -1])
            hint = did_you_mean(str(path[-1]), allowed)
            if allowed:
                hint = (hint + " " if hint else "") + "allowed here: " + ", ".join(allowed)
            report.error(path, f"unknown key {path[-1]!r}", hint)
        elif kind == "missing":
            report.error(path, "required key is missing", f"add {path[-1]} = ...")
        else:
            message = item["msg"].removeprefix("Value error, ")
            got = item.get("input")
            if not isinstance(got, dict | list):
                message += f" (got {got!r})"
            report.error(path, message, _type_hint(kind, path))


def _type_hint(kind: str, path: Path_) -> str:
    """What to write instead, for a value of the wrong shape."""
    key = str(path[-1]) if path and isinstance(path[-1], str) else "key"
    if kind == "dict_type":
        if key == "args":
            return 'args is a table of the action\'s parameters by name: args = { message = "…" }'
        return f"write a table: {key} = {{ name = value, … }}"
    if kind == "list_type":
        return f"write a list: {key} = [ … ]"
    if kind == "string_type":
        return f'text goes in quotes: {key} = "…"'
    return ""


def _data_path(data: Any, loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """pydantic's error location with its own markers (union branches, validators) taken out."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif not isinstance(node, dict | list) or isinstance(part, int):
            continue
        elif "[" in str(part) or "-" in str(part):
            continue  # a pydantic marker such as 'function-before[...]'
        else:
            path.append(part)  # a key that is missing or unknown
            node = None
    return tuple(path)


def _fields_at(model: type[BaseModel], path: Path_) -> list[str]:
    """The keys a table at `path` may hold, for 'allowed here' hints."""
    annotation: Any = model
    for part in path:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(str(part))
            if info is None:
                return []
            annotation = info.annotation
        elif typing.get_origin(annotation) in (list, dict):
            annotation = typing.get_args(annotation)[-1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation
