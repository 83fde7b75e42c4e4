"""A drill's report, written up like a game day's: what was injected and when, when the alert fired, when the runbook
started, each of its steps, when the mitigation was verified; detection time and time to mitigate; the approvals the
drill gave; exit codes; whether the run's journal is consistent; and pass or fail against the runbook's objectives.

Two files per drill under the report directory (`build/drills/` by default): `<drill>.json` for machines and
`<drill>.html` for people -- one self-contained page (inline SVG timeline, no script, no server).
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.paths import PROJECT_ROOT

REPORT_DIR = PROJECT_ROOT / "build" / "drills"


@dataclass(frozen=True)
class Objective:
    """One thing the runbook promises, and whether the drill saw it kept: `actual` against `target`."""
    name: str
    target: str
    actual: str
    passed: bool


@dataclass
class DrillReport:
    drill: str
    scenario: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    events: dict[str, float] = field(default_factory=dict)  # name -> epoch seconds (injected, alert_firing, ...)
    labels: dict[str, str] = field(default_factory=dict)  # name -> what it means, for people
    steps: list[dict[str, Any]] = field(default_factory=list)  # step, outcome, started_at, finished_at, seconds
    approvals: list[str] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)
    journal: dict[str, Any] = field(default_factory=dict)  # consistent, events, problems
    objectives: list[Objective] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # what the drill measured besides (rates, samples)
    run_id: str | None = None
    detected_by: str = "alert_firing"  # the moment that counts as detection (a controller's decision, for canaries)

    def mark(self, name: str, label: str, at: float | None = None) -> float:
        """Record a moment once (the first time it is seen)."""
        self.events.setdefault(name, time.time() if at is None else at)
        self.labels.setdefault(name, label)
        return self.events[name]

    def since(self, name: str, start: str = "injected") -> float | None:
        if name not in self.events or start not in self.events:
            return None
        return round(self.events[name] - self.events[start], 2)

    def objective(self, name: str, target: str, actual: str, passed: bool) -> None:
        self.objectives.append(Objective(name, target, actual, passed))

    @property
    def detection_seconds(self) -> float | None:
        return self.since(self.detected_by)

    @property
    def mitigation_seconds(self) -> float | None:
        return self.since("mitigation_verified")

    @property
    def passed(self) -> bool:
        return bool(self.objectives) and all(o.passed for o in self.objectives)

    def add_run(self, result: Any, journal: Mapping[str, Any], approvals: list[str]) -> None:
        """A runbook run's steps (timed from its journal), exit code, approvals and journal check."""
        self.run_id = result.run_id
        self.exit_codes["runbook"] = result.exit_code
        self.approvals += approvals
        self.journal = dict(journal)
        started = {e["step"]: e["ts"] for e in journal.get("records", []) if e.get("event") == "step_started"}
        done = {e["step"]: e["ts"] for e in journal.get("records", []) if e.get("event") in ("step_done", "step_failed")}
        for step in result.steps:
            name = step["step"]
            self.steps.append({"step": name, "outcome": step.get("outcome"), "seconds": step.get("seconds"),
                               "started_at": started.get(name), "finished_at": done.get(name)})
        self.journal.pop("records", None)

    def to_json(self) -> dict[str, Any]:
        return {"drill": self.drill, "scenario": self.scenario, "passed": self.passed,
                "seconds": round((self.finished_at or time.time()) - self.started_at, 2),
                "started_at": self.started_at, "finished_at": self.finished_at, "run_id": self.run_id,
                "detection_seconds": self.detection_seconds, "mitigation_seconds": self.mitigation_seconds,
                "timeline": [{"event": name, "label": self.labels.get(name, name), "at": at,
                              "after_injection": self.since(name)}
                             for name, at in sorted(self.events.items(), key=lambda item: item[1])],
                "steps": self.steps, "approvals": self.approvals, "exit_codes": self.exit_codes,
                "journal": self.journal, "objectives": [asdict(o) for o in self.objectives], "figures": self.figures}

    def write(self, directory: Path | None = None) -> tuple[Path, Path]:
        """`<drill>.json` and `<drill>.html`, each written whole (scratch file, then rename)."""
        directory = directory or REPORT_DIR
        directory.mkdir(parents=True, exist_ok=True)
        self.finished_at = self.finished_at or time.time()
        data = self.to_json()
        json_path, html_path = directory / f"{self.drill}.json", directory / f"{self.drill}.html"
        data["html"] = str(html_path)
        for path, text in ((json_path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"),
                           (html_path, render_html(data))):
            scratch = path.with_suffix(path.suffix + ".tmp")
            scratch.write_text(text, encoding="utf-8")
            scratch.replace(path)
        return json_path, html_path


def journal_check(state_dir: Path, run_id: str | None) -> dict[str, Any]:
    """Is the run's journal whole and consistent: every record intact, every step started finished once, the run
    finished? Returns the records too (for the steps' times; dropped from the report)."""
    from runbooks.engine import JournalCorrupt
    from runbooks.engine.journal import Journal

    if run_id is None:
        return {"consistent": False, "problems": ["no run"], "records": []}
    problems: list[str] = []
    journal = Journal(Path(state_dir).expanduser(), run_id)  # read only: a finished run's journal too
    if not journal.path.exists():
        return {"consistent": False, "problems": [f"no journal at {journal.path}"], "records": []}
    try:
        records = [dict(r) for r in journal.events()]
    except (JournalCorrupt, OSError) as error:
        return {"consistent": False, "problems": [str(error)], "records": []}
    open_steps: dict[str, int] = {}
    finished: set[str] = set()
    for record in records:
        if record.get("event") == "step_started":
            open_steps[record["step"]] = open_steps.get(record["step"], 0) + 1
        elif record.get("event") in ("step_done", "step_failed"):
            step = record["step"]
            if step in finished and record.get("event") == "step_done":
                problems.append(f"step {step} finished twice")
            open_steps[step] = open_steps.get(step, 0) - 1
            finished.add(step)
    problems += [f"step {s} started and never finished" for s, n in open_steps.items() if n > 0]
    if not any(r.get("event") == "run_finished" for r in records) or not journal.finished_path.exists():
        problems.append("the run is not marked finished")
    return {"consistent": not problems, "problems": problems, "events": len(records), "records": records}


# --- the page ------------------------------------------------------------------------------------------------------

_STYLE = """body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:60em;color:#1d2430}
h1{font-size:1.5em;margin-bottom:.2em}.pass{color:#11703a}.fail{color:#b3261e}table{border-collapse:collapse;margin:1em 0}
td,th{border-bottom:1px solid #dde2ea;padding:.3em .8em;text-align:left;vertical-align:top}th{background:#f4f6f9}
.muted{color:#5d6878}svg text{font:11px system-ui,sans-serif}code{background:#f4f6f9;padding:0 .2em}"""


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _timeline_svg(data: Mapping[str, Any]) -> str:
    """Events as labelled ticks and the runbook's steps as bars, on one axis of seconds since the injection."""
    timeline = data["timeline"]
    if not timeline:
        return ""
    origin = next((e["at"] for e in timeline if e["event"] == "injected"), timeline[0]["at"])
    moments = [e["at"] for e in timeline] + [s[k] for s in data["steps"] for k in ("started_at", "finished_at") if s.get(k)]
    span = max(max(moments) - origin, 1.0)
    left, width = 290, 520
    rows = len(timeline) + len(data["steps"])
    height = 40 + 22 * rows

    def x(at: float) -> float:
        return left + (at - origin) / span * width

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 60}" height="{height}" role="img" '
             f'aria-label="timeline">', f'<line x1="{left}" y1="{height - 25}" x2="{left + width}" y2="{height - 25}" '
             'stroke="#8894a6"/>']
    for tick in range(0, 6):
        at = origin + span * tick / 5
        parts.append(f'<line x1="{x(at):.1f}" y1="10" x2="{x(at):.1f}" y2="{height - 22}" stroke="#eef1f5"/>'
                     f'<text x="{x(at):.1f}" y="{height - 8}" text-anchor="middle">+{at - origin:.0f} s</text>')
    row = 0
    for event in timeline:
        y = 22 + 22 * row
        colour = "#b3261e" if event["event"] in ("injected", "alert_firing") else "#11703a" \
            if event["event"] == "mitigation_verified" else "#3056a8"
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{html.escape(event["label"])}</text>'
                     f'<circle cx="{x(event["at"]):.1f}" cy="{y}" r="5" fill="{colour}"/>'
                     f'<text x="{x(event["at"]) + 9:.1f}" y="{y + 4}" class="muted">+{event["at"] - origin:.1f} s</text>')
        row += 1
    for step in data["steps"]:
        y = 22 + 22 * row
        start, end = step.get("started_at"), step.get("finished_at")
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">step {html.escape(step["step"])}</text>')
        if start and end:
            colour = "#b3261e" if step.get("outcome") == "failed" else "#7a8fb8"
            parts.append(f'<rect x="{x(start):.1f}" y="{y - 6}" width="{max(x(end) - x(start), 2):.1f}" height="12" '
                         f'rx="2" fill="{colour}"/>')
        row += 1
    parts.append("</svg>")
    return "".join(parts)


