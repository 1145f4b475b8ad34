"""Problems in a show: where (file, line, key), what is wrong, what to change."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    file: Path | None
    line: int | None
    key: str
    message: str
    hint: str = ""
    severity: Severity = Severity.ERROR
    details: str = ""

    @property
    def where(self) -> str:
        place = str(self.file) if self.file else "<show>"
        if self.line is not None:
            place += f":{self.line}"
        return place

    def __str__(self) -> str:
        head = f"{self.where}: {self.severity}: "
        if self.key:
            head += f"{self.key}: "
        text = head + self.message
        if self.hint:
            text += f"\n    → {self.hint}"
        if self.details:
            text += "\n" + "".join(f"    {line}\n" for line in self.details.rstrip().splitlines())
        return text


class ShowInvalid(Exception):
    """The show cannot run as written. Carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity is Severity.ERROR]
        super().__init__(f"{len(errors)} problem(s) in the show:\n" + "\n".join(map(str, errors)))


def key_text(path: Sequence[str | int]) -> str:
    """`("clients", 1, "gpu")` → `clients[1].gpu`, as a TOML reader thinks of it."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    options = list(dict.fromkeys(candidates))
    close = get_close_matches(word, options, n=3, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in options}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return ""
