"""Chain files: load YAML or JSON, validate everything, and return an immutable plan (:mod:`.model`).

Everything that can be known before a step runs is checked here, so a chain
never fails halfway through for a reason its file already showed: unknown
keys, bad values, unknown step types or models, executors this machine cannot
run, parameters an executor rejects, and the flow of data kinds from step to
step. Every error names the file, the line and column, and the field:
``chain.yaml:7:5: steps[2].timeout: must be a positive number, got -3``.

The format is the one of the AI Content Pipeline tool (``name``, ``prompt``,
``steps: [{type, model, params, enabled, retry_count}]``, ``output_dir``,
``parallel_group``), so its users' files load unchanged, plus our additions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from aicp._chain.limits import field_problem
from aicp._chain.model import Chain, Step
from aicp._chain.parse import Document, Positions, parse
from aicp._chain.source import read_text
from aicp._errors import ChainError
from aicp._redact import Redactor, secret_param_values
from aicp.providers.models import resolve
from aicp._chain.steptypes import (STEP_TYPES, Executor, StepType, executor_for, made_available, model_names,
                                   takes_from)
from aicp._targets import load_target

TOP_LEVEL_KEYS = {
    "name", "description", "prompt", "input_type", "input_image", "input_video", "output_dir",
    "steps", "timeout", "retry_count", "kill_grace", "retry_delay", "retry_max_delay",
}
STEP_KEYS = {"type", "model", "params", "enabled", "retry_count", "name", "timeout", "max_memory_mb"}
INPUT_TYPES = ("text", "image", "video", "auto")
MERGE_STRATEGIES = ("collect_all", "first_success")


# --------------------------------------------------------------------------- loading


def load_chain(source: str | Path | dict[str, Any], *, base_dir: Path | None = None,
               label: str | None = None, output_dir: str | Path | None = None,
               overrides: dict[str, Any] | None = None) -> Chain:
    """Load and validate a chain from a file path (``-`` for stdin), a YAML/JSON text, or a dict.

    Relative paths in the chain resolve against the chain file's folder (the
    current directory for stdin, text and dicts). ``output_dir`` overrides the
    chain's own; ``overrides`` replace top-level keys (``run-chain --set``, a batch row's). Raises :class:`ChainError` (exit 2) with every message
    positioned, or :class:`MissingInputError` (exit 3) when the file cannot be read.
    The text is parsed once (:mod:`aicp._chain.parse`).
    """
    if isinstance(source, dict):
        document = Document(source, Positions(lambda: None), label or "<chain>")
    elif isinstance(source, Path) or ("\n" not in source and not source.lstrip().startswith("{")):
        text, label = read_text(str(source), "chain file")
        base_dir = base_dir or (Path.cwd() if str(source) == "-" else Path(source).resolve().parent)
        document = parse(text, label)
    else:
        document = parse(source, label or "<chain>")
    data = document.data
    if overrides and isinstance(data, dict):
        data = {**data, **overrides}
    if output_dir is not None and isinstance(data, dict):
        data = {**data, "output_dir": str(output_dir)}
    document.check(data)
    return _Validator(document, base_dir or Path.cwd()).chain(data)


# --------------------------------------------------------------------------- validation


class _Validator:
    def __init__(self, document: Document, base_dir: Path) -> None:
        self.document = document
        self.label = document.label
        self.base_dir = base_dir
        self.names: set[str] = set()
        self.redactor = Redactor.from_environment()

    def fail(self, path: tuple[Any, ...], message: str) -> ChainError:
        return self.document.error(path, self.redactor.text(message))  # an error quoting an api_key's value shows ***

    # -- scalar checks ------------------------------------------------------

    def string(self, data: dict[str, Any], key: str, path: tuple[Any, ...],
               required: bool = False) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                raise self.fail(path, f"'{key}' is required") if key not in data else \
                    self.fail(path + (key,), "must be a non-empty string, got null")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.fail(path + (key,), f"must be a non-empty string, got {value!r}")
        return value

    def number(self, data: dict[str, Any], key: str, path: tuple[Any, ...]) -> float | None:
        """A numeric field, within its documented range (:data:`aicp._chain.limits.FIELDS`)."""
        value = data.get(key)
        if value is None:
            return None
        problem = field_problem(key, value)
        if problem:
            raise self.fail(path + (key,), problem)
        return float(value)

    def count(self, data: dict[str, Any], key: str, path: tuple[Any, ...]) -> int | None:
        """A whole-number field, within its documented range."""
        value = data.get(key)
        if value is None:
            return None
        problem = field_problem(key, value)
        if problem:
            raise self.fail(path + (key,), problem)
        return int(value)

    def choice(self, data: dict[str, Any], key: str, path: tuple[Any, ...],
               choices: tuple[str, ...], default: str) -> str:
        value = data.get(key, default)
        if value not in choices:
            raise self.fail(path + (key,), f"must be one of {', '.join(choices)}, got {value!r}"
                            + _did_you_mean(value, choices))
        return value

    # -- the chain ----------------------------------------------------------

    def chain(self, data: Any) -> Chain:
        if not isinstance(data, dict):
            raise self.fail((), f"a chain must be a mapping with 'name' and 'steps', got {type(data).__name__}")
        self.redactor.learn(secret_param_values(data.get("steps")))
        name = self.string(data, "name", (), required=True)
        extra = {k: v for k, v in data.items() if k not in TOP_LEVEL_KEYS}
        warnings = tuple(
            f"{self.label}: unknown top-level key '{k}' is kept but not used{_did_you_mean(k, TOP_LEVEL_KEYS)}"
            for k in extra
        )
        for key in ("description", "prompt", "input_image", "input_video", "output_dir"):
            self.string(data, key, ())
        input_type = self.choice(data, "input_type", (), INPUT_TYPES, "auto")
        steps_data = data.get("steps")
        if "steps" not in data:
            raise self.fail((), "'steps' is required")
        if not isinstance(steps_data, list) or not steps_data:
            raise self.fail(("steps",), f"must be a non-empty list of steps, got {steps_data!r}")
        steps = [self.step(s, ("steps", i), in_group=False) for i, s in enumerate(steps_data)]
        enabled = tuple(s for s in steps if s.enabled)
        if not enabled:
            raise self.fail(("steps",), "every step is disabled; nothing would run")
        self.flow(enabled, input_type)
        output_dir = Path(data.get("output_dir") or "output")
        retry_delay = self.number(data, "retry_delay", ())
        retry_max_delay = self.number(data, "retry_max_delay", ())
        kill_grace = self.number(data, "kill_grace", ())
        return Chain(
            name=name or "",
            steps=enabled,
            source=self.label,
            base_dir=self.base_dir,
            output_dir=output_dir if output_dir.is_absolute() else Path.cwd() / output_dir,
            description=data.get("description") or "",
            prompt=data.get("prompt"),
            input_type=input_type,
            input_image=data.get("input_image"),
            input_video=data.get("input_video"),
            timeout=self.number(data, "timeout", ()),
            retry_count=self.count(data, "retry_count", ()) or 0,
            kill_grace=5.0 if kill_grace is None else kill_grace,
            retry_delay=1.0 if retry_delay is None else retry_delay,
            retry_max_delay=30.0 if retry_max_delay is None else retry_max_delay,
            disabled_steps=tuple(s for s in steps if not s.enabled),
            extra=extra,
            warnings=warnings,
            raw=data,
        )

    def step(self, data: Any, path: tuple[Any, ...], in_group: bool) -> Step:
        if not isinstance(data, dict):
            raise self.fail(path, f"a step must be a mapping with 'type', got {data!r}")
        for key in data:
            if key not in STEP_KEYS:
                raise self.fail(path + ("<key>", key), f"unknown step key '{key}'{_did_you_mean(key, STEP_KEYS)}")
        type_name = self.string(data, "type", path, required=True)
        step_type = STEP_TYPES.get(type_name or "")
        if step_type is None:
            raise self.fail(path + ("type",), f"unknown step type '{type_name}'{_did_you_mean(type_name, STEP_TYPES)}"
                            "; 'aicp list-steps' shows them all")
        if in_group and step_type.name == "parallel_group":
            raise self.fail(path + ("type",), "a parallel_group cannot contain another parallel_group")
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise self.fail(path + ("model",), f"must be a string, got {model!r}")
        params = data.get("params")
        if params is None:
            params = {}
        elif not isinstance(params, dict):
            raise self.fail(path + ("params",), f"must be a mapping, got {params!r}")
        enabled = data.get("enabled", True)
        if not isinstance(enabled, bool):
            raise self.fail(path + ("enabled",), f"must be true or false, got {enabled!r}")
        name = self.string(data, "name", path)
        if name is not None:
            if name in self.names:
                raise self.fail(path + ("name",), f"duplicate step name '{name}'; names must be unique")
            self.names.add(name)
        common: dict[str, Any] = dict(
            type=step_type.name,
            model=model,
            params=params,
            enabled=enabled,
            retry_count=self.count(data, "retry_count", path),
            name=name,
            timeout=self.number(data, "timeout", path),
            max_memory_mb=self.number(data, "max_memory_mb", path),
            consumes=step_type.consumes,
            produces=step_type.produces,
            path=path,
        )
        if step_type.name == "parallel_group":
            return self.group(common, params, path)
        executor = self.executor(step_type, model, params, path) if enabled else None
        if executor is not None and executor.consumes:
            common["consumes"] = executor.consumes
        return Step(executor=executor, **common)

    def executor(self, step_type: StepType, model: str | None, params: dict[str, Any],
                 path: tuple[Any, ...]) -> Executor:
        if not step_type.executors:  # before 'model is required': no model would make it run
            raise self.fail(path + ("type",), f"step type '{step_type.name}' is recognised but not available "
                            "in this version of aicp (no executor serves it yet)")
        if step_type.model_required and not model:
            raise self.fail(path, f"'model' is required for {step_type.name} steps"
                            + _models_hint(step_type))
        executor = executor_for(step_type, model, params)
        if executor is None:
            raise self.fail(path + ("model",), f"unknown model '{model}' for {step_type.name}"
                            + _did_you_mean(model, model_names(step_type))
                            + _models_hint(step_type))
        if executor.available:
            missing = load_target(executor.available)()
            if missing:
                raise self.fail(path + ("model",) if model else path + ("type",),
                                f"{step_type.name}{'/' + model if model else ''} is not available "
                                f"on this machine: {missing}")
        if executor.check:
            for param_path, message in load_target(executor.check)(params, resolve(step_type.name, model, params)):
                parts = tuple(int(p) if p.isdigit() else p for p in param_path.split("."))
                raise self.fail(path + parts, message)
        return executor

    def group(self, common: dict[str, Any], params: dict[str, Any], path: tuple[Any, ...]) -> Step:
        ppath = path + ("params",)
        members_data = params.get("parallel_steps")
        unknown = set(params) - {"parallel_steps", "max_workers", "merge_strategy"}
        if unknown:  # first: a misspelt 'parallel_steps' deserves its did-you-mean
            key = sorted(unknown)[0]
            raise self.fail(ppath + ("<key>", key), f"unknown parallel_group param '{key}'"
                            + _did_you_mean(key, ("parallel_steps", "max_workers", "merge_strategy")))
        if not isinstance(members_data, list) or not members_data:
            raise self.fail(ppath + ("parallel_steps",) if "parallel_steps" in params else ppath,
                            "a parallel_group needs params.parallel_steps, a non-empty list of steps")
        members = tuple(self.step(m, ppath + ("parallel_steps", i), in_group=True)
                        for i, m in enumerate(members_data))
        live = [m for m in members if m.enabled]
        if common["enabled"] and not live:
            raise self.fail(ppath + ("parallel_steps",), "every member of this group is disabled")
        max_workers = self.count(params, "max_workers", ppath) or min(4, max(1, len(live)))
        strategy = self.choice(params, "merge_strategy", ppath, MERGE_STRATEGIES, "collect_all")
        kinds = {m.produces for m in live}
        produces = "any"
        if len(kinds) == 1 and strategy == "first_success":
            produces = kinds.pop()
        elif len(kinds) == 1 and (kind := kinds.pop()) in ("image", "video"):
            produces = kind + "s"
        common = {**common, "produces": produces,
                  "params": {k: v for k, v in params.items() if k != "parallel_steps"}}
        return Step(members=members, max_workers=max_workers, merge_strategy=strategy, **common)

    # -- the flow of data kinds ----------------------------------------------

    def flow(self, steps: tuple[Step, ...], input_type: str) -> None:
        """Check that each step can take what the steps before it produce.

        A step takes the previous step's output when its kind fits; otherwise
        the most recent earlier output of the kind it needs (the chain's prompt
        always counts as text). So ``title card -> clip -> narration -> mux``
        is valid: the narration reads the prompt, the mux the latest video.
        """
        first = steps[0].takes if input_type == "auto" else input_type
        available = {"text", first}
        previous = first
        for i, step in enumerate(steps):
            for consumer in _consumers(step):
                if takes_from(consumer.consumes, previous, available) is None:
                    raise self.fail(consumer.path + ("type",), f"{consumer.type} expects {consumer.consumes} input, "
                                    f"but the {'chain input' if i == 0 else 'previous step'} gives {previous} "
                                    f"and no earlier step produces {consumer.consumes}")
                for field, kind in consumer.executor.needs if consumer.executor else ():
                    if consumer.params.get(field) is None and not {kind, "any"} & available:
                        raise self.fail(consumer.path + ("model",) if consumer.model else consumer.path,
                                        f"{consumer.model or consumer.type} also needs {kind}: give "
                                        f"params.{field}, or put a step that produces {kind} before this one"
                                        + ("" if consumer.model else _generating(consumer.type)))
            produced = step.produces
            if step.type == "image_to_video" and previous == "images":
                produced = "videos"
            if produced == "any":
                produced = previous if step.consumes == "any" and not step.is_group else "any"
            available.update(made_available(produced))
            previous = produced


def _generating(type_name: str) -> str:
    """For a step without a model: the catalogue's models of its type that make the input themselves."""
    makers = [k for k, e in STEP_TYPES[type_name].executors.items() if k and e.provider != "local"]
    return f" (or use model: {' / '.join(makers)}, which generates it)" if makers else ""


def _consumers(step: Step) -> Iterator[Step]:
    if step.is_group:
        yield from (m for m in step.members if m.enabled)
    else:
        yield step


def _did_you_mean(value: Any, choices: Any) -> str:
    if not isinstance(value, str):
        return ""
    import difflib  # only when a message needs a suggestion: validate's start-up stays lean

    close = difflib.get_close_matches(value, [c for c in choices if isinstance(c, str)], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _models_hint(step_type: StepType) -> str:
    models = sorted(model_names(step_type))
    return f"; available models: {', '.join(models)}" if models else ""