def render_html(data: Mapping[str, Any]) -> str:
    verdict = '<span class="pass">PASSED</span>' if data["passed"] else '<span class="fail">FAILED</span>'
    title = f"Drill report: {data['drill']}" + (f" ({data['scenario']})" if data.get("scenario") else "")
    objectives = "".join(
        f"<tr><td>{html.escape(o['name'])}</td><td>{html.escape(o['target'])}</td><td>{html.escape(o['actual'])}</td>"
        f"<td class=\"{'pass' if o['passed'] else 'fail'}\">{'pass' if o['passed'] else 'FAIL'}</td></tr>"
        for o in data["objectives"])
    steps = "".join(f"<tr><td>{html.escape(str(s['step']))}</td><td>{html.escape(str(s.get('outcome')))}</td>"
                    f"<td>{_seconds(s.get('seconds'))}</td></tr>" for s in data["steps"])
    timeline = "".join(f"<tr><td>{html.escape(e['label'])}</td><td>{time.strftime('%H:%M:%S', time.gmtime(e['at']))}"
                       f"</td><td>{_seconds(e['after_injection'])}</td></tr>" for e in data["timeline"])
    journal = data.get("journal") or {}
    journal_text = "consistent" if journal.get("consistent") else \
        "INCONSISTENT: " + html.escape("; ".join(journal.get("problems", [])))
    approvals = "".join(f"<li>{html.escape(a)}</li>" for a in data["approvals"]) or "<li>none</li>"
    figures = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                      for k, v in data.get("figures", {}).items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}: {verdict}</h1>
