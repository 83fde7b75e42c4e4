#!/usr/bin/env python3
"""The table `scripts/dev.sh plan` ends with: stacks planned, objects valid, policies passed, drills run and passed
with their times, and where the full report is.

It reads what the steps wrote -- `llmops preview --report` (the plan, schema validation and policy pack per stack)
and the drills' reports (`build/drills/<drill>.json`: {"drill", "passed", "seconds", "html"}, newer than the run's
start) -- and takes from dev.sh what only it knows: each step's exit code and wall time, and whether it ran. A step
that wrote no report (it crashed, or a drill without reports) is shown with its exit code and time.

    plan_summary.py --plan-report build/plan-report.json --plan-exit 0 --plan-seconds 5.8 \
        --drills-dir build/drills --since 1764900000 --drill-exit 0 --drill-seconds 118 --log build/plan.log

Standard library only; prints the table on stdout and exits 0 (dev.sh decides the exit code).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    step: str
    passed: bool | None  # None: not run
    detail: str
    seconds: float | None = None
    where: str = ""


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in `path`, or None if it is missing or not a JSON object (a step that did not finish)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def drill_reports(directory: Path, since: float) -> list[dict[str, Any]]:
    """This run's drill reports: `<drill>.json` files written at or after `since` (epoch seconds), by name."""
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        if path.stat().st_mtime + 1 < since:  # from an earlier run (1 s of slack for coarse file times)
            continue
        report = read_json(path)
        if report is not None and isinstance(report.get("drill"), str) and isinstance(report.get("passed"), bool):
            found.append(report)
    return sorted(found, key=lambda r: (r.get("started_at") or 0, r["drill"]))  # in the order they ran


def plan_rows(report: dict[str, Any] | None, exit_code: int | None, seconds: float | None) -> list[Row]:
    """Stacks planned, objects valid, policies passed -- from `llmops preview --report`."""
    if exit_code is None:
        return [Row("stacks planned", None, "not run")]
    if report is None or not report.get("stacks"):
        return [Row("stacks planned", False, f"the plan did not finish (exit code {exit_code}): see the full report",
                    seconds)]
    stacks = report["stacks"]
    took = seconds if seconds is not None else report.get("seconds")  # dev.sh's clock: Python's start included
    resources = sum(s["resources"] for s in stacks)
    names = ", ".join(s["stack"] for s in stacks)
    rows = [Row("stacks planned", True, f"{len(stacks)} ({names}): {resources} resources", took,
                _common_parent([s["plan"] for s in stacks if s.get("plan")]))]
    validated = [s for s in stacks if s.get("schema_violations") is not None]
    if validated:
        objects = sum(s["kubernetes_objects"] for s in validated)
        invalid = {s["stack"]: s["schema_violations"] for s in validated if s["schema_violations"]}
        detail = f"{objects} Kubernetes objects, all valid (strict schemas)" if not invalid else \
            f"{sum(invalid.values())} violation(s) in {objects} objects: " + _per_stack(invalid)
        rows.append(Row("objects valid", not invalid, detail, None,
                        _common_parent([s["manifests"] for s in validated if s.get("manifests")])))
    checked = [s for s in stacks if s.get("policy") is not None]
    if checked:
        policies = max(s["policy"]["policies"] for s in checked)
        mandatory = {s["stack"]: s["policy"]["mandatory"] for s in checked if s["policy"]["mandatory"]}
        advisory = sum(s["policy"]["advisory"] for s in checked)
        if mandatory:
            detail = f"{sum(mandatory.values())} mandatory violation(s): {_per_stack(mandatory)}"
        else:
            detail = f"{policies} policies on {len(checked)} stacks, no mandatory violation"
        detail += f"; {advisory} advisory" if advisory else ""
        rows.append(Row("policies passed", not mandatory, detail))
    return rows


def drill_rows(reports: list[dict[str, Any]], exit_code: int | None, seconds: float | None,
               command: str) -> list[Row]:
    """One row per drill report, then the total; without reports, the drill command's own exit code and time."""
    if exit_code is None:
        return [Row("drills", None, f"not run ({command})")]
    if not reports:
        return [Row("drills", exit_code == 0, f"{command}: exit code {exit_code} (no report written)", seconds)]
    rows = [Row(f"  {r['drill']}", r["passed"], "passed" if r["passed"] else "FAILED: see its report",
                r.get("seconds"), _relative(r.get("html") or "")) for r in reports]
    passed = sum(1 for r in reports if r["passed"])
    detail = f"{passed} of {len(reports)} passed"
    if exit_code != 0 and passed == len(reports):
        detail += f" ({command} exit code {exit_code})"
    return [Row("drills run", passed == len(reports) and exit_code == 0, detail, seconds), *rows]


def render(rows: Sequence[Row], log: str | None) -> str:
    width = max(len(r.step) for r in rows)
    detail_width = min(max(len(r.detail) for r in rows), 70)
    lines = ["", "summary"]
    for row in rows:
        status = "-" if row.passed is None else ("ok" if row.passed else "FAIL")
        took = "" if row.seconds is None else f"{row.seconds:6.1f} s"
        lines.append(f"  {row.step:<{width}}  {status:<4}  {row.detail:<{detail_width}}  {took:>8}  {row.where}".rstrip())
    if log:
        lines.append(f"full report: {log}")
    return "\n".join(lines)


def _per_stack(counts: dict[str, int]) -> str:
    return ", ".join(f"{stack} {count}" for stack, count in counts.items())


def _relative(path: str) -> str:
    """A path under the current directory as a relative one (shorter in the table)."""
    if path and Path(path).is_absolute():
        try:
            return str(Path(path).relative_to(Path.cwd()))
        except ValueError:
            pass
    return path


def _common_parent(paths: list[str]) -> str:
    if not paths:
        return ""
    parents = {str(Path(p).parent) for p in paths}
    return parents.pop() + "/" if len(parents) == 1 else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan-report", type=Path, default=Path("build/plan-report.json"))
    parser.add_argument("--plan-exit", type=int, default=None, help="the plan's exit code (absent: not run)")
    parser.add_argument("--plan-seconds", type=float, default=None)
    parser.add_argument("--drills-dir", type=Path, default=Path("build/drills"))
    parser.add_argument("--since", type=float, default=0.0, help="drill reports older than this (epoch s) are stale")
    parser.add_argument("--drill-exit", type=int, default=None, help="the drills' exit code (absent: not run)")
    parser.add_argument("--drill-seconds", type=float, default=None)
    parser.add_argument("--drill-command", default="llmops drill all")
    parser.add_argument("--log", default=None, help="where the full output is")
    args = parser.parse_args(argv)
    rows = plan_rows(read_json(args.plan_report) if args.plan_exit is not None else None, args.plan_exit,
                     args.plan_seconds)
    reports = drill_reports(args.drills_dir, args.since) if args.drill_exit is not None else []
    rows += drill_rows(reports, args.drill_exit, args.drill_seconds, args.drill_command)
    print(render(rows, args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
