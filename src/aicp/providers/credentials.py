"""Credentials: which variable holds each provider's key, checked before any step runs.

A chain whose steps run on a provider stops at once, with exit code 3 and a
message naming the variable, when that provider's key is not set: better than
failing at step 3 after paying for steps 1 and 2. Offline chains need nothing.
The providers' executors read their key through :func:`provider_key`, so the
rule that the check applies and the key a request sends are the same one.
"""

from __future__ import annotations

import os

from aicp._errors import CredentialsError, ExitCode
from aicp._record import record

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping


@record
class ProviderKey:
    """``variable`` holds the key; each of ``alternatives`` is a set of variables that together stand for it
    (joined with ``:``, as fal-client joins ``FAL_KEY_ID`` and ``FAL_KEY_SECRET``)."""

    variable: str
    url: str
    alternatives: tuple[tuple[str, ...], ...] = ()

    def value(self, environ: Mapping[str, str]) -> str | None:
        for names in ((self.variable,), *self.alternatives):
            values = [environ.get(name, "").strip() for name in names]
            if all(values):
                return ":".join(values)
        return None

    def hint(self) -> str:
        others = "".join(f" (or {' and '.join(names)})" for names in self.alternatives)
        return f"get a key at {self.url}, then export {self.variable}=...{others}"


PROVIDER_KEYS: dict[str, ProviderKey] = {
    "fal": ProviderKey("FAL_KEY", "https://fal.ai/dashboard/keys", (("FAL_KEY_ID", "FAL_KEY_SECRET"),)),
    "gemini": ProviderKey("GEMINI_API_KEY", "https://aistudio.google.com/apikey", (("GOOGLE_API_KEY",),)),
    "openrouter": ProviderKey("OPENROUTER_API_KEY", "https://openrouter.ai/settings/keys"),
    "replicate": ProviderKey("REPLICATE_API_TOKEN", "https://replicate.com/account/api-tokens"),
}


def provider_key(provider: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The key a provider's requests carry, or None when none of its variables is set."""
    return PROVIDER_KEYS[provider].value(os.environ if environ is None else environ)


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
            needed.setdefault(PROVIDER_KEYS[provider].variable, []).append(step)
    return needed


def missing_credentials(chain: Any, environ: Mapping[str, str] | None = None) -> list[tuple[list[Any], str]]:
    """(the steps that need it, the message) for each variable the chain needs and lacks."""
    environ = os.environ if environ is None else environ
    by_variable = {key.variable: key for key in PROVIDER_KEYS.values()}
    problems = []
    for variable, steps in required_credentials(chain).items():
        key = by_variable[variable]
        if key.value(environ):
            continue
        where = ", ".join(f"{s.location} ({s.type}/{s.model})" for s in steps[:3])
        more = f" and {len(steps) - 3} more" if len(steps) > 3 else ""
        problems.append((steps, f"{variable} is not set; {where}{more} need{'s' if len(steps) == 1 else ''} it "
                                f"({key.hint()})"))
    return problems


def check_credentials(chain: Any, environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`CredentialsError` (exit 3) naming each variable the chain needs and lacks."""
    problems = missing_credentials(chain, environ)
    if problems:
        raise CredentialsError("; ".join(message for _, message in problems))


def step_model_and_key(ctx: Any, provider: str) -> tuple[Any, str]:
    """In a worker: the catalogue's model this step runs on ``provider``, and the key to send.

    StepFailed if the step names no such model, or (exit 3) if the key
    vanished after the check that ran before the first step.
    """
    from aicp._context import StepFailed
    from aicp.providers.models import PROVIDER_NAMES, model_for

    model = model_for(ctx.type, ctx.model, ctx.params)
    if model is None or model.provider != provider:
        raise StepFailed(f"'{ctx.model}' is not a {PROVIDER_NAMES[provider]} model for {ctx.type}")
    value = provider_key(provider)
    if value is None:
        key = PROVIDER_KEYS[provider]
        raise StepFailed(f"{key.variable} is not set: {model.key} runs on {PROVIDER_NAMES[provider]} and needs "
                         f"an API key ({key.hint()})", run_exit_code=ExitCode.MISSING)
    return model, value
