"""Chain text to data, in one pass, bounded, with positions computed only when an error needs one.

YAML goes through libyaml's parser (PyYAML's C extension; the pure-Python
parser where it is missing) and one small composer of ours, then PyYAML's safe
constructor. The composer is ours because it is where the document's limits
can be enforced before anything is built (:mod:`aicp._chain.limits`): nesting
depth, and the number of values with every alias expanded, so that a
"billion laughs" document is refused after a few thousand events, in
milliseconds, with memory bounded by the file's size, even when the bomb
sits in a key nobody uses. It refuses recursive aliases and, at their second
occurrence, duplicate keys (which YAML loaders would resolve silently to the
last value). The composed nodes keep their marks, so positions cost nothing
until an error asks for one.

JSON is parsed by the standard library; when an error needs a position, the
same text is composed as YAML (JSON is YAML's flow style) to find it.

After parsing, one walk over the data refuses what no step and no JSON event
could carry: integers outside 64 bits, NaN and infinities, NUL characters and
lone surrogates in strings, keys that are not strings, sets and binary values.
Every refusal names the file, line, column and field.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable, Iterator

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent, StreamEndEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from aicp._chain.model import path_text
from aicp._chain.limits import FIELDS, MAX_DEPTH, MAX_INT, MAX_VALUES, MIN_INT, field_problem
from aicp._errors import ChainError

try:
    from yaml.cyaml import CParser as _Parser  # type: ignore[attr-defined]  # libyaml: the fast path

    def _parser_init(self: Any, text: str) -> None:
        _Parser.__init__(self, text)
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser as _PyParser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _PyParser):  # type: ignore[no-redef]
        pass

    def _parser_init(self: Any, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        _PyParser.__init__(self)

Path = tuple[Any, ...]
_MAX_DIGITS = 40  # an integer literal longer than this is out of range whatever it says
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels (the limit)"
# JSON escapes of lone surrogates, which YAML refuses: replaced by an escape of the same length
# when the text is composed as YAML only to find positions
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class DocumentError(Exception):
    """A problem found while composing, with where it is: the mark, or the field's path."""

    def __init__(self, message: str, mark: Any = None, path: Path | None = None) -> None:
        super().__init__(message)
        self.message, self.mark, self.path = message, mark, path


class _Frame:
    """A collection being composed: its node, its expanded size so far, the key awaiting its value."""

    __slots__ = ("node", "size", "key", "seen")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.size = 1
        self.key: Node | None = None
        self.seen: dict[str, int] | None = {} if isinstance(node, MappingNode) else None


