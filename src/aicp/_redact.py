"""Masking secrets in everything the tool reports.

A run's events end up in CI logs, log shippers and bug reports, so every
value of a secret-looking environment variable (``FAL_KEY``,
``OPENAI_API_KEY``, ...) and of a secret-looking param (``api_key``,
``token``, ...) is replaced by ``***`` wherever it appears: in fields, in
relayed step output, in error messages and tracebacks.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping

MASK = "***"
SECRET_ENV_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
SECRET_NAME = re.compile(r"api[_-]?key|token|secret|password|passwd|authorization", re.IGNORECASE)
_MIN_LENGTH = 4  # shorter values ("1", "yes") would mask ordinary text


def secret_env_values(environ: Mapping[str, str]) -> list[str]:
    return [v for k, v in environ.items() if k.upper().endswith(SECRET_ENV_SUFFIXES)]


def secret_param_values(value: Any) -> list[str]:
    """Values of secret-named keys anywhere inside ``value`` (nested params, parallel steps)."""
    found: list[str] = []
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


class Redactor:
    """A structlog processor (a plain callable) that masks known secret values."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if isinstance(s, str) and len(s) >= _MIN_LENGTH},
                        key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    @classmethod
    def from_environment(cls, extra: Iterable[str] = (),
                         environ: Mapping[str, str] | None = None) -> "Redactor":
        return cls([*secret_env_values(os.environ if environ is None else environ), *extra])

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return self.scrub(event_dict)

    def text(self, value: str) -> str:
        return self._pattern.sub(MASK, value) if self._pattern is not None else value

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: (MASK if isinstance(k, str) and isinstance(v, str) and SECRET_NAME.search(k)
                        else self.scrub(v))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v) for v in value]
        return value
