"""Chain text to data, in one pass, bounded, with positions computed only when an error needs one.

YAML is read by :mod:`aicp._chain.yamlload` (libyaml's parser, a composer of
ours that enforces the document's limits, PyYAML's safe constructor), imported
only when a YAML text is parsed or composed: a text that parsed before is
taken from the parsed-document cache (:mod:`aicp._chain.doccache`) with the
positions of its values, and a text in the plain YAML chain files are written
in is read by :mod:`aicp._chain.plainyaml` (the same data and positions),
both without PyYAML.

JSON is parsed by the standard library; when an error needs a position, the
same text is composed as YAML (JSON is YAML's flow style) to find it. A valid
JSON chain never imports PyYAML.

After parsing, one walk over the data refuses what no step and no JSON event
could carry: integers outside 64 bits, NaN and infinities, NUL characters and
lone surrogates in strings, keys that are not strings, sets and binary values.
Every refusal names the file, line, column and field.
"""

from __future__ import annotations

import math
import re

from aicp._chain import doccache
from aicp._chain.limits import FIELDS, MAX_DEPTH, MAX_DIGITS, MAX_INT, MAX_VALUES, MIN_INT, TOO_DEEP, HugeInt, \
    field_problem
from aicp._chain.model import path_text
from aicp._errors import ChainError

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

    from aicp._chain.yamlload import DocumentError

    Path = tuple[Any, ...]
    Marks = dict[Path, tuple[int, int]]

# patterns compiled on first use (re keeps them), not at import: most chains need neither
_BAD_CHARS = "[\x00\ud800-\udfff]"
# JSON escapes of lone surrogates, which YAML refuses: replaced by an escape of the same length
# when the text is composed as YAML only to find positions
_SURROGATE_ESCAPE = r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}"


# --------------------------------------------------------------------------- positions


class Positions:
    """Line and column of every value of a document by its path, found when first asked for.

    ``marks`` gives them all (:func:`aicp._chain.yamlload.marks` of the composed document), or
    None when the document cannot be composed; it is called at most once."""

    def __init__(self, marks: Callable[[], Marks | None]) -> None:
        self._find = marks
        self._marks: Marks | None = None

    def _index(self) -> Marks:
        if self._marks is None:
            self._marks = self._find() or {}
        return self._marks

    def of(self, path: Path) -> tuple[int, int] | None:
        """The position of the value at ``path``: of its key when it is in a mapping
        (``chain.yaml:7:5: steps[2].timeout``), else of the value; else of the nearest parent."""
        marks = self._index()
        while path:
            key = path[:-1] + ("<key>", path[-1])
            if key in marks:
                return marks[key]
            if path in marks:
                return marks[path]
            path = path[:-1]
        return marks.get(())


def _composed_marks(yaml_text: str) -> Marks | None:
    """The positions of a text composed as YAML (it imports PyYAML); None if it does not compose."""
    from aicp._chain import yamlload

    try:
        root = yamlload.compose(yaml_text)
    except yamlload.DocumentError:
        return None
    return yamlload.marks(root) if root is not None else None


def error_at(label: str, where: tuple[int, int] | None, path: Path, message: str) -> ChainError:
    """The one form of a chain error: ``file:line:col: field.path: message``."""
    prefix = f"{label}:{where[0]}:{where[1]}" if where else label
    field = path_text(path)
    return ChainError(f"{prefix}: {field}: {message}" if field else f"{prefix}: {message}")


def _document_error(label: str, exc: DocumentError) -> ChainError:
    """A YAML document's error, at its mark (the start of the file when it has none)."""
    where = (exc.mark.line + 1, exc.mark.column + 1) if exc.mark is not None else (1, 1)
    if exc.path is not None:
        return error_at(label, where, exc.path, exc.message)
    return ChainError(f"{label}:{where[0]}:{where[1]}: {exc.message}")


# --------------------------------------------------------------------------- parsing


class Document:
    """A parsed chain document: its data, and the positions of its values (on demand)."""

    def __init__(self, data: Any, positions: Positions, label: str, text: str = "") -> None:
        self.data, self.positions, self.label = data, positions, label
        self._json_text = text if label.endswith(".json") else ""

    def error(self, path: Path, message: str) -> ChainError:
        return error_at(self.label, self.positions.of(path), path, message)

    def check(self, data: Any) -> None:
        """Refuse the first value of ``data`` (this document's, with any overrides) that no step
        and no JSON event could carry."""
        problem = _first_bad_value(data)
        if problem is None:
            return
        path, message = problem
        if message == TOO_DEEP and self._json_text:  # the composer stops deep YAML; JSON gets here
            line, column = _json_depth_position(self._json_text)
            raise ChainError(f"{self.label}:{line}:{column}: {message}")
        raise self.error(path, message)


def parse(text: str, label: str, keep: bool = False) -> Document:
    """YAML (safe subset) or, for a ``.json`` label, JSON text to a :class:`Document`. ``keep``: a YAML
    text parsed now is kept in the parsed-document cache (read from it either way)."""
    if label.endswith(".json"):
        data = _parse_json(text, label)
        positions = Positions(lambda: _composed_marks(_as_yaml(text)))
    else:
        data, positions = _parse_yaml(text, label, keep)
    return Document(data, positions, label, text)


