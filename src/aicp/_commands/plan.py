"""What one chain would do, without running it: ``aicp validate`` (its plan) and ``aicp estimate-cost``.

Both load and validate the chain file, then print what the plan says: its
steps, limits and flow of data kinds, or what each step is estimated to cost
and which credentials it needs. Neither opens a connection nor needs a key;
the prices are those of the catalogue (``aicp list-models``), the same numbers
``step_complete`` and ``total_cost`` report.
"""

from __future__ import annotations


from aicp._chain.load import load_chain
from aicp._chain.model import Chain, Step
from aicp._commands.output import print_envelope, step_number, write_stdout

TYPE_CHECKING = False  # typing costs ~5 ms at start-up: for the type checker only
if TYPE_CHECKING:
    from typing import Any


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
    """Every mistake at once (the CLI prints them, or ``--json`` lists them); then whether it will
    run here: files, executors, credentials (``--offline``: not credentials)."""
    chain = load_chain(args.config, here="offline" if args.offline else "yes", work_dir=args.base_dir, keep_parsed=True)
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


def _step_costs(steps: tuple[Step, ...], prefix: str = "") -> list[dict[str, Any]]:
    rows = []
    for i, step in enumerate(steps):
        if not step.enabled:
            continue
        index = f"{prefix}{i}"
        row: dict[str, Any] = {"step": index, "location": step.location, "type": step.type,
                               "model": step.model, "cost": round(step.estimated_cost, 6)}
        if step.is_group:
            row["members"] = _step_costs(step.members, f"{index}.")
        else:
            row["provider"] = step.executor.provider if step.executor else "local"
        rows.append(row)
    return rows


def _cost_lines(rows: list[dict[str, Any]], indent: str = "  ") -> list[str]:
    lines = []
    for r in rows:
        model = f" ({r['model']})" if r["model"] else ""
        provider = f" [{r['provider']}]" if "provider" in r else ""
        lines.append(f"{indent}{step_number(r['step'])}. {r['type']}{model}{provider}: ${r['cost']:.3f}")
        lines += _cost_lines(r.get("members", []), indent + "   ")
    return lines


def estimate_cost(args: Any) -> int:
    import os

    from aicp.providers.credentials import PROVIDER_KEYS, required_credentials

    chain = load_chain(args.config, work_dir=args.base_dir, keep_parsed=True)
    rows = _step_costs(chain.steps)
    present = {key.variable: key.value(os.environ) is not None for key in PROVIDER_KEYS.values()}
    needs = {variable: present[variable] for variable in required_credentials(chain)}
    data = {"name": chain.name, "source": chain.source, "estimated_cost": round(chain.estimated_cost, 6),
            "currency": "USD", "steps": rows, "credentials": needs,
            # the AI Content Pipeline tool's estimate, same names and shape
            "total_cost": round(chain.estimated_cost, 6),
            "step_costs": [{"step": s.type, "model": s.model, "cost": round(s.estimated_cost, 6)} for s in chain.steps]}
    if chain.max_cost is not None:
        data["max_cost"] = chain.max_cost
    if args.json:
        print_envelope("estimate-cost", data)
        return 0
    lines = [f"'{chain.name}' ({chain.source}): estimated cost ${data['estimated_cost']:.3f}"]
    lines += _cost_lines(rows)
    lines += [f"needs {variable} ({'set' if ok else 'NOT set'})" for variable, ok in needs.items()]
    if not args.quiet:
        write_stdout("\n".join(lines) + "\n")
    return 0
