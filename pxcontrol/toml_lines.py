"""Line numbers for the key paths of a TOML document.

`tomllib` gives values but no positions, yet a validation error is only useful
to an operator if it names a line of `show.toml`. So the text (which tomllib
has already accepted) is scanned once more, just far enough to learn where
every key, table and array element starts. Paths have the same shape as the
data tomllib returns, so a pydantic error `loc` can be looked up directly.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Sequence

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Numbers, booleans and dates never contain these, and a date may contain a space.
_SCALAR = re.compile(r"[^,\]}#\r\n]+")
_BLANK = re.compile(r"(?:[ \t\r\n]|#[^\n]*)*")
_WS = re.compile(r"[ \t]*")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class _Malformed(Exception):
    """The text is not the TOML we expected; stop and keep what was found."""


class _Scanner:
    """A cursor over the text that records each path's line as it passes it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 1 if text.startswith("\ufeff") else 0
        self.lines: dict[KeyPath, int] = {}
        self._newlines = [m.start() for m in re.finditer("\n", text)]
        # `[[a]]` headers name arrays without indices, so count each array's
        # elements to know which one a later `[[a]]` or `[a.b]` refers to.
        self._array_sizes: dict[KeyPath, int] = {}

    def line(self) -> int:
        return bisect.bisect_left(self._newlines, self.pos) + 1

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def expect(self, token: str) -> None:
        if not self.text.startswith(token, self.pos):
            raise _Malformed(f"expected {token!r} at offset {self.pos}")
        self.pos += len(token)

    def skip(self, pattern: re.Pattern[str]) -> None:
        match = pattern.match(self.text, self.pos)
        assert match is not None  # both patterns also match the empty string
        self.pos = match.end()

    def document(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip(_BLANK)
            if self.pos >= len(self.text):
                return
            if self.peek() == "[":
                table = self.header()
            else:
                self.key_value(table)
            self.skip(_WS)
            if self.peek() not in ("#", "\r", "\n", ""):
                raise _Malformed(f"junk after statement at offset {self.pos}")

    def header(self) -> KeyPath:
        """Resolve `[a.b]` / `[[a.b]]` to a concrete path, indices included."""
        line = self.line()
        is_array = self.peek(2) == "[["
        self.pos += 2 if is_array else 1
        parts = self.key()
        self.expect("]]" if is_array else "]")
        path: KeyPath = ()
        for part in parts[:-1]:
            path += (part,)
            self.lines.setdefault(path, line)  # an implicitly created super-table
            if path in self._array_sizes:  # `[a.b]` after `[[a]]` means a's last element
                path += (self._array_sizes[path] - 1,)
        path += (parts[-1],)
        if is_array:
            self.lines.setdefault(path, line)  # the array is where it first appears
            index = self._array_sizes.get(path, 0)
            self._array_sizes[path] = index + 1
            path += (index,)
        # An explicit header wins over an earlier implicit mention of the table.
        self.lines[path] = line
        return path

    def key_value(self, table: KeyPath) -> None:
        line = self.line()
        parts = self.key()
        for n in range(1, len(parts)):  # `a.b.c = 1` also creates tables a and a.b
            self.lines.setdefault(table + tuple(parts[:n]), line)
        self.expect("=")
        self.skip(_WS)
        self.value(table + tuple(parts))

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip(_WS)
            if self.peek() in ('"', "'"):
                parts.append(self.string())
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if match is None:
                    raise _Malformed(f"expected a key at offset {self.pos}")
                parts.append(match.group())
                self.pos = match.end()
            self.skip(_WS)
            if self.peek() != ".":
                return parts
            self.pos += 1

    def value(self, path: KeyPath) -> None:
        # A value always starts on its key's line, so this is the key's line too.
        self.lines[path] = self.line()
        first = self.peek()
        if first == "[":
            self.sequence("]", lambda index: self.value((*path, index)))
        elif first == "{":
            self.sequence("}", lambda _: self.key_value(path))
        elif first in ('"', "'"):
            self.string()
        else:
            match = _SCALAR.match(self.text, self.pos)
            if match is None:
                raise _Malformed(f"expected a value at offset {self.pos}")
            self.pos = match.end()

    def sequence(self, close: str, item: Callable[[int], None]) -> None:
        """Scan `[...]` or `{...}` leniently: newlines, comments, trailing comma."""
        self.pos += 1
        for index in itertools.count():
            self.skip(_BLANK)
            if self.peek() == close:
                break
            item(index)
            self.skip(_BLANK)
            if self.peek() != ",":
                break
            self.pos += 1
        self.expect(close)

    def string(self) -> str:
        """Skip any of the four string kinds; decode it, as a quoted key needs.

        Only the kinds a key may use (single-line) are decoded faithfully.
        """
        text, quote = self.text, self.text[self.pos]
        delimiter = quote * 3 if text.startswith(quote * 3, self.pos) else quote
        self.pos += len(delimiter)
        out: list[str] = []
        while True:
            char = text[self.pos]  # IndexError on an unterminated string
            if text.startswith(delimiter, self.pos):
                run = len(delimiter)
                while len(delimiter) == 3 and run < 5 and text.startswith(quote, self.pos + run):
                    run += 1  # `"""a"""""` ends with two quotes of content
                self.pos += run
                return "".join(out)
            if quote == '"' and char == "\\":
                escape = text[self.pos + 1]
                if escape in ("u", "U"):
                    width = 4 if escape == "u" else 8
                    out.append(chr(int(text[self.pos + 2 : self.pos + 2 + width], 16)))
                    self.pos += 2 + width
                else:  # includes a multi-line string's line-ending backslash
                    out.append(_ESCAPES.get(escape, ""))
                    self.pos += 2
                continue
            out.append(char)
            self.pos += 1


def key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Map every key path in a TOML document to the 1-based line where it is written.

    Tables map to their header, array-of-tables elements to their `[[...]]`
    header, keys to their `key = value` line and array elements to the line
    where the element starts. Never raises: the caller only wants a better
    message, so on text it does not understand it returns what it found so far.
    """
    scanner = _Scanner(text)
    try:
        scanner.document()
    except (_Malformed, IndexError, ValueError, RecursionError):
        pass
    return scanner.lines


def line_of(lines: dict[tuple[str | int, ...], int], path: Sequence[str | int]) -> int | None:
    """The line of `path`, or of its longest prefix that has one; None if nothing matches.

    Validation errors may point below anything written in the file (a missing
    key, or a union member's name), so the nearest written ancestor is the best
    place to send the reader.
    """
    key = tuple(path)
    for end in range(len(key), 0, -1):
        line = lines.get(key[:end])
        if line is not None:
            return line
    return None
