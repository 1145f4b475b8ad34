"""Tests for pxcontrol.toml_lines: every key path of a show file maps to its line."""

from __future__ import annotations

import re
import textwrap
import tomllib
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from pxcontrol.toml_lines import key_lines, line_of

KeyPath = tuple[str | int, ...]
T = TypeVar("T")

SHOW = textwrap.dedent(
    """\
    [director]
    osc_port = 7400
    bind = "127.0.0.1"
    allow = ["127.0.0.1", "10.0.0.0/24"]

    [detection]
    offline_after = 0.5

    [[clients]]
    name = "Playout1"
    ip = "10.0.0.11"
    outputs = ["Output 1", "Output 2"]

    [[clients]]
    name = "Backup1"
    ip = "10.0.0.21"
    backup_for = ["10.0.0.11"]
    on_backup = ["VideoRouter.SwitchToBackup"]

    [modules.VideoRouter]
    type = "videohub"
    host = "10.0.0.50"

    [modules.Log]
    type = "log"

    [[mappings]]
    on = "backup.activated"
    client = "Playout1"
    do = [
      "Log.Entry",
      { action = "VideoRouter.Route", args = { output = 1, input = 5 } },
    ]
    """
)

SHOW_LINES: dict[KeyPath, int] = {
    ("director",): 1,
    ("director", "osc_port"): 2,
    ("director", "bind"): 3,
    ("director", "allow"): 4,
    ("director", "allow", 0): 4,
    ("director", "allow", 1): 4,
    ("detection",): 6,
    ("detection", "offline_after"): 7,
    ("clients",): 9,
    ("clients", 0): 9,
    ("clients", 0, "name"): 10,
    ("clients", 0, "ip"): 11,
    ("clients", 0, "outputs"): 12,
    ("clients", 0, "outputs", 1): 12,
    ("clients", 1): 14,
    ("clients", 1, "name"): 15,
    ("clients", 1, "ip"): 16,
    ("clients", 1, "backup_for"): 17,
    ("clients", 1, "backup_for", 0): 17,
    ("clients", 1, "on_backup"): 18,
    ("clients", 1, "on_backup", 0): 18,
    ("modules",): 20,
    ("modules", "VideoRouter"): 20,
    ("modules", "VideoRouter", "type"): 21,
    ("modules", "VideoRouter", "host"): 22,
    ("modules", "Log"): 24,
    ("modules", "Log", "type"): 25,
    ("mappings",): 27,
    ("mappings", 0): 27,
    ("mappings", 0, "on"): 28,
    ("mappings", 0, "client"): 29,
    ("mappings", 0, "do"): 30,
    ("mappings", 0, "do", 0): 31,
    ("mappings", 0, "do", 1): 32,
    ("mappings", 0, "do", 1, "action"): 32,
    ("mappings", 0, "do", 1, "args"): 32,
    ("mappings", 0, "do", 1, "args", "output"): 32,
    ("mappings", 0, "do", 1, "args", "input"): 32,
}


def all_paths(value: Any, prefix: KeyPath = ()) -> Iterator[KeyPath]:
    """Every node of tomllib's data, by the path a validation error would use."""
    children: Iterator[tuple[str | int, Any]]
    if isinstance(value, dict):
        children = iter(value.items())
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return
    for key, child in children:
        yield (*prefix, key)
        yield from all_paths(child, (*prefix, key))


def lines_of(text: str) -> dict[KeyPath, int]:
    """key_lines, after checking the fixture really is TOML and fully covered."""
    lines = key_lines(text)
    assert set(lines) == set(all_paths(tomllib.loads(text)))
    return lines


def test_show_file_lines() -> None:
    lines = lines_of(SHOW)
    assert {path: lines[path] for path in SHOW_LINES} == SHOW_LINES


def test_crlf_gives_the_same_lines() -> None:
    assert lines_of(SHOW.replace("\n", "\r\n")) == lines_of(SHOW)


def test_byte_order_mark_does_not_shift_lines() -> None:
    assert key_lines("\ufeff" + SHOW) == key_lines(SHOW)


