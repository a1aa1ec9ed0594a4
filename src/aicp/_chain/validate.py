"""Validation of a parsed chain: every mistake in one pass, each positioned, then an immutable plan.

Everything that can be known before a step runs is checked here, so a chain
never fails halfway through for a reason its file already showed: unknown
keys (with did-you-mean), bad values, unknown step types or models, params a
model does not take, executors this machine cannot run, ``input_from`` names,
and the flow of data kinds from step to step. Checking goes on after a
mistake, so a chain with ten mistakes gets ten errors in one run, sorted by
position: ``chain.yaml:7:5: steps[2].timeout: must be a positive number, got -3``.

The keys of a chain and of a step are declared in :data:`CHAIN_KEYS` and
:data:`STEP_KEYS` (the JSON Schema of ``aicp schema chain`` is generated from
the same declarations). The format is the AI Content Pipeline tool's, plus our
additions; its keys that mean nothing here (``temp_dir``, ``cleanup_temp``)
are known and accepted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aicp._chain.limits import FIELDS, field_problem
from aicp._chain.params import Param, by_name, count, non_negative, positive, text
from aicp._chain.model import DEFAULT_NAME, Chain, Step, path_text
from aicp._chain.steptypes import (STEP_TYPES, Executor, StepType, accepts, executor_for, made_available,
                                   model_names, takes_from)
from aicp._errors import ChainError, MissingInputError, Problem
from aicp._redact import Redactor, secret_param_values
from aicp._targets import load_target, target_problem
from aicp.providers.models import resolve

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping, Protocol

    class Positions(Protocol):
        """Where each value of the document is (see :mod:`aicp._chain.parse`; it refused duplicate keys)."""

        def of(self, path: tuple[Any, ...]) -> tuple[int, int] | None: ...

INPUT_TYPES = ("text", "image", "video", "auto")
MERGE_STRATEGIES = ("collect_all", "first_success")

_NO_TEMP = "aicp writes no temporary files: each output is written under a hidden name and renamed"

CHAIN_KEYS: dict[str, Param] = by_name([
    text("name", default=DEFAULT_NAME, help="the chain's name (events, run records)"),
    Param("description", ("string",), help="what the chain is for"),
    text("prompt", help="the input text, unless --input-text, --prompt-file or --input give one"),
    Param("input_type", ("string",), choices=INPUT_TYPES, default="auto",
          help="what the chain starts from; auto: what the first step takes"),
    Param("input_image", ("path",), help="the input image when the chain starts from an image"),
    Param("input_video", ("path",), help="the input video when the chain starts from a video"),
    text("output_dir", default="output", help="where outputs go, relative to the current directory"),
    Param("steps", ("list",), required=True, help="the steps, run in order"),
    positive("timeout", help="default per-step timeout in seconds"),
    count("retry_count", default=0, help="default retries of a failed step"),
    non_negative("kill_grace", default=5, help="seconds between SIGTERM and SIGKILL"),
    positive("retry_delay", default=1, help="first retry delay in seconds (doubles each time)"),
    positive("retry_max_delay", default=30, help="longest retry delay in seconds"),
    non_negative("max_cost", help="budget in USD: a step whose estimate would take the run "
          "past it does not start (--max-cost overrides)"),
    Param("save_intermediates", ("boolean",), default=False,
          help="write output_dir/reports/<name>_step<N>_intermediate_<time>.json after every step"),
    Param("temp_dir", ("string",), status="ignored", note=_NO_TEMP),
    Param("cleanup_temp", ("boolean",), status="ignored", note=_NO_TEMP),
])

STEP_KEYS: dict[str, Param] = by_name([
    text("type", required=True, help="the step type ('aicp list-steps')"),
    Param("model", ("string",), help="the model or executor ('aicp list-models')"),
    Param("params", ("mapping",), help="the step's parameters ('aicp list-steps --params')"),
    Param("enabled", ("boolean",), default=True, help="false: skipped, not counted"),
    text("name", help="a unique name (events, input_from)"),
    text("input_from", help="take the output of the earlier step with this name"),
    count("retry_count", help="retries of this step (default: the chain's)"),
    positive("timeout", help="seconds (default: the chain's)"),
    positive("max_memory_mb", help="memory limit of the step's whole process tree"),
])

GROUP_PARAMS: dict[str, Param] = by_name([
    Param("parallel_steps", ("list",), required=True, help="the members, run concurrently"),
    Param("max_workers", ("integer",), minimum=1, help="members running at once (default: up to 4)"),
    Param("merge_strategy", ("string",), choices=MERGE_STRATEGIES, default="collect_all",
          help="collect_all: every member must succeed; first_success: the first one wins"),
])

# How close an unknown top-level key must be to a known one to be called a typo (an error)
# rather than an extra key (a warning): 'promt' -> 'prompt' is, 'author' is not.
_TYPO_CUTOFF = 0.8


def did_you_mean(value: Any, choices: Any, cutoff: float = 0.6) -> str:
    if not isinstance(value, str):
        return ""
    import difflib  # here: a valid chain never needs it

    close = difflib.get_close_matches(value, [c for c in choices if isinstance(c, str)], n=1, cutoff=cutoff)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _models_hint(step_type: StepType) -> str:
    models = sorted(model_names(step_type))
    return f"; available models: {', '.join(models)}" if models else ""


class Validator:
    """Checks one parsed chain document; collects every problem instead of stopping at the first."""

    def __init__(self, label: str, positions: Positions, base_dir: Path, *, here: str = "no",
                 work_dir: Path | None = None) -> None:
        """``here``: also check that the chain will run on this machine: ``"no"``; ``"params"``
        (the files its steps' params name exist: run-chain); ``"offline"`` (and the chain's input
        files); ``"yes"`` (and the credentials its steps need are set)."""
        self.label = label
        self.positions = positions
        self.base_dir = base_dir
        self.check_here = here
        self.work_dir = work_dir  # what a relative output_dir is relative to (None: the current directory)
        self.problems: list[Problem] = []
        self.named: dict[str, int] = {}  # step name -> index of its top-level step in the file
        self.redactor = Redactor.from_environment()  # an error quoting an api_key's value shows ***

    def report(self, path: tuple[Any, ...], message: str, severity: str = "error") -> None:
        where = self.positions.of(path)
        line, column = where if where else (None, None)
        self.problems.append(Problem(self.label, line, column, path_text(path), self.redactor.text(message),
                                     severity))

    @property
    def failed(self) -> bool:
        return any(p.severity == "error" for p in self.problems)

    def values(self, data: Mapping[str, Any], keys: Mapping[str, Param], path: tuple[Any, ...],
               skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """The declared keys of ``data`` whose values are acceptable; the others are reported.

        A ``null`` value is left out, as if the key were absent: its default applies (so
        ``enabled: null`` does not disable a step). ``skip`` names keys checked elsewhere with a
        more precise message (the list of steps)."""
        good = {}
        for name, param in keys.items():
            if data.get(name) is None or name in skip:
                continue
            # the numeric fields' documented ranges are one table (aicp._chain.limits)
            message = field_problem(name, data[name]) if name in FIELDS and data[name] is not None \
                else param.problem(data[name])
            if message:
                self.report(path + (name,), message + did_you_mean(data[name], param.choices))
            else:
                good[name] = data[name]
        return good

    def unknown_keys(self, data: Mapping[str, Any], keys: Mapping[str, Param], path: tuple[Any, ...],
                     what: str) -> None:
        for key in data:
            if key not in keys:
                self.report(path + ("<key>", key), f"unknown {what} '{key}'{did_you_mean(key, keys)}")

    # -- the chain ----------------------------------------------------------

    def chain(self, data: Any) -> Chain:
        if not isinstance(data, dict):
            self.report((), f"a chain must be a mapping with 'steps', got {type(data).__name__}")
            raise ChainError.of(self.problems)
        self.redactor.learn(secret_param_values(data.get("steps")))
        extra = self.top_level_extras(data)
        top = self.values(data, CHAIN_KEYS, (), skip=("steps",))
        steps = self.steps(data)
        built = tuple(s for s in steps if s is not None)
        enabled = tuple(s for s in built if s.enabled)
        self.input_sources(enabled)
        if steps and len(built) == len(steps):
            if not enabled:
                self.report(("steps",), "every step is disabled; nothing would run")
            elif not self.failed:  # with a broken step, the flow would only repeat its error
                self.flow(enabled, top.get("input_type", "auto"))
        if self.failed:
            raise ChainError.of(self.problems)
        if self.check_here != "no":
            self.targets(built)  # warnings: before build(), which keeps them in the chain
        chain = self.build(data, top, built, extra)
        if self.check_here != "no":
            self.here(chain)
            if self.failed and self.check_here == "params":  # run-chain: a file you named is missing (exit 3)
                raise MissingInputError(ChainError.of(self.problems).message)
            if self.failed:
                raise ChainError.of(self.problems)
        return chain

    def top_level_extras(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Unknown top-level keys: a near miss of a known key is a typo (an error), others are kept."""
        extra = {}
        for key, value in data.items():
            if key in CHAIN_KEYS:
                continue
            hint = did_you_mean(key, CHAIN_KEYS, _TYPO_CUTOFF)
            if hint:
                self.report(("<key>", key), f"unknown top-level key '{key}'{hint}")
            else:
                self.report(("<key>", key), f"unknown top-level key '{key}' is kept but not used", "warning")
                extra[key] = value
        return extra

    def steps(self, data: Mapping[str, Any]) -> list[Step | None]:
        steps_data = data.get("steps")
        if "steps" not in data:
            self.report((), "'steps' is required")
            return []
        if not isinstance(steps_data, list) or not steps_data:
            self.report(("steps",), f"must be a non-empty list of steps, got {steps_data!r}")
            return []
        return [self.step(s, ("steps", i), in_group=False) for i, s in enumerate(steps_data)]

    def build(self, data: Mapping[str, Any], top: Mapping[str, Any], steps: tuple[Step, ...],
              extra: dict[str, Any]) -> Chain:
        defaults = {k: p.default for k, p in CHAIN_KEYS.items() if p.default is not None}
        value = {**defaults, **top}
        output_dir = Path(value["output_dir"])
        return Chain(
            name=value["name"], steps=tuple(s for s in steps if s.enabled), source=self.label,
            base_dir=self.base_dir,
            output_dir=output_dir if output_dir.is_absolute() else (self.work_dir or Path.cwd()).absolute() / output_dir,
            description=value.get("description") or "", prompt=value.get("prompt"),
            input_type=value["input_type"], input_image=value.get("input_image"),
            input_video=value.get("input_video"), timeout=_float(value.get("timeout")),
            retry_count=value["retry_count"], kill_grace=float(value["kill_grace"]),
            retry_delay=float(value["retry_delay"]), retry_max_delay=float(value["retry_max_delay"]),
            max_cost=_float(value.get("max_cost")), save_intermediates=value["save_intermediates"],
            disabled_steps=tuple(s for s in steps if not s.enabled), extra=extra,
            warnings=tuple(str(p) for p in self.problems if p.severity == "warning"),
            notes=tuple(p for p in self.problems if p.severity == "warning"), raw=dict(data),
        )

    # -- will it run here -----------------------------------------------------

    def here(self, chain: Chain) -> None:
        """The files the chain and its steps' params name exist and are readable; the credentials its
        steps need are set. ``"params"`` (run-chain, whose input may come from the command line)
        checks only the params' files."""
        for key in ("input_image", "input_video") if self.check_here != "params" else ():
            value = getattr(chain, key)
            if value is not None:
                self.file(value, (key,), key)
        for step, name, value, param in _declared_params(chain.steps):
            if param.names_file(value):
                self.file(value, step.path + ("params", name), f"params.{name}")
        # a chain of local steps needs no key (nor the module that knows them)
        remote = any(s.executor and s.executor.provider != "local" for s in _leaves(chain.steps))
        if self.check_here == "yes" and remote:
            from aicp.providers.credentials import missing_credentials

            for steps, message in missing_credentials(chain):
                self.report(steps[0].path + ("model",), message)

    def targets(self, steps: tuple[Step, ...]) -> None:
        """The functions the steps' params name (``module:function``), looked for without running
        the user's code. A miss is a warning, not an error: the module may be written, installed
        or generated before the step runs (an earlier step may make it); if it is still missing
        then, the step fails in one line, no traceback (:func:`aicp.steps.python_step.run`)."""
        search = [str(self.base_dir), *filter(None, sys.path)]  # what the worker's sys.path will be
        for step, name, value, param in _declared_params(tuple(s for s in steps if s.enabled)):
            problem = target_problem(value, search) if param.names_target(value) else None
            if problem:
                self.report(step.path + ("params", name), problem, "warning")

    def file(self, value: str, path: tuple[Any, ...], what: str) -> None:
        """Report ``value`` unless it names a readable file (relative: to the chain's folder, else the
        current directory, as the steps resolve it)."""
        candidate = Path(value).expanduser()
        found = next((c for c in ([candidate] if candidate.is_absolute() else
                                  [self.base_dir / candidate, candidate]) if c.is_file()), None)
        if found is None:
            self.report(path, f"{what} not found: {value}")
        elif not os.access(found, os.R_OK):
            self.report(path, f"{what} is not readable: {value}")

    # -- one step -----------------------------------------------------------

    def step(self, data: Any, path: tuple[Any, ...], in_group: bool) -> Step | None:
        if not isinstance(data, dict):
            self.report(path, f"a step must be a mapping with 'type', got {data!r}")
            return None
        self.unknown_keys(data, STEP_KEYS, path, "step key")
        good = self.values(data, STEP_KEYS, path)
        step_type = self.step_type(data, good, path, in_group)
        if step_type is None:
            return None
        self.step_name(good.get("name"), path)
        params = good.get("params") or {}
        common: dict[str, Any] = dict(
            type=step_type.name, model=good.get("model"), params=params, enabled=good.get("enabled", True),
            retry_count=good.get("retry_count"), name=good.get("name"), timeout=_float(good.get("timeout")),
            max_memory_mb=_float(good.get("max_memory_mb")), consumes=step_type.consumes,
            produces=step_type.produces, path=path, input_from=good.get("input_from"),
        )
        if step_type.name == "parallel_group":
            return self.group(common, params, path)
        # params that are not a mapping were reported: checking them again would only repeat it
        params_ok = data.get("params") is None or "params" in good
        executor = self.executor(step_type, common["model"], params if params_ok else None, path) \
            if common["enabled"] else None
        if executor is not None and executor.consumes:  # a model that takes another kind than its type
            common["consumes"] = executor.consumes
        return Step(executor=executor, **common)

    def step_type(self, data: Mapping[str, Any], good: Mapping[str, Any], path: tuple[Any, ...],
                  in_group: bool) -> StepType | None:
        if data.get("type") is None:
            self.report(path, "'type' is required")
            return None
        type_name = good.get("type")
        step_type = STEP_TYPES.get(type_name or "")
        if type_name is not None and step_type is None:
            self.report(path + ("type",), f"unknown step type '{type_name}'{did_you_mean(type_name, STEP_TYPES)}"
                        "; 'aicp list-steps' shows them all")
        if step_type is not None and in_group and step_type.name == "parallel_group":
            self.report(path + ("type",), "a parallel_group cannot contain another parallel_group")
            return None
        return step_type

    def step_name(self, name: str | None, path: tuple[Any, ...]) -> None:
        if name is None:
            return
        if name in self.named:
            self.report(path + ("name",), f"duplicate step name '{name}'; names must be unique")
        else:
            self.named[name] = path[1]

    def executor(self, step_type: StepType, model: str | None, params: Mapping[str, Any] | None,
                 path: tuple[Any, ...]) -> Executor | None:
        """The executor serving the step; ``params`` None: they could not be read, do not check them."""
        if not step_type.executors:  # before 'model is required': no model would make it run
            self.report(path + ("type",), f"step type '{step_type.name}' is recognised but not available "
                        "in this version of aicp (no executor serves it yet)")
            return None
        if step_type.model_required and not model:
            self.report(path, f"'model' is required for {step_type.name} steps" + _models_hint(step_type))
            return None
        executor = executor_for(step_type, model, params)
        if executor is None:
            self.report(path + ("model",), f"unknown model '{model}' for {step_type.name}"
                        + did_you_mean(model, model_names(step_type)) + _models_hint(step_type))
            return None
        if executor.available:
            missing = load_target(executor.available)()
            if missing:
                self.report(path + ("model",) if model else path + ("type",),
                            f"{step_type.name}{'/' + model if model else ''} is not available "
                            f"on this machine: {missing}")
        if params is not None:
            reported = self.params(executor, params, path, f"{step_type.name}{'/' + model if model else ''}")
            key = resolve(step_type.name, model, params)
            for param_path, message in load_target(executor.check)(dict(params), key) if executor.check else ():
                parts = tuple(int(p) if p.isdigit() else p for p in param_path.split("."))
                if parts[1:2] and parts[1] in reported:  # its declaration already said what is wrong
                    continue
                self.report(path + parts, message)
        return executor

    def params(self, executor: Executor, params: Mapping[str, Any], path: tuple[Any, ...], label: str) -> set[str]:
        """Every param against the executor's declaration; returns the names found wrong."""
        declared = executor.declared
        ppath = path + ("params",)
        wrong = set()
        for key, value in params.items():
            param = declared.get(key)
            if param is None and not executor.open_params and declared:
                self.report(ppath + ("<key>", key), f"unknown param '{key}' for {label}"
                            + (did_you_mean(key, declared) or "; 'aicp list-steps --params' lists them"))
                wrong.add(key)
            elif param is not None and (message := param.problem(value)):
                self.report(ppath + (key,), message + did_you_mean(value, param.choices))
                wrong.add(key)
        for name, param in declared.items():
            if param.required and params.get(name) is None:
                self.report(ppath + (name,), f"'{name}' is required for {label}: {param.expected()}")
                wrong.add(name)
        return wrong

    def group(self, common: dict[str, Any], params: Mapping[str, Any], path: tuple[Any, ...]) -> Step:
        ppath = path + ("params",)
        self.unknown_keys(params, GROUP_PARAMS, ppath, "parallel_group param")
        good = self.values(params, GROUP_PARAMS, ppath, skip=("parallel_steps",))
        members = self.members(params, ppath)
        live = [m for m in members if m.enabled]
        if common["enabled"] and members and not live:
            self.report(ppath + ("parallel_steps",), "every member of this group is disabled")
        strategy = good.get("merge_strategy", "collect_all")
        common = {**common, "produces": _group_produces(live, strategy),
                  "params": {k: v for k, v in params.items() if k != "parallel_steps"}}
        return Step(members=members, max_workers=good.get("max_workers") or min(4, max(1, len(live))),
                    merge_strategy=strategy, **common)

    def members(self, params: Mapping[str, Any], ppath: tuple[Any, ...]) -> tuple[Step, ...]:
        """A group's members; () when they are missing, or when one of them is broken (it was reported)."""
        members_data = params.get("parallel_steps")
        if not isinstance(members_data, list) or not members_data:
            # a misspelt 'parallel_steps' has its did-you-mean already
            if not any(did_you_mean(k, ("parallel_steps",)) for k in params if k not in GROUP_PARAMS):
                self.report(ppath + ("parallel_steps",) if "parallel_steps" in params else ppath,
                            "a parallel_group needs params.parallel_steps, a non-empty list of steps")
            return ()
        built = [self.step(m, ppath + ("parallel_steps", i), in_group=True) for i, m in enumerate(members_data)]
        members = tuple(m for m in built if m is not None)
        return members if len(members) == len(built) else ()

    def needs(self, consumer: Step, available: set[str]) -> None:
        """Further inputs an executor takes from the flow (lip-sync's audio), unless a param gives them."""
        for field, kind in consumer.executor.needs if consumer.executor else ():
            if consumer.params.get(field) is None and not {kind, "any"} & available:
                self.report(consumer.path + ("model",) if consumer.model else consumer.path,
                            f"{consumer.model or consumer.type} also needs {kind}: give params.{field}, or put "
                            f"a step that produces {kind} before this one"
                            + ("" if consumer.model else _generating(consumer.type)))

    # -- input_from ------------------------------------------------------------

    def input_sources(self, steps: tuple[Step, ...]) -> None:
        """Each ``input_from`` names a step that runs before: an earlier top-level step or a member of one."""
        for step in steps:
            for consumer in (step, *step.members):
                if consumer.input_from is None:
                    continue
                source = self.named.get(consumer.input_from)
                if source is None or source >= consumer.path[1]:
                    where = "no step" if source is None else "a step that does not run before this one"
                    self.report(consumer.path + ("input_from",), f"'{consumer.input_from}' names {where}"
                                + did_you_mean(consumer.input_from, self.named))

    # -- the flow of data kinds ----------------------------------------------

    def flow(self, steps: tuple[Step, ...], input_type: str) -> None:
        """Check that each step can take what the steps before it produce.

        A step takes the previous step's output when its kind fits; otherwise
        the most recent earlier output of the kind it needs (the chain's prompt
        always counts as text). So ``title card -> clip -> narration -> mux``
        is valid: the narration reads the prompt, the mux the latest video.
        A step with ``input_from`` takes what the named step produces.
        """
        first = steps[0].takes if input_type == "auto" else input_type
        available = {"text", first}
        previous = first
        produced_by: dict[str, str] = {}
        for i, step in enumerate(steps):
            for consumer in _consumers(step):
                given = produced_by.get(consumer.input_from or "", previous)
                if not (accepts(consumer.consumes, given) if consumer.input_from
                        else takes_from(consumer.consumes, given, available) is not None):
                    source = f"step '{consumer.input_from}'" if consumer.input_from else \
                        ("chain input" if i == 0 else "previous step")
                    self.report(consumer.path + ("type",), f"{consumer.type} expects {consumer.consumes} input, "
                                f"but the {source} gives {given} and no earlier step produces {consumer.consumes}")
                self.needs(consumer, available)
            produced = step.produces
            if step.type == "image_to_video" and previous == "images":
                produced = "videos"
            if produced == "any":
                produced = previous if step.consumes == "any" and not step.is_group else "any"
            for named in (step, *step.members):
                if named.name:
                    produced_by[named.name] = produced if named is step else named.produces
            available.update(made_available(produced))
            previous = produced


