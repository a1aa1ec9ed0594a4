"""The plain YAML of chain files read without PyYAML, exactly as PyYAML reads it, or not at all.

Importing PyYAML costs a new or edited chain's ``aicp validate`` about 10 ms
(its package loads every module and compiles its resolver's patterns), more
than the rest of the command's own work. Chain files use a small part of YAML:
block mappings and sequences, flow collections, plain and quoted one-line
scalars, literal and folded block scalars, comments. This module reads that part, written from the
YAML 1.1 specification, into the same data (values and types, as PyYAML's safe
loader resolves them) and the same positions (:func:`aicp._chain.yamlload.marks`:
where libyaml puts each node's start) as :mod:`aicp._chain.yamlload`.

It gives up (None) on anything that is not plainly that part, and the text
is then read by PyYAML as before, so every error and every refusal keeps its
words and position: anchors, aliases, tags, directives, document markers,
block scalars other than ``|``, ``|-``, ``>``, ``>-`` (a ``+``, an indentation
indicator, a comment after the header, an empty first line, lines of spaces
beyond the indentation, a folded line indented more), other multi-line
scalars, complex keys, tabs, carriage returns and
any character YAML does not take as it is; escapes other than ``\\\\ \\"
\\n \\t \\xXX \\uXXXX \\UXXXXXXXX``, or of a character refused above (a NUL,
a surrogate); a duplicate key, a key that is not a string; a plain scalar
whose YAML 1.1 type is not plainly a string, a short decimal integer or
float, a boolean or null (``0o7``, ``0x1f``, ``1_000``, ``16:9``, ``1e3``,
``.inf``, ``2024-01-01``, ``<<``, ``=``); a plain scalar holding ``: `` or
`` #`` where it is not a key or a comment; a root that is not a mapping, deep
nesting, a long text. ``tests/test_plainyaml.py`` holds it to PyYAML's result
on generated chain-like and hostile documents.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any

    Path = tuple[Any, ...]
    Marks = dict[Path, tuple[int, int]]

MAX_TEXT = 64 * 1024  # a bound on the work done here (chains are a few KiB); longer texts go to libyaml
_MAX_NESTING = 32  # well within the composer's limit (MAX_DEPTH): nothing near it is read here
_MAX_KEY = 1000  # libyaml refuses a simple key longer than 1024 characters

# every character outside YAML's printable set, and tabs, carriage returns, NEL and the line and
# paragraph separators (YAML 1.1 line breaks), byte-order marks: the text goes to PyYAML (the class of
# what is refused: the class of what is taken costs ~5 ms to compile)
_UNPLAIN = "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]"
# what starts a line that starts or ends a document, or a directive
_MARKERS = ("---", "...", "%")
_BOOLS = {"yes": True, "Yes": True, "YES": True, "no": False, "No": False, "NO": False,
          "true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
          "on": True, "On": True, "ON": True, "off": False, "Off": False, "OFF": False}
_NULLS = ("~", "null", "Null", "NULL")
# a node cannot start with these (indicators), or this module does not read what they start
_INDICATORS = "-?:,[]{}#&*!|>'\"%@`"
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}
_HEX = {"x": 2, "u": 4, "U": 8}  # the escapes of a character by its code, and their digits


class _Unplain(Exception):
    """The text is not plainly the part of YAML this module reads."""


def read(text: str, with_marks: bool = True) -> tuple[dict[str, Any], Marks] | None:
    """The data of a plain YAML mapping and the positions of its values (empty without ``with_marks``),
    exactly as :func:`aicp._chain.yamlload.load` and :func:`~aicp._chain.yamlload.marks` give them;
    None when the text is not plainly the part of YAML read here."""
    if len(text) > MAX_TEXT or not _printable(text) or text.startswith(_MARKERS) \
            or any(f"\n{marker}" in text for marker in _MARKERS):
        return None
    reader = _Reader(text, with_marks)
    try:
        return reader.document(), reader.marks
    except _Unplain:
        return None


def _printable(text: str) -> bool:
    """Whether YAML takes every character of ``text`` as it is, and none is a tab or a line break
    other than ``\\n``. Python's printable characters are among them (the usual text: no pattern to
    compile); the others are looked at one by one."""
    lines = text.replace("\n", "")
    return lines.isprintable() or not lines.isascii() and re.search(_UNPLAIN, lines) is None


def _scalar(plain: str) -> Any:
    """The value of a plain scalar as PyYAML's resolver and safe constructor make it."""
    if plain[0] in "-+.0123456789":
        return _number(plain)
    if plain in _BOOLS:
        return _BOOLS[plain]
    if plain in _NULLS:
        return None
    if plain in ("<<", "="):  # a merge key, the value key
        raise _Unplain
    return plain


