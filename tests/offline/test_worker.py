"""Stacks evaluated at once, each in a process forked from one worker that loaded the libraries once: the same plans
as one after the other, each stack with its own config from the first import on, checks run where the plan was
computed, and `llmops preview --policy` reporting what `llmops policy check` does from the same evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.cli import main
from llmops.offline.plan import Plan
from llmops.offline.preload import library_references
from llmops.offline.project import load_project, load_stack
from llmops.offline.worker import Worker
from llmops.policy.checks import CheckResults, PlanChecks
from tests.conftest import STACKS

PROGRAMS = Path(__file__).resolve().parent.parent / "fixtures" / "programs"
SAMPLE, PERSTACK, INSECURE = PROGRAMS / "sample", PROGRAMS / "perstack", PROGRAMS / "insecure"


def canonical(plan: Plan) -> str:
    """Everything captured, in a stable order (registration order is not)."""
    resources = sorted(([r.urn, r.type, r.name, r.parent, r.provider, r.inputs, sorted(r.dependencies), r.custom,
                         {key: sorted(urns) for key, urns in r.property_dependencies.items()}]
                        for r in plan.resources), key=lambda r: r[0])
    return json.dumps({"stack": plan.stack, "project": plan.project, "resources": resources, "outputs": plan.outputs},
                      sort_keys=True, default=str)


def plans_from_worker(project, names, jobs, checks=None):
    stacks = [load_stack(project, name) for name in names]
    with Worker(project, stacks, jobs=jobs, checks=checks) as worker:
        planned = {}
        for stack in stacks:
            planned[stack.name] = worker.plan(stack, 300)
            if checks is not None:
                planned[stack.name] = (planned[stack.name], worker.checked(stack))
        return planned


def test_parallel_evaluation_captures_the_same_plans_as_sequential_and_in_process(project, plans):
    at_once = plans_from_worker(project, STACKS, jobs=len(STACKS))
    one_by_one = plans_from_worker(project, STACKS, jobs=1)
    for name in STACKS:
        assert canonical(at_once[name]) == canonical(one_by_one[name]), name
        assert canonical(at_once[name]) == canonical(plans[name]), name  # the engine run in this process
        assert len(at_once[name].resources) > 100


@pytest.mark.parametrize("jobs", [1, 2])
def test_each_stack_gets_its_own_config_even_in_modules_imported_once(jobs):
    # Under the Pulumi CLI each stack runs in a process of its own, so a module may read the config when imported.
    # Evaluated in one process one after the other, green would have kept blue's module (and colour).
    project = load_project(PERSTACK)
    planned = plans_from_worker(project, ["blue", "green", "blue"], jobs=jobs)
    assert planned["blue"].outputs == {"colour": "blue"} and planned["green"].outputs == {"colour": "green"}
    (blue,), (green,) = planned["blue"].resources, planned["green"].resources
    assert (blue.name, green.name) == ("thing-blue", "thing-green")
    assert blue.inputs["process"] != green.inputs["process"]


def test_checks_run_on_each_plan_in_its_process_and_come_back_with_it():
    project = load_project(SAMPLE)
    (plan, results), = plans_from_worker(project, ["test"], jobs=2, checks=PlanChecks(validate=True)).values()
    assert results == CheckResults(kubernetes_objects=1, schema_violations=[], policy_violations=None)
    assert len(plan.resources) == 4


def test_the_worker_preloads_the_libraries_a_program_names_and_none_of_its_own_modules():
    sample = library_references(SAMPLE / "__main__.py", SAMPLE)
    assert {("pulumi_aws", ("s3", "Bucket")), ("pulumi_aws", ("ssm", "Parameter")),
            ("pulumi_kubernetes", ("apps", "v1", "Deployment")), ("pulumi", ("Config",))} <= sample
    perstack = library_references(PERSTACK / "__main__.py", PERSTACK)
    assert ("pulumi", ("Config",)) in perstack  # followed into settings.py, which is read, not imported
    assert not any(module == "settings" for module, _ in perstack)


def test_preview_runs_the_policy_pack_on_the_plans_it_computed(tmp_path, capsys):
    report = tmp_path / "report.json"
    code = main(["preview", "--program", str(INSECURE), "--validate", "--policy", "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 1  # five mandatory violations
    policy_report = out.split("policy check:\n", 1)[1]
    assert policy_report.splitlines()[0] == ("stack test: 5 mandatory, 0 advisory violation(s) "
                                             "(25 policies over 9 resources)")
    assert "  [mandatory] s3-public-access-blocked  exports" in policy_report
    summary = json.loads(report.read_text())
    assert summary["exit_code"] == 1 and summary["project"] == "insecure"
    (stack,) = summary["stacks"]
    assert stack["policy"] == {"policies": 25, "mandatory": 5, "advisory": 0}
    assert stack["resources"] == 9 and stack["schema_violations"] == 0 and stack["plan"] is None


def test_preview_policy_config_and_jobs_are_checked_before_any_program_runs(tmp_path, capsys):
    assert main(["preview", "--program", str(INSECURE), "--policy-config", str(tmp_path / "p.json")]) == 2
    assert capsys.readouterr().err == "llmops: --policy-config: only with --policy\n"
    config = tmp_path / "policy.json"
    config.write_text('{"k8s-image-digests": "advisory"}')
    assert main(["preview", "--program", str(INSECURE), "--policy", "--policy-config", str(config)]) == 2
    assert f"{config}: no policy named k8s-image-digests" in capsys.readouterr().err
    for bad in ("0", "two"):
        with pytest.raises(SystemExit) as caught:
            main(["preview", "--program", str(INSECURE), "--jobs", bad])
        assert caught.value.code == 2
    assert "--jobs: expected a number of stacks >= 1" in capsys.readouterr().err
    # A relaxed config is the pack's to apply, as in `llmops policy check`.
    config.write_text('{"all": "advisory"}')
    assert main(["preview", "--program", str(INSECURE), "--policy", "--policy-config", str(config)]) == 0
    assert "stack test: 0 mandatory, 5 advisory violation(s)" in capsys.readouterr().out


def test_where_a_library_started_a_thread_the_worker_evaluates_each_stack_itself_alike(tmp_path, monkeypatch):
    # Forking a process with threads can deadlock the child: the worker then evaluates the stacks one after the
    # other in its own process -- still each with the program's own modules imported afresh.
    library = tmp_path / "library"
    library.mkdir()
    (library / "threadlib.py").write_text("import threading, time\n"
                                          "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n")
    monkeypatch.setenv("PYTHONPATH", str(library))
    program = tmp_path / "perstack"
    program.mkdir()
    for file in PERSTACK.iterdir():
        (program / file.name).write_text(file.read_text())
    (program / "__main__.py").write_text("import threadlib  # noqa: F401\n" + (PERSTACK / "__main__.py").read_text())
    planned = plans_from_worker(load_project(program), ["blue", "green"], jobs=2)
    assert planned["blue"].outputs == {"colour": "blue"} and planned["green"].outputs == {"colour": "green"}
    (blue,), (green,) = planned["blue"].resources, planned["green"].resources
    assert blue.inputs["process"] == green.inputs["process"]  # one process: the worker's