def _group_produces(live: list[Step], strategy: str) -> str:
    """What a group hands on: its winner's kind (first_success), a list of images or clips, else any."""
    kinds = {m.produces for m in live}
    if len(kinds) != 1:
        return "any"
    kind = kinds.pop()
    if strategy == "first_success":
        return kind
    return kind + "s" if kind in ("image", "video") else "any"


def _generating(type_name: str) -> str:
    """For a step without a model: the catalogue's models of its type that make the input themselves."""
    makers = [k for k, e in STEP_TYPES[type_name].executors.items() if k and e.provider != "local"]
    return f" (or use model: {' / '.join(makers)}, which generates it)" if makers else ""


def _leaves(steps: tuple[Step, ...]) -> Iterator[Step]:
    """Every enabled step that runs an executor: the steps, and the members of groups."""
    for step in steps:
        yield from (m for m in step.members if m.enabled) if step.is_group else (step,)


def _declared_params(steps: tuple[Step, ...]) -> Iterator[tuple[Step, str, Any, Param]]:
    """Each param of :func:`_leaves` that its executor declares, with the declaration."""
    for step in _leaves(steps):
        declared = step.executor.declared if step.executor else {}
        for name, value in step.params.items():
            param = declared.get(name)
            if param is not None:
                yield step, name, value, param


def _consumers(step: Step) -> Iterator[Step]:
    if step.is_group:
        yield from (m for m in step.members if m.enabled)
    else:
        yield step


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
