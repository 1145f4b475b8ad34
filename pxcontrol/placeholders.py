"""Event fields in action arguments: `"{client}"`, `"Backup of {client} on {backup}"`.

A string that is exactly one placeholder takes the field's value as it is (a
list stays a list, a number a number); placeholders inside longer text are
replaced by the value as text. Other braces — JSON in an HTTP body — are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def fill(value: Any, fields: Mapping[str, Any]) -> Any:
    """`value` with the placeholders of known fields replaced, recursively."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole and whole.group(1) in fields:
            return fields[whole.group(1)]
        return PLACEHOLDER.sub(
            lambda m: _text(fields[m.group(1)]) if m.group(1) in fields else m.group(0), value
        )
    if isinstance(value, list):
        return [fill(v, fields) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, fields) for k, v in value.items()}
    return value


def names_in(value: Any) -> set[str]:
    """Every placeholder name used in `value`."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, list):
        return set().union(*(names_in(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(names_in(v) for v in value.values())) if value else set()
    return set()


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)
