"""``aicp list-models`` and ``aicp estimate-cost``: what each model costs, and a chain, offline.

Both read the catalogue (:mod:`aicp._chain.steptypes`, which includes the remote model
table, :mod:`aicp.providers.models`); neither opens a connection nor needs a key. Prices are the estimate
per request at a model's default settings, the same numbers ``step_complete``
and ``total_cost`` report.
"""

from __future__ import annotations

from typing import Any

from aicp._chain.load import Step, load_chain
from aicp._errors import UsageError
from aicp._commands.info import param_lines, params_of
from aicp._commands.output import print_envelope, step_number, write_stdout
from aicp._chain.steptypes import STEP_TYPES


def model_rows(step_type: str | None = None) -> list[dict[str, Any]]:
    """Every model of the catalogue (or of one step type), in catalogue order."""
    from aicp.providers.models import ALIASES, MODELS, auto_model

    rows = []
    for t in STEP_TYPES.values():
        if step_type and t.name != step_type:
            continue
        for model, executor in t.executors.items():
            if model is None:
                continue
            remote = MODELS.get(model) if executor.provider != "local" else None
            aliases = [alias for (type_name, alias), key in ALIASES.items() if type_name == t.name and key == model]
            if auto_model(t.name) == model:
                aliases.append("auto")
            rows.append({
                "model": model, "type": t.name, "consumes": executor.consumes or t.consumes, "produces": t.produces,
                "provider": executor.provider, "endpoint": remote.endpoint if remote else None,
                "name": remote.name if remote else None, "price": executor.cost, "summary": executor.summary,
                "aliases": aliases, "params": params_of(executor),
            })
    return rows


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() + "\n" for r in rows)


def list_models(args: Any) -> int:
    wanted = getattr(args, "type", None)
    if wanted and wanted not in STEP_TYPES:
        raise UsageError(f"unknown step type '{wanted}'; 'aicp list-steps' shows them all")
    rows = model_rows(wanted)
    if args.json:
        print_envelope("list-models", rows)
        return 0
    if not rows:
        write_stdout(f"no models for {wanted}\n")
        return 0
    header = [["MODEL", "STEP TYPE", "PROVIDER", "PRICE", "ENDPOINT"]]
    table = [[r["model"], r["type"], r["provider"], f"${r['price']:.3f}", r["endpoint"] or "-"] for r in rows]
    if args.params:
        lines = []
        for row, cells in zip(rows, table):
            lines.append(_table([cells]).rstrip("\n"))
            lines += param_lines(STEP_TYPES[row["type"]].executors[row["model"]], "    ")
        write_stdout("\n".join(lines) + "\n")
    else:
        write_stdout(_table(header + table))
    named = [r for r in rows if r["aliases"]]
    if named:
        write_stdout("Other names chains may use (the AI Content Pipeline tool's), by step type:\n" + "".join(
            f"  {t}: " + ", ".join(f"{alias} -> {r['model']}" for r in named if r["type"] == t for alias in r["aliases"])
            + "\n" for t in dict.fromkeys(r["type"] for r in named)))
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

    chain = load_chain(args.config, work_dir=args.base_dir)
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
