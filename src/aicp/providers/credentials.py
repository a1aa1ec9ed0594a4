"""Credentials a chain needs, checked after loading and before any step runs.

A chain whose steps run on a provider stops at once, with exit code 3 and a
message naming the variable, when that provider's key is not set: better than
failing at step 3 after paying for steps 1 and 2. Offline chains need nothing.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping

from aicp._errors import CredentialsError

# provider -> (environment variable, where to get a key)
PROVIDER_KEYS: dict[str, tuple[str, str]] = {
    "fal": ("FAL_KEY", "https://fal.ai/dashboard/keys"),
}


def _leaf_steps(steps: Any) -> Iterator[Any]:
    for step in steps:
        if step.is_group:
            yield from _leaf_steps(m for m in step.members if m.enabled)
        elif step.enabled:
            yield step


def required_credentials(chain: Any) -> dict[str, list[Any]]:
    """Environment variable -> the enabled steps that need it."""
    needed: dict[str, list[Any]] = {}
    for step in _leaf_steps(chain.steps):
        provider = step.executor.provider if step.executor else "local"
        if provider in PROVIDER_KEYS:
            needed.setdefault(PROVIDER_KEYS[provider][0], []).append(step)
    return needed


def missing_credentials(chain: Any, environ: Mapping[str, str] | None = None) -> list[tuple[list[Any], str]]:
    """(the steps that need it, the message) for each variable the chain needs and lacks."""
    environ = os.environ if environ is None else environ
    problems = []
    for variable, steps in required_credentials(chain).items():
        if environ.get(variable, "").strip():
            continue
        where = ", ".join(f"{s.location} ({s.type}/{s.model})" for s in steps[:3])
        more = f" and {len(steps) - 3} more" if len(steps) > 3 else ""
        url = next(url for var, url in PROVIDER_KEYS.values() if var == variable)
        problems.append((steps, f"{variable} is not set; {where}{more} need{'s' if len(steps) == 1 else ''} it "
                                f"(get a key at {url}, then export {variable}=...)"))
    return problems


def check_credentials(chain: Any, environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`CredentialsError` (exit 3) naming each variable the chain needs and lacks."""
    problems = missing_credentials(chain, environ)
    if problems:
        raise CredentialsError("; ".join(message for _, message in problems))
