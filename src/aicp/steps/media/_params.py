"""Parameter parsing and load-time checks shared by the media steps.

Pure Python on purpose: ``check`` functions run in the CLI process during
validation, and the ``run`` functions call the same checks first so a step
started without validation fails just as clearly.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

Problem = tuple[str, str]

# The aspect ratios the old AI Content Pipeline tool offered.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:3": (4, 3), "3:4": (3, 4),
}

_WXH = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_SHORT_SIDE = re.compile(r"^\s*(\d+)\s*[pP]?\s*$")


def even(value: float) -> int:
    """Round to the nearest even integer (at least 2): H.264 in yuv420p needs even sizes."""
    return max(2, int(round(value / 2.0)) * 2)


def check_number(params: Mapping[str, Any], key: str, *, minimum: float = 0,
                 inclusive: bool = False, integer: bool = False,
                 maximum: float | None = None) -> list[Problem]:
    """A problem if ``params[key]`` is present but not a number in range."""
    if key not in params or params[key] is None:
        return []
    value = params[key]
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not float(value).is_integer()):
        return [(f"params.{key}", f"must be {kind}, got {value!r}")]
    if value < minimum or (value == minimum and not inclusive):
        bound = f">= {minimum}" if inclusive else f"> {minimum}"
        return [(f"params.{key}", f"must be {bound}, got {value!r}")]
    if maximum is not None and value > maximum:
        return [(f"params.{key}", f"must be <= {maximum}, got {value!r}")]
    return []


def check_choice(params: Mapping[str, Any], key: str, choices: Iterable[str]) -> list[Problem]:
    """A problem if ``params[key]`` is present but not one of ``choices``."""
    choices = list(choices)
    if key in params and params[key] is not None and params[key] not in choices:
        return [(f"params.{key}", f"must be one of {', '.join(choices)}; got {params[key]!r}")]
    return []


def check_resolution(params: Mapping[str, Any], key: str = "resolution") -> list[Problem]:
    """A problem if ``params[key]`` is neither ``"WxH"`` nor a positive height like 720."""
    value = params.get(key)
    if value is None:
        return []
    try:
        parse_resolution(value, (16, 9))
    except ValueError as exc:
        return [(f"params.{key}", str(exc))]
    return []


def check_aspect(params: Mapping[str, Any], key: str = "aspect_ratio") -> list[Problem]:
    return check_choice(params, key, ASPECT_RATIOS)


def check_paths(params: Mapping[str, Any], *keys: str) -> list[Problem]:
    """A problem for each of ``keys`` that is present but is not a path string."""
    return [(f"params.{k}", f"must be a file path, got {params[k]!r}")
            for k in keys if params.get(k) is not None and not isinstance(params[k], str)]


def raise_problems(problems: list[Problem]) -> None:
    """Turn check() problems into the ValueError the worker reports as a step error."""
    if problems:
        raise ValueError("; ".join(f"{where}: {msg}" for where, msg in problems))


def parse_resolution(value: Any, aspect: tuple[float, float]) -> tuple[int, int]:
    """``"1280x720"`` as given (rounded to even); a number or ``"720p"`` is the *short* side.

    With a short side the long one follows ``aspect`` (width, height), so 720
    means 1280x720 for 16:9 and 720x1280 for 9:16, as people say "720p vertical".
    """
    text = str(value)
    m = _WXH.match(text)
    if m:
        w, h = int(m[1]), int(m[2])
        if w < 2 or h < 2:
            raise ValueError(f"resolution {value!r} is too small (at least 2x2)")
        return even(w), even(h)
    m = _SHORT_SIDE.match(text) if not isinstance(value, bool) else None
    if not m or int(m[1]) < 2:
        raise ValueError(f"resolution must be 'WIDTHxHEIGHT' or a height like 720; got {value!r}")
    short = int(m[1])
    aw, ah = aspect
    if aw >= ah:
        return even(short * aw / ah), even(short)
    return even(short), even(short * ah / aw)


def aspect_of(params: Mapping[str, Any], default: str = "16:9") -> tuple[int, int]:
    """The (w, h) ratio named by ``params.aspect_ratio``."""
    name = params.get("aspect_ratio") or default
    if name not in ASPECT_RATIOS:
        raise ValueError(f"params.aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}; got {name!r}")
    return ASPECT_RATIOS[name]