@pytest.mark.parametrize(
    "tricky",
    [
        r'"br[ack]et # not = a, comment \"quoted\" \\"',
        r"'lit \ [x] # = , \"'",
        '"""\nmulti [[clients]]\n# not a comment\nkey = "x", \\""" ]\n"""',
        '"""ends with quotes\\\n   continued """""',
        "'''\n[[clients]]\nkey = 'x' # ] ,\n'''",
        "'''a ' b '' c''''",
        r'"\u00e9\U0001F600 \t"',
        '""',
        "''",
    ],
)
def test_strings_do_not_confuse_the_scanner(tricky: str) -> None:
    text = f"[t]\na = {tricky}\nb = [{tricky}, {tricky}]  # ] [ ,\nc = {{ d = {tricky} }}\ne = 1\n"
    lines = lines_of(text)
    a_lines = tricky.count("\n")
    assert lines[("t", "a")] == 2
    b = 3 + a_lines
    assert lines[("t", "b")] == lines[("t", "b", 0)] == b
    assert lines[("t", "b", 1)] == b + a_lines
    c = b + 2 * a_lines + 1
    assert lines[("t", "c")] == lines[("t", "c", "d")] == c
    assert lines[("t", "e")] == c + a_lines + 1


def test_quoted_and_dotted_keys() -> None:
    text = textwrap.dedent(
        """\
        ["a b".'c.d' . e]
        "x.y" = 1
        'lit' = 2
        "\\u00e9" = 3
        "" = 4
        site."google.com".up = true
        f . g = { h.i = 1, 'j' = [2] }
        [ spaced . "out" ]  # [not.a.header]
        k = 1979-05-27 07:32:00Z
        l = [inf, -nan, 1_000, 0x1F, 1e3, 07:32:00]
        m = 1  # [x] = "2", ]
        n = 2
        """
    )
    lines = lines_of(text)
    table = ("a b", "c.d", "e")
    assert lines[("a b",)] == lines[("a b", "c.d")] == lines[table] == 1
    assert lines[(*table, "x.y")] == 2
    assert lines[(*table, "lit")] == 3
    assert lines[(*table, "é")] == 4
    assert lines[(*table, "")] == 5
    assert lines[(*table, "site")] == lines[(*table, "site", "google.com", "up")] == 6
    assert lines[(*table, "f", "g", "h", "i")] == lines[(*table, "f", "g", "j", 0)] == 7
    assert lines[("spaced", "out")] == 8
    assert lines[("spaced", "out", "k")] == 9
    assert lines[("spaced", "out", "l", 5)] == 10
    assert lines[("spaced", "out", "m")] == 11
    assert lines[("spaced", "out", "n")] == 12


def test_nested_arrays_of_tables() -> None:
    text = textwrap.dedent(
        """\
        [[a]]
        x = 1
        [[a.b]]
        y = 1
        [[a]]
        [a.c]
        z = 1
        [[a.b]]
        [[a.b]]
        [a.b.d]
        w = 1
        [[a.b.e]]
        [[other]]
        """
    )
    lines = lines_of(text)
    assert lines[("a",)] == lines[("a", 0)] == 1
    assert lines[("a", 0, "x")] == 2
    assert lines[("a", 0, "b")] == lines[("a", 0, "b", 0)] == 3
    assert lines[("a", 0, "b", 0, "y")] == 4
    assert lines[("a", 1)] == 5
    assert lines[("a", 1, "c")] == 6
    assert lines[("a", 1, "c", "z")] == 7
    assert lines[("a", 1, "b")] == lines[("a", 1, "b", 0)] == 8
    assert lines[("a", 1, "b", 1)] == 9
    assert lines[("a", 1, "b", 1, "d")] == 10
    assert lines[("a", 1, "b", 1, "d", "w")] == 11
    assert lines[("a", 1, "b", 1, "e", 0)] == 12
    assert lines[("other", 0)] == 13


def test_explicit_table_header_wins_over_implicit_mention() -> None:
    lines = lines_of("[a.b]\nx = 1\n\n[a]\ny = 2\n")
    assert lines[("a",)] == 4
    assert lines[("a", "b")] == 1


