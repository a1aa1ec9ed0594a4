"""Declared values: one :class:`Param` says what a chain key, a step key or a model param may hold.

The same declaration is read three ways, so the rules are written once:
the validator checks a value against it (:meth:`Param.problem`), ``aicp
list-steps --params`` / ``list-models`` print it (:meth:`Param.describe`),
and ``aicp schema chain`` turns it into JSON Schema (:meth:`Param.schema`).

A param can be ``honoured`` (aicp uses it) or ``ignored``: a param the AI
Content Pipeline tool's files carry that aicp accepts and deliberately does
not use (``note`` says why), so those files stay valid while a typo in any
other name is an error.
"""

from __future__ import annotations

import math
import re

from aicp._record import record

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

TYPES = ("string", "number", "integer", "boolean", "path", "url", "target", "list", "mapping", "any")
_JSON_TYPE = {"string": "string", "path": "string", "url": "string", "target": "string", "number": "number",
              "integer": "integer",
              "boolean": "boolean", "list": "array", "mapping": "object"}
_REMOTE = ("http://", "https://", "data:")


@record
class Param:
    """A named value: its type(s), range or choices, whether it is required, its default.

    ``types`` lists what the value may be (``("integer", "string")`` for a
    duration written ``5`` or ``"5s"``). Numbers are checked against
    ``minimum`` (exclusive when ``exclusive_minimum``) and ``maximum``;
    strings against ``choices`` or ``pattern``. ``path`` is a string naming
    a file that must exist when the chain runs; ``url`` a URL, or a file path
    (uploaded), which must exist then; ``target`` a ``module:attribute`` that
    must be found then (:func:`aicp._targets.target_problem`).
    """

    name: str
    types: tuple[str, ...] = ("any",)
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[Any, ...] = ()
    pattern: str | None = None
    nonempty: bool = False
    required: bool = False
    default: Any = None
    status: str = "honoured"  # or "ignored": an old-tool param accepted and deliberately not used
    note: str = ""

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in TYPES]
        if unknown or self.status not in ("honoured", "ignored"):
            raise ValueError(f"bad declaration of param {self.name!r}: {unknown or self.status}")

    def names_file(self, value: Any) -> bool:
        """Whether ``value`` names a local file that must exist: a ``path``, or a ``url`` that is no URL."""
        if not isinstance(value, str):
            return False
        return "path" in self.types or ("url" in self.types and not value.startswith(_REMOTE))

    def names_target(self, value: Any) -> bool:
        """Whether ``value`` names a ``module:attribute`` that must be found when the chain runs."""
        return isinstance(value, str) and "target" in self.types

    # -- checking ------------------------------------------------------------

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None. ``null`` is always accepted (the default applies)."""
        if value is None or "any" in self.types or self.accepts(value):
            return None
        return f"must be {self.expected()}, got {value!r}"

    def accepts(self, value: Any) -> bool:
        if not any(_is(value, t) for t in self.types):
            return False
        if self.choices:
            return value in self.choices
        if isinstance(value, (str, list)) and self.nonempty and not (value.strip() if isinstance(value, str) else value):
            return False
        if isinstance(value, str):
            return not self.pattern or bool(re.fullmatch(self.pattern, value))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = self.minimum, self.maximum
            return not ((low is not None and (value < low or (self.exclusive_minimum and value == low)))
                        or (high is not None and value > high))
        return True

    def expected(self) -> str:
        """What the value must be, in words: ``a positive number``, ``one of srt, vtt``."""
        if self.choices:
            return f"one of {', '.join(map(str, self.choices))}"
        if self.types == ("number",) and self.minimum == 0 and self.maximum is None:
            return "a positive number" if self.exclusive_minimum else "a number >= 0"
        words = {"string": "a non-empty string" if self.nonempty else "a string", "path": "a file path",
                 "url": "a URL or a file path", "target": "a string",
                 "number": "a number", "integer": "a whole number", "boolean": "true or false",
                 "list": "a non-empty list" if self.nonempty else "a list", "mapping": "a mapping", "any": "anything"}
        text = " or ".join(words[t] for t in self.types)
        if self.minimum is not None:
            text += f" {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        if self.maximum is not None:
            text += f" <= {self.maximum:g}" if self.minimum is None else f" and <= {self.maximum:g}"
        if self.pattern and self.help:
            text += f" ({self.help})"
        return text

    # -- describing ----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The declaration as plain data (``list-steps --params``, ``list-models --json``)."""
        out: dict[str, Any] = {"name": self.name, "type": "|".join(self.types), "required": self.required,
                               "default": self.default, "status": self.status}
        for key in ("minimum", "maximum", "pattern"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.choices:
            out["choices"] = list(self.choices)
        if self.help:
            out["help"] = self.help
        if self.note:
            out["note"] = self.note
        return out

    def line(self) -> str:
        """One line for people: ``duration  integer|string  >= 1  default 5  - seconds``."""
        bits = [self.name, self.expected()]
        if self.required:
            bits.append("required")
        if self.default is not None:
            bits.append(f"default {self.default!r}")
        if self.status == "ignored":
            bits.append(f"accepted, not used: {self.note}" if self.note else "accepted, not used")
        elif self.help and not self.pattern:
            bits.append(f"- {self.help}")
        return "  ".join(bits)

    def schema(self) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of the value."""
        out: dict[str, Any] = {}
        if "any" not in self.types:
            kinds = sorted({_JSON_TYPE[t] for t in self.types} | {"null"})
            out["type"] = kinds
        if self.choices:
            out["enum"] = [*self.choices, None]
        if self.minimum is not None:
            out["exclusiveMinimum" if self.exclusive_minimum else "minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.pattern:
            out["pattern"] = f"^(?:{self.pattern})$"
        elif self.nonempty and "list" in self.types:
            out["minItems"] = 1
        elif self.nonempty:
            out["pattern"] = r"\S"
        description = self.help or ""
        if self.status == "ignored":
            description = f"Accepted for the AI Content Pipeline tool's files, not used: {self.note}".rstrip(": ")
        if description:
            out["description"] = description
        if self.default is not None:
            out["default"] = self.default
        return out


def _is(value: Any, kind: str) -> bool:
    if kind in ("string", "path", "url", "target"):
        return isinstance(value, str) and (kind == "string" or bool(value.strip()))
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "list":
        return isinstance(value, list)
    if kind == "mapping":
        return isinstance(value, dict)
    return True


def positive(name: str, help: str = "", default: Any = None, maximum: float | None = None) -> Param:
    """A number > 0."""
    return Param(name, ("number",), help, minimum=0, exclusive_minimum=True, maximum=maximum, default=default)


def non_negative(name: str, help: str = "", default: Any = None) -> Param:
    """A number >= 0."""
    return Param(name, ("number",), help, minimum=0, default=default)


def count(name: str, help: str = "", default: Any = None) -> Param:
    """A whole number >= 0."""
    return Param(name, ("integer",), help, minimum=0, default=default)


def text(name: str, help: str = "", default: Any = None, required: bool = False) -> Param:
    """A string that is not blank."""
    return Param(name, ("string",), help, nonempty=True, default=default, required=required)


def by_name(params: Iterable[Param]) -> dict[str, Param]:
    return {p.name: p for p in params}


def ignored(note: str, *names: str) -> tuple[Param, ...]:
    """Old-tool params accepted (any value) and deliberately not used, all for the same reason."""
    return tuple(Param(n, status="ignored", note=note) for n in names)


def params_schema(params: Mapping[str, Param], *, open_: bool = False) -> dict[str, Any]:
    """The JSON Schema of a params mapping whose keys are declared by ``params``."""
    schema: dict[str, Any] = {"type": "object", "properties": {n: p.schema() for n, p in params.items()}}
    required = [n for n, p in params.items() if p.required]
    if required:
        schema["required"] = required
    if not open_:
        schema["additionalProperties"] = False
    return schema