def _as_yaml(json_text: str) -> str:
    """JSON text that YAML's parser takes, every character where it was: tabs are JSON's
    whitespace (not YAML's), and lone-surrogate escapes YAML refuses become ``\\u0020``."""
    return re.sub(_SURROGATE_ESCAPE, r"\\u0020", json_text.replace("\t", " "))


def _parse_yaml(text: str, label: str, keep: bool) -> tuple[Any, Positions]:
    """The data (from the parsed-document cache when this text parsed before) and its positions."""
    cached = doccache.load(text)
    if cached is not None:
        data, marks = cached
        return data, Positions(lambda: marks)
    from aicp._chain import plainyaml  # here: a text read from the cache needs no parser

    plain = plainyaml.read(text, with_marks=keep)
    if plain is not None:  # the same data and positions as PyYAML's, without importing it
        data, marks = plain
        if keep:
            doccache.save(text, data, marks, pyyaml=False)
            return data, Positions(lambda: marks)
        return data, Positions(lambda: (plainyaml.read(text) or (None, None))[1])
    from aicp._chain import yamlload

    try:
        data, root = yamlload.load(text)
    except yamlload.DocumentError as exc:
        raise _document_error(label, exc) from None
    if keep:
        doccache.save(text, data, yamlload.marks(root) if root is not None else {})
    return data, Positions(lambda: yamlload.marks(root) if root is not None else None)


def _json_int(literal: str) -> Any:
    return HugeInt(literal) if len(literal) > MAX_DIGITS else int(literal)


class _DuplicateKey(Exception):
    pass


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise _DuplicateKey
    return data


def _parse_json(text: str, label: str) -> Any:
    import json  # here: a YAML chain (the usual one) needs no JSON parser

    try:
        return json.loads(text, object_pairs_hook=_json_pairs, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise ChainError(f"{label}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except _DuplicateKey:  # composing it as YAML finds the key, its path and position
        from aicp._chain import yamlload

        try:
            yamlload.compose(_as_yaml(text))
        except yamlload.DocumentError as exc:
            if exc.path is not None:
                raise _document_error(label, exc) from None
        raise ChainError(f"{label}:1:1: invalid JSON: a key is given twice; only one may stay") from None
    except RecursionError:
        line, column = _json_depth_position(text)
        raise ChainError(f"{label}:{line}:{column}: {TOO_DEEP}") from None


def _json_depth_position(text: str) -> tuple[int, int]:
    """Where JSON text first nests deeper than :data:`MAX_DEPTH` (brackets outside strings)."""
    depth = 0
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                index = match.start()
                return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1
        elif token in "]}":
            depth -= 1
    return 1, 1


# --------------------------------------------------------------------------- the values


def _first_bad_value(data: Any) -> tuple[Path, str] | None:
    """The first value no step or event could carry, as (path, message); None if there is none."""
    for path, value in _values(data):
        problem = _problem(value)
        if problem and path and path[-1] in FIELDS and isinstance(value, (int, float, HugeInt)):
            problem = field_problem(path[-1], value)  # a field's own words: "must be a positive number"
        if problem:
            return path, problem
    return None


def _values(data: Any) -> Iterator[tuple[Path, Any]]:
    """Every value and mapping key with its path, depth first, bounded by depth and count."""
    todo: list[tuple[Path, Any]] = [((), data)]
    seen = 0
    while todo:
        path, value = todo.pop()
        seen += 1
        if seen > MAX_VALUES or len(path) > MAX_DEPTH:
            yield path, _Limit(f"the document has more than {MAX_VALUES} values (the limit)"
                               if seen > MAX_VALUES else TOO_DEEP)
            return
        yield path, value
        if isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if not isinstance(key, str):
                    yield path, _Limit(f"keys must be strings, got {key!r} ({type(key).__name__}); "
                                       "quote it (YAML reads yes/no/on/off as booleans, 1 as a number)")
                    return
                yield path + ("<key>", key), key
                todo.append((path + (key,), item))
        elif isinstance(value, list):
            todo.extend((path + (i,), item) for i, item in reversed(list(enumerate(value))))


class _Limit:
    def __init__(self, message: str) -> None:
        self.message = message


def _problem(value: Any) -> str | None:
    if isinstance(value, str):
        bad = re.search(_BAD_CHARS, value) if not value.isascii() or "\x00" in value else None
        if bad is None:
            return None
        if bad.group() == "\x00":
            return f"contains a NUL character at offset {bad.start()}, which no program or file name can hold"
        return f"contains a lone surrogate (\\u{ord(bad.group()):04x}) at offset {bad.start()}: not valid Unicode"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if MIN_INT <= value <= MAX_INT else \
            f"the integer {value} is out of range (integers must be within {MIN_INT} .. {MAX_INT})"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"must be a finite number, got {value!r}"
    if isinstance(value, HugeInt):
        return f"an integer of {len(value.digits)} digits is out of range (integers must be within {MIN_INT} .. {MAX_INT})"
    if isinstance(value, _Limit):
        return value.message
    if isinstance(value, (dict, list)):
        return None
    if isinstance(value, (set, bytes, bytearray, tuple)):
        return f"a {type(value).__name__} value cannot be used in a chain (only strings, numbers, " \
               "booleans, null, lists and mappings)"
    return None  # dates and timestamps: YAML's own scalars, carried as text
