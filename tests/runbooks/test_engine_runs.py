"""The engine running a small runbook of its own (two steps that write files): what a run does when its
records cannot be written, when its journal was damaged, and when it already finished. No backend is
needed, so every failure class is driven exactly; the runbooks' own suites cover the same engine end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from runbooks.engine import (
    Change,
    JournalCorrupt,
    Param,
    Preparing,
    RecordsUnavailable,
    Runbook,
    RunContext,
    RunFinished,
    Step,
)
from runbooks.engine.records import AuditLog
from runbooks.engine.runner import RunOptions, Services, run
from runbooks.engine.services import FileLock, FileRecordStore, PrintNotifier


@dataclass
class Where:
    directory: str


def _write_step(name: str) -> Step[Where, None]:
    def target(ctx: RunContext[Where, None]) -> Path:
        return Path(ctx.facts.directory) / name

    return Step(name, f"write {name}", plan=lambda ctx: Change(f"write {name}", None, name),
                check=lambda ctx: target(ctx).exists(), action=lambda ctx: target(ctx).write_text(name) and None,
                verify=lambda ctx: target(ctx).exists(), timeout_seconds=10)


TOY: Runbook[Where, None] = Runbook(
    name="toy", title="Toy", summary="Writes two files.", params=(Param("where", "a directory"),),
    steps=(_write_step("one"), _write_step("two")), facts_type=Where,
    prepare=lambda ctx: Where(ctx.params["where"]), lock_target=lambda ctx: "files/toy", connect=lambda targets: None)


def services(tmp: Path, *, audit: Path | None = None, evidence: Path | None = None) -> Services:
    return Services(lock=FileLock(tmp / "state" / "locks"), notifier=PrintNotifier(),
                    audit=AuditLog(path=(audit or tmp / "audit") / "audit.jsonl"),
                    evidence=FileRecordStore(evidence or tmp / "evidence"), state_dir=tmp / "state")


def go(tmp: Path, svc: Services, **options: object):
    world = tmp / "world"
    world.mkdir(exist_ok=True)
    invocation = Preparing(runbook="toy", environment="dev", params={"where": str(world)}, backends=None)
    return run(TOY, invocation, svc, RunOptions(**options))  # type: ignore[arg-type]


def not_a_directory(tmp: Path) -> Path:
    """A location nothing can be written under, even as root: its parent is a regular file."""
    blocker = tmp / "blocker"
    blocker.write_text("a file, not a directory")
    return blocker / "records"


@pytest.mark.parametrize("where", ["audit", "evidence"])
def test_an_unwritable_record_location_is_refused_before_any_step_acts(tmp_path, where):
    svc = services(tmp_path, **{where: not_a_directory(tmp_path)})
    with pytest.raises(RecordsUnavailable, match="not writable .*nothing was changed"):
        go(tmp_path, svc, yes=True)
    assert not (tmp_path / "world" / "one").exists()  # step one never acted
    assert not list((tmp_path / "state" / "locks").glob("*.lock"))  # and the lock is free again


def test_an_unwritable_state_directory_is_refused_before_any_step_acts(tmp_path):
    svc = services(tmp_path)
    svc.state_dir = not_a_directory(tmp_path)
    svc.lock = FileLock(tmp_path / "locks")
    with pytest.raises(RecordsUnavailable, match="state directory"):
        go(tmp_path, svc, yes=True)
    assert not (tmp_path / "world" / "one").exists()


def test_a_resume_from_a_journal_damaged_in_the_middle_refuses_and_changes_nothing(tmp_path):
    svc = services(tmp_path)
    first = go(tmp_path, svc, yes=True)
    run_id = first.run_id
    journal = tmp_path / "state" / run_id / "journal.jsonl"
    # Make the run look unfinished, then damage a record in the middle.
    (tmp_path / "state" / run_id / "finished.json").unlink()
    (tmp_path / "evidence" / "evidence" / f"{run_id}.json").unlink()
    lines = [line for line in journal.read_text().splitlines() if json.loads(line)["event"] != "run_finished"]
    lines[1] = lines[1].replace('"event"', '"evnt"', 1)
    journal.write_text("\n".join(lines) + "\n")
    (tmp_path / "world" / "two").unlink()
    with pytest.raises(JournalCorrupt, match=r"journal.jsonl: line 2: .*Nothing was changed"):
        go(tmp_path, svc, resume=run_id)
    assert not (tmp_path / "world" / "two").exists()


def test_a_finished_run_is_finished_even_when_its_journal_and_marker_are_gone(tmp_path):
    svc = services(tmp_path)
    run_id = go(tmp_path, svc, yes=True).run_id
    (tmp_path / "state" / run_id / "finished.json").unlink()
    journal = tmp_path / "state" / run_id / "journal.jsonl"
    journal.write_text(journal.read_text().splitlines()[0] + "\n")  # only run_started is left
    with pytest.raises(RunFinished, match="already finished .*evidence") as raised:
        go(tmp_path, svc, resume=run_id)
    assert raised.value.exit_code == 2


def test_records_that_fail_mid_run_stop_it_resumably_and_resume_writes_them(tmp_path):
    svc = services(tmp_path)
    audit = tmp_path / "audit" / "audit.jsonl"

    def break_the_audit_log(ctx: RunContext[Where, None]) -> None:  # the audit location fails while the step acts
        (Path(ctx.facts.directory) / "two").write_text("two")
        audit.unlink()
        audit.mkdir()

    sabotaged = Runbook(name="toy", title="Toy", summary="", params=TOY.params, prepare=TOY.prepare,
                        lock_target=TOY.lock_target, facts_type=Where, connect=TOY.connect,
                        steps=(TOY.steps[0], Step("two", "write two", plan=TOY.steps[1].plan, check=TOY.steps[1].check,
                                                  action=break_the_audit_log, verify=TOY.steps[1].verify)))
    world = tmp_path / "world"
    world.mkdir()
    invocation = Preparing(runbook="toy", environment="dev", params={"where": str(world)}, backends=None)
    with pytest.raises(RecordsUnavailable, match="audit record of step two could not be written .*--resume"):
        run(sabotaged, invocation, svc, RunOptions(yes=True))
    (run_id,) = [p.name for p in (tmp_path / "state").iterdir() if p.name != "locks"]
    audit.rmdir()  # the location is fixed
    resumed = go(tmp_path, svc, resume=run_id)
    assert resumed.status == "succeeded"
    # The sabotage took step one's record with it: the resume writes every record that is missing, once.
    assert [r["step"] for r in AuditLog(path=audit).records(run_id)] == ["one", "two"]