<p class="muted">run {html.escape(str(data.get('run_id')))}; started {time.strftime('%Y-%m-%d %H:%M:%S UTC',
                                                                         time.gmtime(data['started_at']))};
{data['seconds']:.1f} s in all</p>
<p><b>Detection</b> {_seconds(data['detection_seconds'])} after the injection &middot; <b>mitigation verified</b>
{_seconds(data['mitigation_seconds'])} after it &middot; runbook exit code {data['exit_codes'].get('runbook', '-')}
&middot; journal {journal_text}</p>
<h2>Timeline</h2>{_timeline_svg(data)}
<table><tr><th>moment</th><th>UTC</th><th>after the injection</th></tr>{timeline}</table>
<h2>Objectives</h2><table><tr><th>objective</th><th>target</th><th>seen</th><th></th></tr>{objectives}</table>
<h2>Steps</h2><table><tr><th>step</th><th>outcome</th><th>took</th></tr>{steps}</table>
<h2>Approvals</h2><ul>{approvals}</ul>
{'<h2>Figures</h2><table>' + figures + '</table>' if figures else ''}
</body></html>
"""


def run_approved(report: DrillReport, runbook: str, environment: str, params: Mapping[str, str | None],
                 state_dir: Path, say: Any) -> Any:
    """Run a runbook as on-call would after reading its plan: the plan first (a dry run, printed), then the run
    approved by exactly that plan's hash -- the drill's approval, said as such and recorded in the report."""
    from runbooks.engine.runner import RunOptions
    from runbooks.launch import launch

    def progress(message: str) -> None:
        say(f"  {message}")
    planned = launch(runbook, environment, params, RunOptions(dry_run=True, progress=progress), progress)
    say(planned.plan.render())
    approval = f"plan {planned.plan.hash} of {runbook} approved by the drill (--approve {planned.plan.hash})"
    say(f"drill: {approval}")
    report.mark("runbook_started", f"{runbook} started")
    result = launch(runbook, environment, params, RunOptions(approve=planned.plan.hash, progress=progress), progress)
    report.mark("runbook_finished", f"{runbook} finished ({result.status})")
    for step in result.steps:
        say(f"  {step['step']:<22} {step['outcome']:<10} {step.get('seconds') or 0:6.2f} s")
    report.add_run(result, journal_check(state_dir, result.run_id), [approval])
    return result


def finish(report: DrillReport, say: Any, directory: Path | None) -> int:
    """Write the report, say where and what it found; the drill's exit code (0 passed, 1 an objective missed)."""
    json_path, html_path = report.write(directory)
    for objective in report.objectives:
        say(f"drill: {'pass' if objective.passed else 'FAIL'}  {objective.name}: {objective.actual} "
            f"(target {objective.target})")
    say(f"drill: {report.drill} {'PASSED' if report.passed else 'FAILED'}; report {html_path.resolve().as_uri()} "
        f"(JSON: {json_path})")
    return 0 if report.passed else 1


class Tee:
    """A drill's own stdout (or stderr), kept as well as written: a drill that handles personal data or prompts checks
    what it printed too."""

    def __init__(self, stream: Any) -> None:
        import io

        self.stream, self.seen = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.seen.write(text)
        return int(self.stream.write(text))

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno, ...: the stream's own
        return getattr(self.stream, name)

