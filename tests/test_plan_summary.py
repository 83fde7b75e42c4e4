"""The table `scripts/dev.sh plan` ends with (scripts/plan_summary.py), on fabricated results: a clean run, failures
in each step, stale drill reports, and drills that wrote no report."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def summary() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plan_summary", ROOT / "scripts" / "plan_summary.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["plan_summary"] = module
    spec.loader.exec_module(module)
    return module


def stack(name: str, resources: int, objects: int, schema: int | None = 0, mandatory: int = 0,
          advisory: int = 0) -> dict:
    return {"stack": name, "resources": resources, "kubernetes_objects": objects, "plan": f"build/plan-{name}.json",
            "manifests": f"build/manifests/{name}", "schema_violations": schema,
            "policy": {"policies": 25, "mandatory": mandatory, "advisory": advisory}}


def plan_report(*stacks: dict, code: int = 0) -> dict:
    return {"project": "llmops", "program": str(ROOT), "stacks": list(stacks), "exit_code": code, "seconds": 4.2}


def write_drill(directory: Path, name: str, passed: bool, seconds: float, started_at: float,
                age: float = 0.0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"drill": name, "passed": passed, "seconds": seconds, "started_at": started_at,
                                "html": str(directory / f"{name}.html")}))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def lines_of(text: str) -> dict[str, str]:
    """Each table row by its first word(s): 'stacks planned' -> the rest of the line."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("  "):
            words = line.split()
            key = " ".join(words[:2]) if words[0] in ("stacks", "objects", "policies", "drills") else words[0]
            rows[key] = line
    return rows


def test_a_clean_run_reads_every_step_ok_with_times_and_reports(summary, tmp_path, capsys):
    report = tmp_path / "plan-report.json"
    report.write_text(json.dumps(plan_report(stack("dev", 182, 48), stack("staging", 212, 64),
                                             stack("prod", 430, 128))))
    drills = tmp_path / "drills"
    began = time.time()
    write_drill(drills, "rollback", True, 23.7, began + 1)
    write_drill(drills, "canary", True, 34.8, began + 30)
    write_drill(drills, "stale", False, 1.0, began - 600, age=600)  # an earlier run's: not this one's
    assert summary.main(["--plan-report", str(report), "--plan-exit", "0", "--plan-seconds", "5.4",
                         "--drills-dir", str(drills), "--since", str(began), "--drill-exit", "0",
                         "--drill-seconds", "61.2", "--log", "build/plan.log"]) == 0
    out = capsys.readouterr().out
    rows = lines_of(out)
    assert rows["stacks planned"].split()[2:9] == ["ok", "3", "(dev,", "staging,", "prod):", "824", "resources"]
    assert "5.4 s" in rows["stacks planned"] and rows["stacks planned"].endswith("build/")
    assert "ok    240 Kubernetes objects, all valid" in rows["objects valid"]
    assert "ok    25 policies on 3 stacks, no mandatory violation" in rows["policies passed"]
    assert "ok    2 of 2 passed" in rows["drills run"] and "61.2 s" in rows["drills run"]
    assert list(rows)[-2:] == ["rollback", "canary"]  # in the order they ran
    assert "23.7 s" in rows["rollback"] and rows["rollback"].endswith("rollback.html")
    assert "stale" not in out
    assert out.rstrip().endswith("full report: build/plan.log")


def test_failures_are_named_per_stack_and_drill(summary):
    rows = summary.plan_rows(plan_report(stack("dev", 182, 48, schema=2, mandatory=1, advisory=3),
                                         stack("prod", 430, 128, mandatory=4), code=1), 1, 6.0)
    planned, valid, policies = rows
    assert planned.passed and planned.seconds == 6.0
    assert not valid.passed and valid.detail == "2 violation(s) in 176 objects: dev 2"
    assert not policies.passed and policies.detail == "5 mandatory violation(s): dev 1, prod 4; 3 advisory"
    drills = summary.drill_rows([{"drill": "rollback", "passed": True, "seconds": 20.0, "html": None},
                                 {"drill": "drift", "passed": False, "seconds": 60.0, "html": "d.html"}],
                                1, 90.0, "llmops drill all")
    assert [(r.step.strip(), r.passed) for r in drills] == [("drills run", False), ("rollback", True), ("drift", False)]
    assert drills[0].detail == "1 of 2 passed" and drills[2].detail == "FAILED: see its report"
    text = summary.render(rows + drills, "build/plan.log")
    assert text.count("FAIL ") == 4


def test_a_plan_that_did_not_finish_and_drills_not_run(summary, tmp_path):
    rows = summary.plan_rows(summary.read_json(tmp_path / "missing.json"), 1, 2.5)
    assert [(r.step, r.passed, r.seconds) for r in rows] == [("stacks planned", False, 2.5)]
    assert rows[0].detail == "the plan did not finish (exit code 1): see the full report"
    (drills,) = summary.drill_rows([], None, None, "llmops drill all")
    assert drills.passed is None and drills.detail == "not run (llmops drill all)"
    assert "  drills          -     not run (llmops drill all)" in summary.render(rows + [drills], None)


def test_drills_without_reports_are_shown_by_their_exit_code_and_time(summary, tmp_path):
    assert summary.drill_reports(tmp_path / "none", 0.0) == []
    (row,) = summary.drill_rows([], 0, 31.4, "llmops drill rollback")
    assert (row.passed, row.seconds, row.detail) == (True, 31.4, "llmops drill rollback: exit code 0 (no report written)")
    (row,) = summary.drill_rows([], 1, 12.0, "llmops drill rollback")
    assert row.passed is False


def test_reports_that_are_not_drill_reports_are_left_out(summary, tmp_path):
    (tmp_path / "half.json").write_text('{"drill": "rollback", "pass')  # being written when read
    (tmp_path / "other.json").write_text('{"something": "else"}')
    (tmp_path / "list.json").write_text("[]")
    write_drill(tmp_path, "drift", True, 58.0, 0.0)
    assert [r["drill"] for r in summary.drill_reports(tmp_path, 0.0)] == ["drift"]
