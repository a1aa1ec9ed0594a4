"""Immutable records (frozen, compared and hashed by value) that cost next to nothing to define.

The catalogue (step types, executors, models, params) and the plan (``Chain``,
``Step``) are what ``aicp validate`` builds, and it must start in a few
milliseconds. :mod:`dataclasses` imports :mod:`inspect` (with ``ast``, ``dis``,
``tokenize``: about 9 ms of a 10 ms interpreter start) and compiles six or
more functions per class; a record here is one compiled ``__init__`` and
shared methods. What it offers is the subset of ``@dataclass(frozen=True)``
that aicp uses: fields declared by annotations, in order, with defaults or
:func:`field` ``(default_factory=...)``; ``__post_init__``; ``==`` and ``hash``
over the fields; a dataclass-like ``repr``; assignment refused; and
:func:`replace`. Type checkers see a dataclass (``dataclass_transform``).
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    from typing_extensions import dataclass_transform

    T = TypeVar("T")

_MISSING = object()


class FrozenRecordError(AttributeError):
    """Assigning to (or deleting) a field of a record; like ``dataclasses.FrozenInstanceError``."""


class _Field:
    __slots__ = ("default", "factory")

    def __init__(self, default: "Any", factory: "Any") -> None:
        self.default, self.factory = default, factory


def field(*, default: "Any" = _MISSING, default_factory: "Callable[[], Any] | Any" = _MISSING) -> "Any":
    """A field's default given by a factory, called for every record (a fresh ``dict``)."""
    return _Field(default, default_factory)


def _frozen(self: object, name: str, value: "Any" = None) -> None:
    raise FrozenRecordError(f"cannot assign to field '{name}' of a {type(self).__name__} (it is immutable)")


def _values(self: "Any") -> "tuple[Any, ...]":
    return tuple(self.__dict__[name] for name in self.__record_fields__)


def _eq(self: "Any", other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: "Any") -> int:
    return hash(_values(self))


def _repr(self: "Any") -> str:
    fields = ", ".join(f"{name}={self.__dict__[name]!r}" for name in self.__record_fields__)
    return f"{type(self).__qualname__}({fields})"


def _record(cls: "type[T]") -> "type[T]":
    names = [name for name, kind in cls.__dict__.get("__annotations__", {}).items()
             if not str(kind).startswith(("ClassVar", "typing.ClassVar"))]
    namespace: "dict[str, Any]" = {"_MISSING": _MISSING}
    params, body = [], []
    for name in names:
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, _Field) and value.factory is not _MISSING:
            namespace[f"_factory_{name}"] = value.factory
            params.append(f"{name}=_MISSING")
            body.append(f"{name}=_factory_{name}() if {name} is _MISSING else {name}")
            delattr(cls, name)
            continue
        if isinstance(value, _Field):
            value = value.default
            if value is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, value)
        if value is _MISSING:
            if any("=" in p for p in params):
                raise TypeError(f"{cls.__name__}: field '{name}' without a default follows one with a default")
            params.append(name)
        else:
            namespace[f"_default_{name}"] = value
            params.append(f"{name}=_default_{name}")
        body.append(f"{name}={name}")
    post = "\n    self.__post_init__()" if hasattr(cls, "__post_init__") else ""
    source = (f"def __init__(self, {', '.join(params)}):\n"
              f"    self.__dict__.update({', '.join(body) or ''}){post}\n")
    exec(source, namespace)  # noqa: S102 - our own source text, made of declared field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    for attribute, value in (("__init__", init), ("__record_fields__", tuple(names)), ("__eq__", _eq),
                             ("__hash__", _hash), ("__repr__", _repr), ("__setattr__", _frozen),
                             ("__delattr__", _frozen), ("__match_args__", tuple(names))):
        setattr(cls, attribute, value)
    return cls


if TYPE_CHECKING:
    @dataclass_transform(frozen_default=True, field_specifiers=(field,))
    def record(cls: "type[T]") -> "type[T]": ...
else:
    record = _record


def replace(obj: "T", **changes: "Any") -> "T":
    """A copy of the record ``obj`` with ``changes`` (field names), like ``dataclasses.replace``."""
    values = {name: obj.__dict__[name] for name in obj.__record_fields__}  # type: ignore[attr-defined]
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {', '.join(sorted(unknown))}")
    return type(obj)(**{**values, **changes})
