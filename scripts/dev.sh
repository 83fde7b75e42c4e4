#!/usr/bin/env bash
# One entry point for a fresh clone: sets up .venv (pinned by pyproject.toml + constraints.txt),
# then runs the main job or the tests. Each stage is announced with the time since the start.
#
#   scripts/dev.sh plan    offline plan of every stack (plan JSON, rendered + validated manifests and rule files)
#                          with the policy pack's check of the same plans, then every on-call drill against real
#                          local backends; ends with a summary table. The full output goes to build/plan.log;
#                          `scripts/dev.sh plan --verbose` (or VERBOSE=1) prints it as it runs too.
#   scripts/dev.sh test    the checks (ruff, mypy, import-linter) and then the whole test suite (what CI runs)
#   scripts/dev.sh check   only the checks
#   scripts/dev.sh setup   only the setup
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
case "${VERBOSE:-0}" in 0|""|false|no|off) VERBOSE=0 ;; *) VERBOSE=1 ;; esac
LOG=build/plan.log
UV_PIN=uv==0.13.9  # the installer; the packages themselves are pinned by constraints.txt

# "[ 12s] what happens now": on stderr, so that stdout keeps only what the commands print.
stage() { printf '[%3ds] %s\n' "$SECONDS" "$*" >&2; }

now() { date +%s.%N; }
since() { awk -v began="$1" -v now="$(now)" 'BEGIN { printf "%.1f", now - began }'; }

# Debian's Prometheus (promtool checks the alert rules; the server and the Pushgateway back the
# runbook tests and drills) and LuaJIT (the Lua that Fluent Bit embeds: the drift sampling filter is
# run with it). Installed without recommends and with service start-up blocked (policy-rc.d), so
# nothing starts listening on this host.
install_promtool() {
  command -v promtool >/dev/null && command -v prometheus-pushgateway >/dev/null && command -v luajit >/dev/null && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "promtool or luajit is missing: install Debian's prometheus, prometheus-pushgateway and luajit (apt-get install --no-install-recommends ...)" >&2
    return 0  # the tests that need them fail and say so
  fi
  stage "installing Debian packages (apt-get: prometheus, prometheus-pushgateway, luajit; no service is started) ..."
  local blocker=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$blocker" ]; then printf '#!/bin/sh\nexit 101\n' > "$blocker"; chmod +x "$blocker"; created=1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway luajit >/dev/null
  [ "$created" = 1 ] && rm -f "$blocker"
  return 0
}

setup() {
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
  if [ ! -x "$VENV/bin/python" ]; then
    stage "creating the virtualenv $VENV ($PYTHON -m venv) ..."
    "$PYTHON" -m venv "$VENV"
  fi
  # Reinstall only when the pins changed; the stamp records what was installed. uv (pinned, installed into the
  # venv by pip) installs the same pins as pip in seconds rather than minutes; where uv cannot be had or cannot
  # reach the index (LLMOPS_INSTALLER=pip chooses so too), pip installs them.
  local stamp="$VENV/.llmops-installed" wanted
  wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    local installer=${LLMOPS_INSTALLER:-uv} quiet=--quiet
    [ -t 1 ] && quiet=  # on a terminal, the installer's own progress: what it downloads and builds
    if [ "$installer" = uv ] && ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$UV_PIN"; then
      echo "could not install $UV_PIN; installing with pip instead" >&2
      installer=pip
    fi
    stage "installing Python packages into $VENV ($installer, pinned by constraints.txt) ..."
    if [ "$installer" = uv ] && ! "$VENV/bin/uv" pip install $quiet --compile-bytecode --python "$VENV/bin/python" -c constraints.txt -e '.[dev]'; then
      stage "uv failed; installing with pip instead (the first time takes a few minutes) ..."
      installer=pip
    fi
    if [ "$installer" != uv ]; then
      local progress=--quiet
      [ -t 1 ] && progress="--progress-bar on"
      "$VENV/bin/python" -m pip install $progress --disable-pip-version-check -c constraints.txt -e '.[dev]'
    fi
    echo "$wanted" > "$stamp"
  else
    stage "Python packages in $VENV are up to date"
  fi
}