def test_nested_and_multi_line_arrays() -> None:
    text = textwrap.dedent(
        """\
        routes = [[1, 2], [3, 4]]
        grid = [
          # a comment with ] and , and [
          [1,
           2],
          [
            { a = 1 },
          ],  # trailing
          "last"
        ]
        after = 1
        """
    )
    lines = lines_of(text)
    assert lines[("routes", 1)] == lines[("routes", 1, 0)] == 1
    assert lines[("grid",)] == 2
    assert lines[("grid", 0)] == lines[("grid", 0, 0)] == 4
    assert lines[("grid", 0, 1)] == 5
    assert lines[("grid", 1)] == 6
    assert lines[("grid", 1, 0)] == lines[("grid", 1, 0, "a")] == 7
    assert lines[("grid", 2)] == 9
    assert lines[("after",)] == 11


def test_line_of_falls_back_to_the_longest_known_prefix() -> None:
    lines = key_lines(SHOW)
    assert line_of(lines, ("modules", "VideoRouter", "host")) == 22
    assert line_of(lines, ("modules", "VideoRouter", "missing")) == 20
    assert line_of(lines, ["mappings", 0, "do", 1, "ActionCall", "args"]) == 32
    assert line_of(lines, ("clients", 5, "gpu")) == 9
    assert line_of(lines, ("nope", "x")) is None
    assert line_of(lines, ()) is None
    assert line_of({}, ("a",)) is None


@pytest.mark.parametrize(
    "text",
    [
        'a = 1\nb = "unterminated',
        "a = 1\n[b",
        "a = 1\nb = [1, 2",
        "a = 1\n= 2",
        "a = 1\nb =",
        'a = 1\n"\\uZZZZ" = 2',
        "a = 1\nb = " + "[" * 5000,
        "a = 1\nb = 2 c = 3",
    ],
)
def test_malformed_text_returns_what_was_found(text: str) -> None:
    assert key_lines(text)[("a",)] == 1


# --- property test: serialize random data in varied layouts, find every node again ---

KEYS = [
    "a",
    "b",
    "c_d",
    "x-y",
    "7",
    "with space",
    "dot.ted",
    'q"t',
    "h#sh",
    "e=q",
    "[br]",
    "",
    "é",
    "it's",
]
TEXT = st.text(alphabet="ab \"'\\#=,[]{}.\n\té", max_size=8)
VALUES = st.recursive(
    st.integers(-(10**6), 10**6) | TEXT,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4)
COMMENT = '  # ] [[x]] = "q" , \'\n'


