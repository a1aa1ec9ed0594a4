"""YAML text to nodes and data, in one pass, bounded: libyaml's parser, our composer, PyYAML's safe constructor.

Separate from :mod:`aicp._chain.parse` because importing PyYAML costs more
than the rest of ``aicp validate`` together (its package loads every module and
compiles its scanner's and resolver's patterns: ~13 ms of wall time), so only
a YAML document that is parsed, or one whose positions an error needs, pays it.
A JSON chain never does, nor a YAML chain found in the parsed-document cache
(:mod:`aicp._chain.doccache`) whose warnings and errors need no position.

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
until an error asks for one. Every failure is a :class:`DocumentError`.
"""

from __future__ import annotations

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent, StreamEndEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from aicp._chain.limits import MAX_DEPTH, MAX_DIGITS, MAX_VALUES, TOO_DEEP, HugeInt

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any, Callable

    Path = tuple[Any, ...]

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


class DocumentError(Exception):
    """A problem found while reading YAML, with where it is: the mark (None: the start), or the field's path."""

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
            raise DocumentError(TOO_DEEP, event.start_mark)
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
        return HugeInt(digits) if len(digits) > MAX_DIGITS else super().construct_yaml_int(node)


# the registry maps tags to functions, so the override must be registered, not only defined
_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)  # type: ignore[type-var]


class _Loader(_BoundedComposer, _Parser, _Constructor, Resolver):
    def __init__(self, text: str) -> None:
        _parser_init(self, text)
        _Constructor.__init__(self)
        Resolver.__init__(self)


def marks(root: Node) -> dict[Path, tuple[int, int]]:
    """Line and column (1-based) of every value of a composed document by its path, and of every
    mapping key by its path with ``"<key>"`` before the key (``("steps", 0, "<key>", "type")``),
    recorded in the document's order (a path given twice keeps the last)."""
    found: dict[Path, tuple[int, int]] = {}
    todo: list[tuple[Node, Path, bool]] = [(root, (), True)]  # (node, path, walk into it)
    while todo:
        node, path, walk = todo.pop()
        found[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        children: list[tuple[Node, Path, bool]] = []
        if walk and isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode):
                    children += [(key, path + ("<key>", key.value), False), (value, path + (key.value,), True)]
        elif walk and isinstance(node, SequenceNode):
            children = [(item, path + (i,), True) for i, item in enumerate(node.value)]
        todo.extend(reversed(children))
    return found


def compose(text: str) -> Node | None:
    """The nodes of a YAML document (None: it is empty); raises :class:`DocumentError`."""
    return _read(text, construct=False)[1]


def load(text: str) -> tuple[Any, Node | None]:
    """The data of a YAML document and its nodes (the positions); raises :class:`DocumentError`."""
    return _read(text, construct=True)


def _read(text: str, construct: bool) -> tuple[Any, Node | None]:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        return (loader.construct_document(root) if construct and root is not None else None), root
    except yaml.MarkedYAMLError as exc:
        if exc.problem == "exceeded maximum nesting depth":  # libyaml's own limit (1000) met first
            raise DocumentError(TOO_DEEP, exc.problem_mark) from None
        raise DocumentError(f"invalid YAML: {exc.problem or exc}", exc.problem_mark) from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