# Lint, types and the layering, before any test: each fails on any finding (configured in pyproject.toml).
check() {
  stage "checks: ruff, mypy, import-linter ..."
  echo "ruff: lint (pyflakes, pycodestyle, import order, bugbear)" >&2
  "$VENV/bin/ruff" check --quiet .
  echo "mypy: types (strict for the engine, manifests, PII and retrieval libraries)" >&2
  "$VENV/bin/mypy"
  echo "import-linter: the layering contracts" >&2
  "$VENV/bin/lint-imports" --no-cache | sed -n '/^Contracts:/,$p'
}

# step CMD...: run one step of the plan with its output in $LOG (and on the terminal too when verbose); sets
# STEP_CODE and STEP_SECONDS. A failed step's last lines are shown, so its message is seen without the log.
step() {
  local began code=0
  began=$(now)
  if [ "$VERBOSE" = 1 ]; then
    "$@" 2>&1 | tee -a "$LOG" || code=$?
  else
    "$@" >>"$LOG" 2>&1 || code=$?
  fi
  STEP_CODE=$code
  STEP_SECONDS=$(since "$began")
  if [ "$code" != 0 ] && [ "$VERBOSE" != 1 ]; then
    echo "--- the last lines of $LOG ---" >&2
    tail -n 25 "$LOG" >&2
    echo "---" >&2
  fi
}

plan() {
  setup
  mkdir -p build
  : > "$LOG"
  rm -f build/plan-report.json  # a report found afterwards is this run's
  stage "planning every stack offline (evaluate, validate, render) and checking the policy pack on the same plans ..."
  step "$VENV/bin/llmops" preview --validate --render build/manifests --json 'build/plan-{stack}.json' --policy \
    --report build/plan-report.json
  local plan_code=$STEP_CODE plan_seconds=$STEP_SECONDS drill_args=() drills_began
  if [ "$plan_code" = 0 ]; then
    install_promtool
    stage "on-call drills (llmops drill all: each injects a fault on real local backends and runs its runbook) ..."
    drills_began=$(date +%s)
    step "$VENV/bin/llmops" drill all
    drill_args=(--drill-exit "$STEP_CODE" --drill-seconds "$STEP_SECONDS" --since "$drills_began")
  fi
  "$VENV/bin/python" scripts/plan_summary.py --plan-report build/plan-report.json --plan-exit "$plan_code" \
    --plan-seconds "$plan_seconds" --drills-dir build/drills --drill-command "llmops drill all" "${drill_args[@]}" \
    --log "$LOG" || true
  if [ "$plan_code" != 0 ]; then return "$plan_code"; fi
  return "${drill_args[1]}"
}

case "${1:-}" in
  setup) setup ;;
  check)
    setup
    check
    ;;
  plan)
    for option in "${@:2}"; do
      case "$option" in
        -v|--verbose) VERBOSE=1 ;;
        *) echo "usage: scripts/dev.sh plan [--verbose]" >&2; exit 2 ;;
      esac
    done
    plan
    ;;
  test)
    setup
    check
    install_promtool
    # Two workers per core, a test file per worker at a time (its session fixtures start once per worker): the
    # runbook suites spend most of their time waiting on real backends (a rollout, a verification window), so a
    # second worker per core fills those waits. The slowest tests are listed at the end, so a slow one is seen.
    stage "tests (pytest, $(( 2 * $(nproc) )) workers) ..."
    "$VENV/bin/python" -m pytest -n "$(( 2 * $(nproc) ))" --dist loadfile --durations=15 "${@:2}"
    ;;
  *) echo "usage: scripts/dev.sh plan [--verbose]|test|check|setup" >&2; exit 2 ;;
esac
