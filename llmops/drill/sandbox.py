"""`llmops sandbox up|status|down`: one long-lived local world of real backends, for rehearsing runbooks by hand with
`--env sandbox` -- the rollback drill's world (MLflow's store, a Kubernetes API seeded with the staging stack's
rendered objects, Prometheus and the Pushgateway, moto's server, a simulated vLLM with a bad release live).

`up` starts a supervisor process of its own (a new session: it outlives the shell) that starts the backends, writes
`stacks/targets/sandbox.yaml` and `state.json`, and waits for SIGTERM. Its pid is in `sandbox.pid`; the servers it
starts die with it (a parent-death signal), and their pids are in `state.json` too, so `down` stops everything also
after a crash of `up` or a SIGKILL of the supervisor. Both are idempotent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from components.paths import PROJECT_ROOT, TARGETS_DIR

ENV = "sandbox"
CORPUS_BUCKET = "llmops-prod-corpus"  # the README's commands name it
DEFAULT_DIR = PROJECT_ROOT / "build" / "sandbox"


class SandboxError(RuntimeError):
    """The sandbox could not be started; the message says why and where its log is."""


def sandbox_dir() -> Path:
    return Path(os.environ.get("LLMOPS_SANDBOX_DIR") or DEFAULT_DIR)


def targets_path() -> Path:
    return Path(os.environ.get("LLMOPS_TARGETS_DIR") or TARGETS_DIR) / f"{ENV}.yaml"


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def _read_pid(directory: Path) -> int | None:
    try:
        return int((directory / "sandbox.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def state(directory: Path | None = None) -> dict[str, Any] | None:
    """What runs where, if a sandbox is up (its supervisor alive and ready); else None."""
    directory = directory or sandbox_dir()
    pid = _read_pid(directory)
    if pid is None or not _alive(pid):
        return None
    try:
        found: dict[str, Any] = json.loads((directory / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return found


def up(directory: Path | None = None, timeout: float = 180) -> dict[str, Any]:
    """Start the sandbox, or find it running; its state."""
    directory = directory or sandbox_dir()
    running = state(directory)
    if running is not None:
        return {**running, "already_running": True}
    down(directory)  # whatever a crashed `up` left: stopped first
    directory.mkdir(parents=True, exist_ok=True)
    log = (directory / "sandbox.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "llmops.drill.sandbox", str(directory), str(targets_path())],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                               cwd=PROJECT_ROOT)
    log.close()
    (directory / "sandbox.pid").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = state(directory)
        if found is not None:
            return {**found, "already_running": False}
        if process.poll() is not None:
            tail = (directory / "sandbox.log").read_text()[-2000:]
            down(directory)
            raise SandboxError(f"the sandbox stopped while starting (exit {process.returncode}); its log "
                               f"({directory / 'sandbox.log'}) ends with:\n{tail}")
        time.sleep(0.2)
    down(directory)
    raise SandboxError(f"the sandbox was not ready within {timeout:g} s; see {directory / 'sandbox.log'}")


def down(directory: Path | None = None, timeout: float = 30) -> list[int]:
    """Stop the supervisor and every server it started (also those a killed supervisor left); remove the targets
    file and the state. Returns the pids it stopped."""
    directory = directory or sandbox_dir()
    pids: list[int] = []
    supervisor = _read_pid(directory)
    children: list[int] = []
    try:
        children = [int(p) for p in json.loads((directory / "state.json").read_text()).get("pids", [])]
    except (FileNotFoundError, ValueError):
        pass
    if supervisor is not None and _alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)
        pids.append(supervisor)
        deadline = time.monotonic() + timeout
        while _alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(supervisor):
            os.kill(supervisor, signal.SIGKILL)
    for pid in children:
        if _alive(pid) and _cmdline_is_ours(pid, directory):
            os.kill(pid, signal.SIGKILL)
            pids.append(pid)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for name in ("sandbox.pid", "state.json"):
        (directory / name).unlink(missing_ok=True)
    target = targets_path()
    if target.exists() and "llmops sandbox" in target.read_text():
        target.unlink()
    return pids


def _cmdline_is_ours(pid: int, directory: Path) -> bool:
    """A recorded pid is only killed if it still is one of our servers (pids are reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return str(directory) in command or "moto.server" in command or "pushgateway" in command


# --- what the sandbox seeds beyond the drills' worlds -----------------------------------------------------------------

PROD_SERVICE = "chat"  # what the README's prod examples name (--service chat)


def seed_prod_service(world: Any, stack_file: Path, deployment: dict[str, Any], route: dict[str, Any]) -> str:
    """prod's `chat` beside the drill's chat-small, so that the README's prod examples (`rollback --service chat`,
    `--to 8`) plan as written: its Deployment and HTTPRoute as the composed stack renders them, and its registry
    history as the stack file has it -- the release's version serving as `production`, the one before it the last
    validated with a release manifest, the canary's (if newer) not validated. Nothing simulates chat's requests: its
    runbooks are for dry runs here. Returns what was seeded, for `status`."""
    from components import config as stack_config
    from components.release import RELEASE_TAG, VALIDATED_TAG, VALIDATED_VALUE

    model = next(m for m in stack_config.load_file(stack_file).models if m.name == PROD_SERVICE)
    registered, serving = model.registry.model, int(model.release.version)
    newest = max(serving, int(model.canary.release.version) if model.canary else serving)
    world.k8s.seed(deployment, route)
    manifest = json.loads(deployment["metadata"]["annotations"]["llmops.io/release"])
    validated = {VALIDATED_TAG: VALIDATED_VALUE}
    versions = {str(v): dict(validated) if v <= serving else {} for v in range(1, newest + 1)}
    versions[str(serving - 1)][RELEASE_TAG] = json.dumps(
        {**manifest, "model_version": str(serving - 1), "prompt_version": "chat-2026-10-01"})  # an older prompt too
    world.registry.register(registered, versions)
    world.registry.client.set_registered_model_alias(registered, "production", str(serving))
    return (f"{PROD_SERVICE} serves {registered} version {serving}, version {serving - 1} is known good "
            "(dry runs: its requests are not simulated)")


# --- the supervisor ---------------------------------------------------------------------------------------------------

def compose_stack(directory: Path, adapters: list[Any] | None = None) -> Path:
    """The sandbox's stack file, `Pulumi.sandbox.yaml` in its directory: prod's shape (two regions, failover, the
    docs index) with staging's chat-small canary, so that every runbook finds what it acts on; then what each world
    needs (`adapt_stack`: the docs index on the local embedder, ...). Every world is seeded from this one file."""
    import copy

    from components.paths import STACKS_DIR

    prod = yaml.safe_load((STACKS_DIR / "Pulumi.prod.yaml").read_text())
    staging = yaml.safe_load((STACKS_DIR / "Pulumi.staging.yaml").read_text())
    canary = next(m for m in staging["config"]["llmops:models"] if m["name"] == "chat-small")["canary"]
    next(m for m in prod["config"]["llmops:models"] if m["name"] == "chat-small")["canary"] = copy.deepcopy(canary)
    for world in adapters or []:
        prod = world.adapt_stack(prod)
    path = directory / "Pulumi.sandbox.yaml"
    path.write_text("# composed by `llmops sandbox up` from stacks/Pulumi.prod.yaml (+ staging's chat-small canary)\n"
                    + yaml.safe_dump(prod, sort_keys=False))
    return path


def serve(directory: Path, target: Path) -> None:
    """Start the world, publish where it is, wait for SIGTERM, stop it."""
    import shutil

    from llmops.drill.backends import die_with_parent  # noqa: F401 - the servers die with this process
    from llmops.drill.failover_drill import FailoverDrill
    from llmops.drill.pii_drill import PiiDrill
    from llmops.drill.reindex_drill import ReindexWorld
    from llmops.drill.rollback_drill import SERVICE, RollbackDrill, serving_objects

    stop = {"now": False}

    def on_signal(signum: int, frame: Any) -> None:
        stop["now"] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for name in ("world", "failover", "retrieval", "pii"):  # every `up` seeds afresh: nothing of an earlier world
        shutil.rmtree(directory / name, ignore_errors=True)
        (directory / name).mkdir(parents=True)
    # One moto server (the rollback world's) for every world; the worlds' own signals (Prometheus per world) are the
    # drills' business: the sandbox keeps one Prometheus and one Pushgateway, for runbooks run by hand.
    failover = FailoverDrill(directory / "failover", with_signals=False)
    retrieval = ReindexWorld(directory / "retrieval", with_signals=False, bucket=CORPUS_BUCKET)
    pii = PiiDrill(directory / "pii", with_signals=False)
    composed = compose_stack(directory, [retrieval, pii])
    objects = serving_objects(composed, (SERVICE, PROD_SERVICE))
    world = RollbackDrill(directory / "world", stack_source=composed, objects=objects[SERVICE])
    try:
        world.start()
        prod_seeded = seed_prod_service(world, composed, *objects[PROD_SERVICE])
        for other in (failover, retrieval, pii):
            other.aws_endpoint = world.aws_endpoint
        failover.start()  # its hosted zone exists now: the stack file names it
        shutil.copy(compose_stack(directory, [retrieval, pii, failover]), world.stack_file)
        retrieval.use_stack(world.stack_file)
        retrieval.start()
        pii.start()
        pii.inject()  # a misconfigured logger wrote personal data: what the pii-incident runbook finds
        drill_targets = yaml.safe_load(world.write_targets().read_text())
        for other in (failover, retrieval, pii):
            drill_targets.update({k: v for k, v in other.targets_sections().items() if k != "aws"})
        drill_targets["environment"] = ENV
        drill_targets["aws"]["local_credentials"] = True
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("# written by `llmops sandbox up`; removed by `llmops sandbox down`\n"
                          + yaml.safe_dump(drill_targets, sort_keys=False))
        processes = {name: getattr(world, name).process for name in ("prometheus", "pushgateway", "moto")}
        published = {
            "pid": os.getpid(), "started_at": time.time(), "directory": str(directory), "targets": str(target),
            "stack_file": str(world.stack_file), "pids": [p.pid for p in processes.values()],
            "services": {
                "prometheus": {"url": world.prometheus.url, "pid": processes["prometheus"].pid},
                "pushgateway": {"url": world.pushgateway.url, "pid": processes["pushgateway"].pid},
                "moto (S3, DynamoDB, SNS, SQS, Route53)": {"url": world.aws_endpoint, "pid": processes["moto"].pid},
                "kubernetes API (rollback, canary)": {"url": world.k8s.url, "pid": os.getpid()},
                **{f"kubernetes API {region} (failover)": {"url": api.url, "pid": os.getpid()}
                   for region, api in failover.clusters.items()},
                "MLflow store": {"url": world.registry.uri, "pid": None},
                "MLflow store (failover regions)": {"url": failover.registry_uri, "pid": None},
                "Qdrant (embedded, docs index)": {"url": str(retrieval.qdrant), "pid": None},
                "vLLM (simulated, bad release live)": {"url": f"http://127.0.0.1:{world.vllm.port}/metrics",
                                                       "pid": os.getpid()},
            },
            "seeded": {
                "rollback": "chat-small serves version 3, which fails 20 % of requests; version 4 is its canary",
                "rollback (prod's chat)": prod_seeded,
                "failover": f"us-east-1 primary, us-west-2 standby ready (Route53 zone {failover.zone})",
                "reindex": f"corpus {retrieval.corpus}, index docs live",
                "pii-incident": f"personal data in {pii.source}",
            },
        }
        scratch = directory / "state.json.tmp"
        scratch.write_text(json.dumps(published, indent=2))
        scratch.replace(directory / "state.json")
        print(f"sandbox up: {world.describe()}", flush=True)
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        for other in (pii, retrieval, failover):
            other.stop()
        world.stop()
        (directory / "state.json").unlink(missing_ok=True)
        print("sandbox down: every server stopped", flush=True)


if __name__ == "__main__":
    serve(Path(sys.argv[1]), Path(sys.argv[2]))