def _plain_key(text: str) -> str:
    """``text``, a plain key up to its ``:``, if it is one: not empty, no indicator first, no comment,
    no space before the ``:``."""
    if not text or text[0] in _INDICATORS or " #" in text or text[-1] == " ":
        raise _Unplain
    return text


def _number(plain: str) -> int | float:
    """A plain scalar that YAML 1.1 may read as a number: a short decimal integer (no leading zero) or
    float (digits on both sides of the point); any other form (more digits than a 64-bit integer holds,
    exponents, underscores, octal, hexadecimal, sexagesimal, signs alone, dates) goes to PyYAML."""
    whole, point, fraction = (plain[1:] if plain[0] in "+-" else plain).partition(".")
    if not _digits(whole, 18) or whole[0] == "0" and len(whole) > 1 or point and not _digits(fraction, 17):
        raise _Unplain
    return float(plain) if point else int(plain)


def _digits(text: str, most: int) -> bool:
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def _plain_end(line: str, start: int, flow: bool) -> int:
    """Where the plain scalar starting at ``start`` ends (before trailing spaces): a comment, the line's
    end, and in a flow collection the next ``,``, ``]`` or ``}``; raises where it could be read otherwise."""
    if line[start] in _INDICATORS and not (line[start] == "-" and line[start + 1:start + 2].isdigit()):
        raise _Unplain
    end = len(line)
    comment = line.find(" #", start)
    if comment >= 0:
        end = comment
    if flow:
        end = min([end] + [found for found in (line.find(c, start, end) for c in ",]}") if found >= 0])
        if any(c in "[{:?#" for c in line[start:end]):
            raise _Unplain
    elif ": " in line[start:end] or line[start:end].rstrip(" ").endswith(":"):
        raise _Unplain
    end = len(line[:end].rstrip(" "))
    if end <= start:
        raise _Unplain
    return end


