"""The commands that only tell: ``validate``, ``list-steps`` and ``schema``.

``list-steps --params`` prints every executor's declared params from the
catalogue itself: the README points here instead of copying them.
"""

from __future__ import annotations

import json
from typing import Any

from aicp._chain.load import Chain, Step, load_chain
from aicp._commands.output import print_envelope, step_number, write_stdout
from aicp._chain.steptypes import STEP_TYPES, Executor
from aicp._chain.validate import GROUP_PARAMS


def _step_plan(index: str, step: Step, chain: Chain) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "step": index, "location": step.location, "type": step.type, "model": step.model,
        "name": step.name, "consumes": step.consumes, "produces": step.produces,
        "timeout": step.timeout or chain.timeout,
        "retry_count": step.retry_count if step.retry_count is not None else chain.retry_count,
        "max_memory_mb": step.max_memory_mb, "estimated_cost": round(step.estimated_cost, 6),
    }
    if step.is_group:
        plan["max_workers"] = step.max_workers
        plan["merge_strategy"] = step.merge_strategy
        plan["members"] = [_step_plan(f"{index}.{j}", m, chain) for j, m in enumerate(step.members) if m.enabled]
    else:
        plan["executor"] = step.executor.target if step.executor else None
    return plan


def plan_of(chain: Chain) -> dict[str, Any]:
    """The normalised plan of a chain, as ``validate`` prints it."""
    return {
        "name": chain.name, "source": chain.source, "output_dir": str(chain.output_dir),
        "input_type": chain.input_type, "total_steps": len(chain.steps),
        "disabled_steps": len(chain.disabled_steps), "kill_grace": chain.kill_grace,
        "estimated_cost": round(chain.estimated_cost, 6), "warnings": list(chain.warnings),
        "steps": [_step_plan(str(i), s, chain) for i, s in enumerate(chain.steps)],
    }


def _plan_lines(steps: list[dict[str, Any]], indent: str = "  ") -> list[str]:
    lines = []
    for s in steps:
        model = f" ({s['model']})" if s["model"] else ""
        name = f" '{s['name']}'" if s["name"] else ""
        limits = []
        if s["timeout"]:
            limits.append(f"timeout {s['timeout']:g}s")
        if s["retry_count"]:
            limits.append(f"retries {s['retry_count']}")
        if s["max_memory_mb"]:
            limits.append(f"memory {s['max_memory_mb']:g} MB")
        extra = f" [{', '.join(limits)}]" if limits else ""
        lines.append(f"{indent}{step_number(s['step'])}. {s['type']}{model}{name}: {s['consumes']} -> {s['produces']}"
                     f"{extra}, ~${s['estimated_cost']:.3f}")
        if s.get("members"):
            lines.append(f"{indent}   {s['merge_strategy']}, at most {s['max_workers']} at a time:")
            lines.extend(_plan_lines(s["members"], indent + "     "))
    return lines


def validate(args: Any) -> int:
    chain = load_chain(args.config, here="offline" if args.offline else "yes", work_dir=args.base_dir)
    plan = {"valid": True, **plan_of(chain), "problems": [p.as_dict() for p in chain.notes]}
    if args.json:
        print_envelope("validate", plan)
        return 0
    lines = [f"valid: '{chain.name}' ({chain.source}): {plan['total_steps']} steps"
             + (f", {len(chain.disabled_steps)} disabled" if chain.disabled_steps else "")
             + f", estimated cost ${plan['estimated_cost']:.3f}"]
    lines += _plan_lines(plan["steps"])
    lines += [f"warning: {w}" for w in chain.warnings]
    if not args.quiet:
        write_stdout("\n".join(lines) + "\n")
    return 0


def params_of(executor: Executor) -> list[dict[str, Any]]:
    """An executor's declared params, as ``list-steps`` / ``list-models`` print them."""
    return [p.describe() for p in executor.params]


def param_lines(executor: Executor, indent: str) -> list[str]:
    lines = [f"{indent}{p.line()}" for p in executor.params]
    if executor.open_params:
        lines.append(f"{indent}(and any other param: the function reads ctx.params)")
    return lines or [f"{indent}(no params)"]


def list_steps(args: Any) -> int:
    rows: list[dict[str, Any]] = []
    group = [p.describe() for p in GROUP_PARAMS.values()]
    for t in STEP_TYPES.values():
        executors = [{"model": model, "executor": e.target, "summary": e.summary, "provider": e.provider,
                      "estimated_cost": e.cost, "params": params_of(e), "open_params": e.open_params}
                     for model, e in t.executors.items()]
        rows.append({"type": t.name, "consumes": t.consumes, "produces": t.produces, "summary": t.summary,
                     "model_required": t.model_required, "available": bool(executors) or t.name == "parallel_group",
                     "executors": executors, **({"params": group} if t.name == "parallel_group" else {})})
    if args.json:
        print_envelope("list-steps", rows)
        return 0
    lines = []
    for r, t in zip(rows, STEP_TYPES.values()):
        lines.append(f"{r['type']:<20} {r['consumes']:>6} -> {r['produces']:<7} {r['summary']}")
        if args.params and t.name == "parallel_group":
            lines += [f"{'':<24}{p.line()}" for p in GROUP_PARAMS.values()]
        for model, e in t.executors.items():
            lines.append(f"{'':<22}model {model or '(any)'}: {e.summary} [{e.provider}]")
            if args.params:
                lines += param_lines(e, " " * 24)
        if not r["available"]:
            lines.append(f"{'':<22}not available in this version")
    write_stdout("\n".join(lines) + "\n")
    return 0


def schema(args: Any) -> int:
    """``aicp schema events``: the shipped schema of the event stream; ``aicp schema chain``: the
    schema of chain files, generated from the catalogue."""
    if args.what == "chain":
        from aicp._chain.schema import chain_schema

        data = chain_schema()
        text = json.dumps(data, indent=2) + "\n"
    else:
        from importlib.resources import files

        text = files("aicp").joinpath("events.schema.json").read_text(encoding="utf-8")
        data = json.loads(text)
    if args.json:
        print_envelope("schema", data)
    else:
        write_stdout(text if text.endswith("\n") else text + "\n")
    return 0
