"""What aicp offers, chain or no chain: ``aicp list-steps``, ``aicp list-models`` and ``aicp schema``.

The step types and models come from the catalogue (:mod:`aicp._chain.steptypes`,
which includes the remote model table, :mod:`aicp.providers.models`); prices
are the estimate per request at a model's default settings. ``--params`` prints
every executor's declared params from the catalogue itself (the README points
here instead of copying them). ``schema`` prints the JSON Schema of the event
stream, or of chain files (generated from the same catalogue). Nothing here
opens a connection.
"""

from __future__ import annotations

import json
from typing import Any

from aicp._chain.steptypes import STEP_TYPES, Executor
from aicp._chain.validate import GROUP_PARAMS
from aicp._commands.output import print_envelope, write_stdout
from aicp._errors import UsageError


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


def params_of(executor: Executor) -> list[dict[str, Any]]:
    """An executor's declared params, as ``list-steps`` / ``list-models`` give them."""
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