class _Reader:
    """One text, read line by line: the block structure, and in it scalars, block scalars and flow collections."""

    def __init__(self, text: str, with_marks: bool) -> None:
        self.lines = text.split("\n")
        self.row = 0  # the line being read
        self.marks: Marks = {}
        self.with_marks = with_marks
        self.in_flow = False  # reading a flow collection's entry

    def mark(self, path: Path, row: int, column: int) -> None:
        if self.with_marks:
            self.marks[path] = (row + 1, column + 1)

    # ------------------------------------------------------------------ lines

    def next_line(self) -> tuple[int, str] | None:
        """The indentation and content of the next line that is not blank or a comment (None: the end)."""
        while self.row < len(self.lines):
            line = self.lines[self.row]
            content = line.lstrip(" ")
            if content and content[0] != "#":
                return len(line) - len(content), content
            self.row += 1
        return None

    def document(self) -> dict[str, Any]:
        found = self.next_line()
        if found is None:
            raise _Unplain  # an empty document is None, not a chain
        data = self.mapping(found[0], (), found[0], 0)
        if self.next_line() is not None:
            raise _Unplain
        return data

    # ------------------------------------------------------------------ block collections

    def mapping(self, indent: int, path: Path, column: int, depth: int) -> dict[str, Any]:
        """The block mapping whose first key is at ``column`` of the current line, the others at ``indent``."""
        if depth > _MAX_NESTING:
            raise _Unplain
        self.mark(path, self.row, column)
        data: dict[str, Any] = {}
        while True:
            line = self.lines[self.row]
            key, after = self.key(line, column, path)
            if key in data:
                raise _Unplain  # the composer names the duplicate
            data[key] = self.value(line, after, path + (key,), indent, depth)
            found = self.next_line()
            if found is None or found[0] < indent:
                return data
            if found[0] > indent or found[1][0] == "-" and found[1][1:2] in ("", " "):
                raise _Unplain  # more indented: a scalar's next line, or a mistake; a sequence here: a mistake
            column = indent

    def key(self, line: str, column: int, path: Path) -> tuple[str, int]:
        """The key at ``column`` (its ``:`` must follow it, then a space or the line's end), and where
        its value starts."""
        if line[column] in "'\"":
            key, end = _quoted(line, column)
        else:
            colon = line.find(":", column)
            while colon >= 0 and colon + 1 < len(line) and line[colon + 1] != " ":
                colon = line.find(":", colon + 1)
            if colon < 0:
                raise _Unplain
            key, end = _scalar(_plain_key(line[column:colon])), colon
            if not isinstance(key, str):
                raise _Unplain  # a boolean or a number as a key: PyYAML makes it, parse refuses it
        if end - column > _MAX_KEY or line[end:end + 1] != ":" or line[end + 1:end + 2] not in ("", " "):
            raise _Unplain
        self.mark(path + ("<key>", key), self.row, column)
        return key, end + 1

    def sequence(self, indent: int, path: Path, depth: int) -> list[Any]:
        """The block sequence whose entries (``-``) are at ``indent``, the first on the current line."""
        if depth > _MAX_NESTING:
            raise _Unplain
        self.mark(path, self.row, indent)
        items: list[Any] = []
        while True:
            line = self.lines[self.row]
            item = path + (len(items),)
            start = _skip_spaces(line, indent + 1)
            if start < len(line) and line[start] != "#" and self.is_key(line, start):
                items.append(self.mapping(start, item, start, depth + 1))
            else:
                items.append(self.value(line, indent + 1, item, indent, depth, entry=True))
            found = self.next_line()
            if found is None or found[0] < indent or found[0] == indent and found[1][:2] != "- " \
                    and found[1] != "-":
                return items
            if found[0] > indent:
                raise _Unplain

    def is_key(self, line: str, start: int) -> bool:
        """Whether a mapping's key starts at ``start``: a quoted scalar then ``:``, or ``: `` in a plain one."""
        if line[start] in "'\"":
            end = _quoted(line, start)[1]
            return line[end:end + 1] == ":"
        if line[start] in "[{":
            return False
        comment = line.find(" #", start)
        text = line[start:comment] if comment >= 0 else line[start:]
        return ": " in text or text.rstrip(" ").endswith(":")

    def value(self, line: str, after: int, path: Path, indent: int, depth: int, entry: bool = False) -> Any:
        """The value after a key's ``:`` (or an entry's ``-``) at ``after``: on the rest of the line (a flow
        collection may go on over the next lines), or on the next lines (a block collection), or nothing
        (null, at ``after``)."""
        start = _skip_spaces(line, after)
        if line[start:start + 1] in ("|", ">") and line[start + 1:].rstrip(" ") in ("", "-"):
            self.mark(path, self.row, start)
            return self.block_scalar(line[start] == ">", line[start + 1:].strip(" ") == "-", indent)
        if start < len(line) and line[start] != "#":
            value, end = self.inline(start, path, depth + 1)
            rest = self.lines[self.row][end:]
            if rest.strip(" ") and not rest.lstrip(" ").startswith("#") or rest[:1] == "#":
                raise _Unplain
            self.row += 1
            return value
        empty = self.row
        self.row += 1
        found = self.next_line()
        if found is not None:
            column, content = found
            if content[:2] == "- " or content == "-":
                if column > indent or column == indent and not entry:  # a mapping's value may be an indentless sequence
                    return self.sequence(column, path, depth + 1)
            elif column > indent:
                return self.mapping(column, path, column, depth + 1)
        self.mark(path, empty, after)
        return None

    def block_scalar(self, folded: bool, strip: bool, indent: int) -> str:
        """The literal (``|``) or folded (``>``) block scalar whose header ends the current line, in a
        block collection at ``indent``; clipped (``|``, ``>``: one final line break, if the last line
        has one) or stripped (``|-``, ``>-``: none). Its indentation is its first line's (no empty line
        before it); a line of spaces beyond it, and in a folded scalar a line indented more (which keeps
        its line breaks), go to PyYAML."""
        first = self.row + 1
        margin = len(self.lines[first]) - len(self.lines[first].lstrip(" ")) if first < len(self.lines) else 0
        if margin <= indent or not self.lines[first].strip(" "):
            raise _Unplain
        pieces: list[str | None] = []  # the lines after the margin, None for an empty line
        last = first
        for row in range(first, len(self.lines)):
            line = self.lines[row]
            spaces = len(line) - len(line.lstrip(" "))
            if spaces == len(line):
                if spaces > margin:
                    raise _Unplain
                pieces.append(None)
            elif spaces < margin:
                break
            elif folded and spaces > margin:
                raise _Unplain
            else:
                pieces.append(line[margin:])
                last = row
        self.row = last + 1
        text = _fold(pieces[:last - first + 1]) if folded else "\n".join(p or "" for p in pieces[:last - first + 1])
        return text if strip or last == len(self.lines) - 1 else text + "\n"

    # ------------------------------------------------------------------ scalars and flow collections

    def inline(self, start: int, path: Path, depth: int) -> tuple[Any, int]:
        """The scalar or flow collection at ``start`` of the current line, and where it ends (on the
        line then current: a flow collection may end on a later one)."""
        if depth > _MAX_NESTING:
            raise _Unplain
        self.mark(path, self.row, start)
        line = self.lines[self.row]
        first = line[start]
        if first in "'\"":
            return _quoted(line, start)
        if first == "[":
            return self.flow_sequence(start, path, depth)
        if first == "{":
            return self.flow_mapping(start, path, depth)
        end = _plain_end(line, start, self.in_flow)
        return _scalar(line[start:end]), end

    def flow_sequence(self, start: int, path: Path, depth: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        index = self.flow_next(start + 1)
        while self.lines[self.row][index:index + 1] != "]":
            value, index = self.flow_item(index, path + (len(items),), depth)
            index = self.flow_separator(index, "]")
            items.append(value)
        return items, index + 1

    def flow_mapping(self, start: int, path: Path, depth: int) -> tuple[dict[str, Any], int]:
        data: dict[str, Any] = {}
        index = self.flow_next(start + 1)
        while self.lines[self.row][index:index + 1] != "}":
            line = self.lines[self.row]
            if line[index] in "'\"":
                key, end = _quoted(line, index)
            else:
                end = line.find(": ", index)
                text = _plain_key(line[index:end] if end >= 0 else "")
                if any(c in ",[]{}:?#'\"" for c in text):
                    raise _Unplain  # what ends or could end a plain scalar in a flow collection
                key = _scalar(text)
            if not isinstance(key, str) or key in data or line[end:end + 2] != ": ":
                raise _Unplain
            self.mark(path + ("<key>", key), self.row, index)
            value, index = self.flow_item(_skip_spaces(line, end + 2), path + (key,), depth)
            data[key] = value
            index = self.flow_separator(index, "}")
        return data, index + 1

    def flow_item(self, index: int, path: Path, depth: int) -> tuple[Any, int]:
        line = self.lines[self.row]
        if index >= len(line) or line[index] in ",]}#":
            raise _Unplain  # an empty entry
        was, self.in_flow = self.in_flow, True
        try:
            return self.inline(index, path, depth + 1)
        finally:
            self.in_flow = was

    def flow_next(self, index: int) -> int:
        """Where a flow collection goes on after an opening bracket or a comma at ``index``: there, after
        spaces, or at the start of the next line that is not blank or a comment."""
        line = self.lines[self.row]
        index = _skip_spaces(line, index)
        if index < len(line) and line[index] != "#":
            return index
        if index < len(line) and line[index - 1] != " ":
            raise _Unplain  # a '#' that is not a comment
        self.row += 1
        found = self.next_line()
        if found is None:
            raise _Unplain
        return found[0]

    def flow_separator(self, index: int, close: str) -> int:
        """After an entry: ``,`` then the next entry (not the end: a trailing comma), or the end; on this
        line, or (only a ``,`` or the end: a plain scalar would go on) first on the next one."""
        line = self.lines[self.row]
        index = _skip_spaces(line, index)
        if index == len(line):
            self.row += 1
            found = self.next_line()
            if found is None or found[1][0] not in ("," + close):
                raise _Unplain
            line, index = self.lines[self.row], found[0]
        if line[index:index + 1] == ",":
            index = self.flow_next(index + 1)
            if self.lines[self.row][index] == close:
                raise _Unplain
            return index
        if line[index:index + 1] != close:
            raise _Unplain
        return index


def _fold(pieces: list[str | None]) -> str:
    """The lines of a folded block scalar (None: an empty line) as one text: lines next to each other
    joined by a space, ``n`` empty lines between two become ``n`` line breaks."""
    text, empty = "", -1
    for piece in pieces:
        if piece is None:
            empty += 1
            continue
        text += ("" if empty < 0 else " " if empty == 0 else "\n" * empty) + piece
        empty = 0
    return text


def _quoted(line: str, start: int) -> tuple[str, int]:
    """The one-line quoted scalar at ``start`` and the index after its closing quote."""
    quote = line[start]
    if quote == "'":
        end = start + 1
        while True:
            end = line.find("'", end)
            if end < 0:
                raise _Unplain
            if line[end + 1:end + 2] != "'":
                return line[start + 1:end].replace("''", "'"), end + 1
            end += 2
    parts: list[str] = []
    index = start + 1
    while True:
        end = line.find('"', index)
        if end < 0:
            raise _Unplain
        escape = line.find("\\", index, end)
        if escape < 0:
            parts.append(line[index:end])
            return "".join(parts), end + 1
        parts.append(line[index:escape])
        char, index = _escape(line, escape)
        parts.append(char)


def _escape(line: str, index: int) -> tuple[str, int]:
    """The character the escape at ``index`` stands for, and the index after the escape (a few
    escapes: the others go to PyYAML)."""
    code = line[index + 1:index + 2]
    if code in _ESCAPES:
        return _ESCAPES[code], index + 2
    width = _HEX.get(code, 0)
    digits = line[index + 2:index + 2 + width]
    if not width or len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise _Unplain
    code_point = int(digits, 16)
    if code_point > 0x10FFFF or not _printable(chr(code_point)):  # a NUL, a surrogate: PyYAML and parse refuse them
        raise _Unplain
    return chr(code_point), index + 2 + width


def _skip_spaces(line: str, index: int) -> int:
    while index < len(line) and line[index] == " ":
        index += 1
    return index
