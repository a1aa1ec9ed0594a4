"""``aicp runs list`` and ``aicp runs show RUN_ID``: what the run records say."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aicp._chain.load import load_chain
from aicp._errors import MissingInputError
from aicp._commands.output import print_envelope, write_stdout
from aicp._run.record import RunRecord, RunRecordError, runs_dir


def _output_dir(args: Any) -> tuple[Path, str | None]:
    if args.config:
        chain = load_chain(args.config, work_dir=args.base_dir)
        return chain.output_dir, chain.name
    return Path(args.base_dir or ".", args.output_dir).resolve(), None


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _list(args: Any) -> int:
    output_dir, chain_name = _output_dir(args)
    base = runs_dir(output_dir)
    rows: list[dict[str, Any]] = []
    for root in sorted(base.iterdir()) if base.is_dir() else ():
        try:
            summary = RunRecord.load(output_dir, root.name).summary()
        except (RunRecordError, MissingInputError) as exc:
            rows.append({"run_id": root.name, "status": "unreadable", "error": exc.message})
            continue
        if chain_name is not None and summary["chain_name"] != chain_name:
            continue  # a run of another chain sharing the output_dir
        rows.append({k: summary[k] for k in ("run_id", "chain_name", "status", "created", "updated",
                                             "resumed", "path")}
                    | {"steps_completed": sum(1 for s in summary["steps"].values() if s["status"] == "completed")})
    rows.sort(key=lambda r: r.get("updated", 0), reverse=True)
    if args.json:
        print_envelope("runs list", rows)
        return 0
    if not rows:
        write_stdout(f"no runs recorded in {base}\n")
        return 0
    lines = [f"{'RUN ID':<24} {'STATUS':<10} {'UPDATED':<19}  CHAIN"]
    for r in rows:
        if r["status"] == "unreadable":
            lines.append(f"{r['run_id']:<24} unreadable  {r['error']}")
        else:
            lines.append(f"{r['run_id']:<24} {r['status']:<10} {_when(r['updated'])}  {r['chain_name']}"
                         + (f" (resumed {r['resumed']}x)" if r["resumed"] else ""))
    write_stdout("\n".join(lines) + "\n")
    return 0


def _show(args: Any) -> int:
    output_dir, chain_name = _output_dir(args)
    summary = RunRecord.load(output_dir, args.run_id, chain_name).summary()
    if args.json:
        print_envelope("runs show", summary)
        return 0
    lines = [f"run {summary['run_id']}: {summary['status']} ({summary['chain_name']}, {summary['chain_source']})",
             f"  created {_when(summary['created'])}, updated {_when(summary['updated'])}"
             + (f", resumed {summary['resumed']}x" if summary["resumed"] else ""),
             f"  record: {summary['path']}"]
    for key, step in summary["steps"].items():
        files = ", ".join(f["path"] for f in step.get("files", []))
        detail = step.get("error") or files or str(step.get("output", ""))[:80]
        lines.append(f"  step {key}: {step['status']}, ${step.get('cost', 0.0):.3f}  {detail}")
    write_stdout("\n".join(lines) + "\n")
    return 0


def runs_command(args: Any) -> int:
    return _list(args) if args.runs_command == "list" else _show(args)