class Writer:
    """Writes TOML with randomly chosen layouts, noting the line each path is written on."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.chunks: list[str] = []
        self.line = 1
        self.expected: dict[KeyPath, int] = {}
        self.key_texts: dict[KeyPath, str] = {}

    def choose(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def write(self, chunk: str) -> None:
        self.chunks.append(chunk)
        self.line += chunk.count("\n")

    def note_path(self, path: KeyPath, key_text: str) -> None:
        self.expected.setdefault(path, self.line)  # a dotted prefix is where it first appears
        self.key_texts.setdefault(path, key_text)

    def key(self, key: str) -> str:
        if re.fullmatch(r"[A-Za-z0-9_-]+", key) and self.choose([True, False]):
            return key
        if "'" not in key and self.choose([True, False]):
            return f"'{key}'"
        return self.basic(key)

    def basic(self, text: str) -> str:
        text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return '"' + text.replace("é", self.choose(["é", "\\u00e9", "\\U000000E9"])) + '"'

    def string(self, text: str) -> str:
        kinds = ["basic", "multi-basic"]
        if "'" not in text and "\n" not in text:
            kinds.append("literal")
        if "''" not in text:
            kinds.append("multi-literal")
        kind = self.choose(kinds)
        opening = "\n" if text.startswith(("\n", "'")) else self.choose(["", "\n"])
        if kind == "basic":
            return self.basic(text)
        if kind == "literal":
            return f"'{text}'"
        if kind == "multi-literal":
            return f"'''{opening}{text}'''"
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        return f'"""{opening}{escaped}"""'

    def value(self, path: KeyPath, value: Any) -> None:
        if isinstance(value, str):
            self.write(self.string(value))
        elif isinstance(value, int):
            forms = [str(value), f"{value:_}"] + (
                [f"0x{value:x}", f"+{value}"] if value >= 0 else []
            )
            self.write(self.choose(forms))
        elif isinstance(value, list):
            multi_line = self.choose([False, True])
            self.write("[")
            for index, element in enumerate(value):
                self.write(
                    self.choose(["\n  ", COMMENT + "  "]) if multi_line else ", " * bool(index)
                )
                self.expected[(*path, index)] = self.line
                self.value((*path, index), element)
                self.write("," if multi_line else "")
            self.write("\n]" if multi_line else "]")
        else:
            self.write(self.choose(["{", "{ "]))
            for index, (texts, full, inner) in enumerate(self.entries(path, value)):
                self.write(", " * bool(index))
                self.assign(path, texts, full, inner)
            self.write(self.choose(["}", " }"]))

    def entries(
        self, path: KeyPath, table: dict[str, Any], texts: tuple[str, ...] = ()
    ) -> Iterator[tuple[tuple[str, ...], KeyPath, Any]]:
        """Key/value pairs of `table`, each non-empty sub-table maybe spelled as dotted keys."""
        for key, value in table.items():
            key_texts, full = (*texts, self.key(key)), (*path, key)
            if isinstance(value, dict) and value and self.choose([False, True]):
                yield from self.entries(full, value, key_texts)
            else:
                yield key_texts, full, value

    def assign(self, table: KeyPath, texts: tuple[str, ...], full: KeyPath, value: Any) -> None:
        first = len(full) - len(texts)
        for depth, text in enumerate(texts, start=first + 1):
            self.note_path(full[:depth], text)
        self.write(self.choose([".", " . "]).join(texts) + self.choose([" = ", "=", " =\t"]))
        self.value(full, value)

    def section(self, path: KeyPath, table: dict[str, Any]) -> None:
        """A table's own key/values, then its sub-tables under headers."""
        inline: dict[str, Any] = {}
        headed: list[tuple[str, Any]] = []
        for key, value in table.items():
            tables = isinstance(value, dict) or (
                isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
            )
            if tables and self.choose([True, False]):
                headed.append((key, value))
            else:
                inline[key] = value
        for texts, full, value in self.entries(path, inline):
            self.assign(path, texts, full, value)
            self.write(self.choose(["\n", COMMENT]))
        for key, value in headed:
            full = (*path, key)
            self.write(self.choose(["", "\n"]))
            texts = [self.key(part) for part in full if isinstance(part, str)]
            header = self.choose([".", " . "]).join(texts)
            if isinstance(value, dict):
                self.note_path(full, texts[-1])
                self.write(self.choose(["[{}]\n", "[ {} ]\n", "[{}]" + COMMENT]).format(header))
                self.section(full, value)
                continue
            for index, element in enumerate(value):
                self.note_path(full, texts[-1])
                self.expected[(*full, index)] = self.line
                self.write(self.choose(["[[{}]]\n", "[[ {} ]]" + COMMENT]).format(header))
                self.section((*full, index), element)


@settings(max_examples=200, deadline=None)
@given(DOCUMENTS, st.data(), st.booleans())
def test_every_node_is_found_on_the_line_it_was_written(
    document: dict[str, Any], data: st.DataObject, crlf: bool
) -> None:
    writer = Writer(data)
    writer.section((), document)
    text = "".join(writer.chunks)
    if crlf:
        text = text.replace("\n", "\r\n")
    note(text)
    assert tomllib.loads(text) == document
    lines = key_lines(text)
    nodes = set(all_paths(document))
    assert set(lines) == nodes
    assert lines == {path: writer.expected[path] for path in nodes}
    physical = text.split("\n")
    for path, key_text in writer.key_texts.items():
        assert key_text in physical[lines[path] - 1]