class _BoundedComposer:
    """Events to nodes, iteratively, within :data:`MAX_DEPTH` and :data:`MAX_VALUES`."""

    resolve: Callable[..., str]
    check_event: Callable[..., bool]
    get_event: Callable[[], Any]
    peek_event: Callable[[], Any]

    def get_single_node(self) -> Node | None:
        self.get_event()  # stream start
        node = None
        if not self.check_event(StreamEndEvent):
            self.get_event()  # document start
            node = self._compose_document()
            self.get_event()  # document end
        if not self.check_event(StreamEndEvent):
            raise DocumentError("only one YAML document is allowed (found a second '---')",
                                self.peek_event().start_mark)
        self.get_event()
        return node

    def _compose_document(self) -> Node:
        anchors: dict[str, Node] = {}
        sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded, once complete
        stack: list[_Frame] = []
        expanded = 0  # values so far, every alias counted as what it expands to
        while True:
            event = self.get_event()
            kind = type(event)
            node: Node
            if kind is SequenceStartEvent or kind is MappingStartEvent:
                stack.append(self._start(event, anchors, len(stack)))
                expanded += 1
                continue
            if kind is ScalarEvent:
                tag = event.tag if event.tag not in (None, "!") else \
                    self.resolve(ScalarNode, event.value, event.implicit)
                node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
                if event.anchor is not None:
                    anchors[event.anchor] = node
                size = sizes[id(node)] = 1
                expanded += 1
            elif kind is AliasEvent:
                anchored = anchors.get(event.anchor)
                if anchored is None:
                    raise DocumentError(f"unknown alias '*{event.anchor}'", event.start_mark)
                node = anchored
                if id(node) not in sizes:
                    raise DocumentError(f"alias '*{event.anchor}' refers to a collection that contains it "
                                        "(a recursive document)", event.start_mark)
                size = sizes[id(node)]
                expanded += size
            else:  # the end of a collection, counted when it started
                frame = stack.pop()
                node = frame.node
                node.end_mark = event.end_mark
                size = sizes[id(node)] = frame.size
            if expanded > MAX_VALUES:
                raise DocumentError(f"the document holds more than {MAX_VALUES} values with its aliases "
                                    "expanded (the limit; a YAML alias bomb?)", event.start_mark)
            if not stack:
                return node
            self._add(stack, node, size)

    def _start(self, event: Any, anchors: dict[str, Node], depth: int) -> _Frame:
        if depth >= MAX_DEPTH:
            raise DocumentError(_TOO_DEEP, event.start_mark)
        node_class = SequenceNode if isinstance(event, SequenceStartEvent) else MappingNode
        tag = event.tag if event.tag not in (None, "!") else self.resolve(node_class, None, event.implicit)
        node = node_class(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if event.anchor is not None:
            anchors[event.anchor] = node
        return _Frame(node)

    @staticmethod
    def _add(stack: list[_Frame], node: Node, size: int) -> None:
        parent = stack[-1]
        parent.size += size
        if parent.seen is None:
            parent.node.value.append(node)
        elif parent.key is None:
            parent.key = node
        else:
            key, parent.key = parent.key, None
            if isinstance(key, ScalarNode) and key.value != "<<":
                first = parent.seen.get(key.value)
                if first is not None:
                    raise DocumentError(f"duplicate key '{key.value}' (first given on line {first}); "
                                        "only one may stay", key.start_mark, _stack_path(stack) + (key.value,))
                parent.seen[key.value] = key.start_mark.line + 1
            parent.node.value.append((key, node))


def _stack_path(stack: list[_Frame]) -> Path:
    """The path of the collection on top of ``stack``."""
    path: list[Any] = []
    for frame in stack[:-1]:
        if frame.seen is None:
            path.append(len(frame.node.value))
        elif isinstance(frame.key, ScalarNode):
            path.append(frame.key.value)
    return tuple(path)


class _HugeInt:
    """A JSON integer literal too long to be converted (Python refuses > 4300 digits, slowly)."""

    def __init__(self, digits: str) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"{self.digits[:20]}...({len(self.digits)} digits)"


class _Constructor(SafeConstructor):
    """PyYAML's safe constructor, refusing with a position what would otherwise raise a bare
    ValueError (``!!int abc``, a timestamp with month 13) or hang (an integer of a million digits)."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure is the value's, at its mark
            raise ConstructorError(None, None, f"cannot read this {node.tag.rsplit(':', 1)[-1]} value: {exc}",
                                   node.start_mark) from None

    def construct_yaml_int(self, node: ScalarNode) -> Any:
        digits = str(node.value).replace("_", "").lstrip("+-")
        return _HugeInt(digits) if len(digits) > _MAX_DIGITS else super().construct_yaml_int(node)


# the registry maps tags to functions, so the override must be registered, not only defined
_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)  # type: ignore[type-var]


class _Loader(_BoundedComposer, _Parser, _Constructor, Resolver):
    def __init__(self, text: str) -> None:
        _parser_init(self, text)
        _Constructor.__init__(self)
        Resolver.__init__(self)


def _compose(text: str) -> Node | None:
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


# --------------------------------------------------------------------------- positions


class Positions:
    """Line and column of every value of a document by its path, found when first asked for."""

    def __init__(self, root: Callable[[], Node | None]) -> None:
        self._root = root
        self._marks: dict[Path, tuple[int, int]] | None = None

    def _index(self) -> dict[Path, tuple[int, int]]:
        if self._marks is None:
            self._marks = {}
            try:
                node = self._root()
            except (yaml.YAMLError, DocumentError):
                node = None
            if node is not None:
                self._walk(node, ())
        return self._marks

    def _walk(self, node: Node, path: Path) -> None:
        assert self._marks is not None
        self._marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode):
                    self._marks[path + ("<key>", key.value)] = (key.start_mark.line + 1, key.start_mark.column + 1)
                    self._walk(value, path + (key.value,))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, path + (i,))

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


def error_at(label: str, where: tuple[int, int] | None, path: Path, message: str) -> ChainError:
    """The one form of a chain error: ``file:line:col: field.path: message``."""
    prefix = f"{label}:{where[0]}:{where[1]}" if where else label
    field = path_text(path)
    return ChainError(f"{prefix}: {field}: {message}" if field else f"{prefix}: {message}")


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
        if message == _TOO_DEEP and self._json_text:  # the composer stops deep YAML; JSON gets here
            line, column = _json_depth_position(self._json_text)
            raise ChainError(f"{self.label}:{line}:{column}: {message}")
        raise self.error(path, message)


def parse(text: str, label: str) -> Document:
    """YAML (safe subset) or, for a ``.json`` label, JSON text to a :class:`Document`."""
    is_json = label.endswith(".json")
    if is_json:
        data = _parse_json(text, label)
        positions = Positions(lambda: _compose(_as_yaml(text)))
    else:
        data, root = _parse_yaml(text, label)
        positions = Positions(lambda: root)
    return Document(data, positions, label, text)


def _as_yaml(json_text: str) -> str:
    """JSON text that YAML's parser takes, every character where it was: tabs are JSON's
    whitespace (not YAML's), and lone-surrogate escapes YAML refuses become ``\\u0020``."""
    return _SURROGATE_ESCAPE.sub(r"\\u0020", json_text.replace("\t", " "))


def _parse_yaml(text: str, label: str) -> tuple[Any, Node | None]:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        return (loader.construct_document(root) if root is not None else None), root
    except DocumentError as exc:
        if exc.path is not None:
            where = (exc.mark.line + 1, exc.mark.column + 1)
            raise error_at(label, where, exc.path, exc.message) from None
        raise ChainError(f"{_mark_text(label, exc.mark)}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        if exc.problem == "exceeded maximum nesting depth":  # libyaml's own limit (1000) met first
            raise ChainError(f"{_mark_text(label, exc.problem_mark)}: {_TOO_DEEP}") from None
        raise ChainError(f"{_mark_text(label, exc.problem_mark)}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ChainError(f"{label}:1:1: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def _mark_text(label: str, mark: Any) -> str:
    return f"{label}:{mark.line + 1}:{mark.column + 1}" if mark is not None else f"{label}:1:1"


def _json_int(literal: str) -> Any:
    return _HugeInt(literal) if len(literal) > _MAX_DIGITS else int(literal)


class _DuplicateKey(Exception):
    pass


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise _DuplicateKey
    return data


def _parse_json(text: str, label: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_json_pairs, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise ChainError(f"{label}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except _DuplicateKey:  # composing it as YAML finds the key, its path and position
        try:
            _compose(_as_yaml(text))
        except DocumentError as exc:
            if exc.path is not None:
                raise error_at(label, (exc.mark.line + 1, exc.mark.column + 1), exc.path, exc.message) from None
        except yaml.YAMLError:
            pass
        raise ChainError(f"{label}:1:1: invalid JSON: a key is given twice; only one may stay") from None
    except RecursionError:
        line, column = _json_depth_position(text)
        raise ChainError(f"{label}:{line}:{column}: {_TOO_DEEP}") from None


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
        if problem and path and path[-1] in FIELDS and isinstance(value, (int, float, _HugeInt)):
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
                               if seen > MAX_VALUES else _TOO_DEEP)
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
        bad = _BAD_CHARS.search(value) if not value.isascii() or "\x00" in value else None
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
    if isinstance(value, _HugeInt):
        return f"an integer of {len(value.digits)} digits is out of range (integers must be within {MIN_INT} .. {MAX_INT})"
    if isinstance(value, _Limit):
        return value.message
    if isinstance(value, (dict, list)):
        return None
    if isinstance(value, (set, bytes, bytearray, tuple)):
        return f"a {type(value).__name__} value cannot be used in a chain (only strings, numbers, " \
               "booleans, null, lists and mappings)"
    return None  # dates and timestamps: YAML's own scalars, carried as text
