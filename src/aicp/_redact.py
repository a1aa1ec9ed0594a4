"""Masking secrets in everything the tool reports.

A run's events end up in CI logs, log shippers and bug reports, so every
value of a secret-looking environment variable (``FAL_KEY``,
``OPENAI_API_KEY``, ...) and of a secret-looking param (``api_key``,
``token``, ...) is replaced by ``***`` wherever it appears: in fields, in
relayed step output, in error messages and tracebacks.

A value is masked in every form it can take in what we write: as is, JSON-escaped
(a secret with quotes or backslashes inside a JSON string), as Python's repr
escapes it (``KeyError('...')`` in a traceback), and, for a multi-line value (a
PEM key), line by line, since step output is relayed one line per event. A
string found under a secret-looking key while masking (a step returning
``{"token": ...}``) becomes a secret itself, for that event and every later one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

MASK = "***"
SECRET_ENV_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
SECRET_NAME = re.compile(r"api[_-]?key|token|secret|password|passwd|authorization", re.IGNORECASE)
_MIN_LENGTH = 4  # shorter values ("1", "yes") would mask ordinary text


_SCALARS = frozenset({int, float, bool, type(None)})
_SECRET_KEYS: dict[Any, bool] = {}
_PLAIN_KEYS: set[Any] = set()  # keys seen that do not name a secret (at most 4096)


def _secret_name(key: Any) -> bool:
    """Whether a mapping key names a secret (``api_key``, ``Authorization``...), cached per key."""
    known = _SECRET_KEYS.get(key)
    if known is None:
        known = isinstance(key, str) and SECRET_NAME.search(key) is not None
        if len(_SECRET_KEYS) < 4096:
            _SECRET_KEYS[key] = known
    return known


def _text_forms(value: str) -> set[str]:
    """The ways ``value`` can appear in text we write: as is, JSON-escaped, repr-escaped, and
    each line of a multi-line value in those forms too."""
    import json  # here: most runs learn no secret, and validate's start-up would pay for it

    parts = {value} | {line.strip() for line in value.splitlines() if len(line.strip()) >= _MIN_LENGTH}
    forms = set()
    for part in parts:
        forms |= {part, json.dumps(part, ensure_ascii=False)[1:-1], repr(part)[1:-1],
                  json.dumps(part)[1:-1]}
    return {f for f in forms if len(f) >= _MIN_LENGTH}


def secret_env_values(environ: Mapping[str, str]) -> list[str]:
    return [v for k, v in environ.items() if k.upper().endswith(SECRET_ENV_SUFFIXES)]


def secret_param_values(value: Any) -> list[str]:
    """Values of secret-named keys anywhere inside ``value`` (nested params, parallel steps)."""
    found: list[str] = []
    if type(value) in _SCALARS or isinstance(value, str):
        return found  # (most values: cheaper than the Mapping check, an ABC's)
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and SECRET_NAME.search(key) and isinstance(item, str):
                found.append(item)
            else:
                found.extend(secret_param_values(item))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.extend(secret_param_values(item))
    return found


def _finder(forms: tuple[bytes, ...]) -> Callable[[bytes], bool]:
    """A search for any of ``forms`` in a rendered line, made for their number: every event is
    searched, most runs know one secret or none, and a loop's machinery costs as much as the search.
    ``bytes.find``, not ``in``: ``bytes.__contains__`` tries the needle as an int first."""
    if not forms:
        return lambda rendered: False
    if len(forms) == 1:
        form = forms[0]
        return lambda rendered: rendered.find(form) != -1

    def appears_in(rendered: bytes) -> bool:
        find = rendered.find
        for form in forms:
            if find(form) != -1:
                return True
        return False

    return appears_in


class Redactor:
    """A structlog processor (a plain callable) that masks known secret values."""

    _dumps: Callable[..., bytes]  # orjson's, loaded on first use (__getattr__)
    appears_in: Callable[[bytes], bool]
    """Whether a secret value appears in this JSON (raw, or JSON-escaped: JSON escapes character
    by character, so a secret inside a longer string is still found); see :func:`_finder`."""
    _non_str_keys: int

    def __init__(self, secrets: Iterable[str]) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        # The fast path (clean()) looks for each form in the event rendered as JSON, where it
        # appears JSON-escaped once more (JSON escapes character by character, so a secret inside
        # a longer string is still found; UTF-8 bytes match exactly where the characters do).
        self._forms: tuple[bytes, ...] = ()
        self.appears_in = _finder(self._forms)
        self.learn(secrets)

    def __getattr__(self, name: str) -> Any:
        """orjson, imported the first time an event is rendered or a secret learnt: not at the top, nor
        in ``__init__``, as the CLI's error path and ``validate`` mask text only (orjson loads ``uuid``
        and ``platform``). Once set, the attributes are found without calling this."""
        if name not in ("_dumps", "_non_str_keys"):
            raise AttributeError(name)
        import orjson

        self._dumps, self._non_str_keys = orjson.dumps, orjson.OPT_NON_STR_KEYS
        return getattr(self, name)

    def learn(self, secrets: Iterable[Any]) -> None:
        """Mask these values too, from now on."""
        new = {s for s in secrets if isinstance(s, str) and len(s) >= _MIN_LENGTH} - self._values
        if not new:
            return
        self._values |= new
        texts = {form for value in self._values for form in _text_forms(value)}
        ordered = sorted(texts, key=len, reverse=True)  # the longest first: no half-masked secret
        self._pattern = re.compile("|".join(map(re.escape, ordered)))
        self._forms = tuple({b for t in texts for b in (t.encode(), self._dumps(t)[1:-1])})
        self.appears_in = _finder(self._forms)

    @classmethod
    def from_environment(cls, extra: Iterable[str] = (),
                         environ: Mapping[str, str] | None = None) -> "Redactor":
        return cls([*secret_env_values(os.environ if environ is None else environ), *extra])

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        # Most events hold no secret: rendering them (C speed) and a few substring searches are
        # cheaper than walking every value (see clean()).
        try:
            line = self._dumps(event_dict, default=str, option=self._non_str_keys)
        except Exception:  # noqa: BLE001 - the walk (and the renderer) will see it
            return self.scrub(event_dict)
        return event_dict if self.clean(line, event_dict) else self.scrub(event_dict)

    def clean(self, line: bytes, event_dict: dict[str, Any]) -> bool:
        """Whether ``event_dict`` (rendered as ``line``) holds nothing to mask, so :meth:`scrub`
        would change nothing: no secret value in the line, no nested mapping (whose keys only the
        walk checks), and no secret-looking name among its own keys."""
        if self.appears_in(line):
            return False
        if line.find(b"{", 1) != -1:  # a nested mapping, or a brace inside a string: walk
            return False
        if _PLAIN_KEYS.issuperset(event_dict):
            return True
        if any(_secret_name(k) for k in event_dict):
            return False
        if len(_PLAIN_KEYS) < 4096:
            _PLAIN_KEYS.update(event_dict)
        return True

    @property
    def known(self) -> int:
        """How many secret values it masks (it only ever learns more): a cache of masked values
        is still good while this is unchanged."""
        return len(self._values)

    def text(self, value: str) -> str:
        return self._pattern.sub(MASK, value) if self._pattern is not None else value

    def scrub(self, value: Any) -> Any:
        """``value`` with every secret masked (a copy; ``value`` itself is left as it was)."""
        if isinstance(value, (dict, list, tuple)):
            self.learn(secret_param_values(value))
        return self._scrub(value)

    def mask(self, value: Any) -> Any:
        """``value`` with the secrets known so far masked (a copy), learning none from it: for a
        caller that has already learned them (:meth:`learn`)."""
        return self._scrub(value)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            # Every event passes here: plain scalars are copied without a call, and key names
            # are matched against SECRET_NAME once per distinct key (_secret_name's cache).
            out = {}
            for k, v in value.items():
                if type(v) in _SCALARS:
                    out[k] = v
                elif isinstance(v, str):
                    out[k] = MASK if _secret_name(k) else self.text(v)
                else:
                    out[k] = self._scrub(v)
            return out
        if isinstance(value, (list, tuple)):
            return [self._scrub(v) for v in value]
        if self._pattern is not None and type(value) not in _SCALARS:
            shown = str(value)  # a Path, bytes...: rendered with str(), so it can carry a secret
            if self._pattern.search(shown):
                return self.text(shown)
        return value
