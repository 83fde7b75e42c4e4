#!/usr/bin/env bash
# One entry point for a fresh clone: sets up .venv (pinned by pyproject.toml + constraints.txt),
# then runs the main job or the tests.
#
#   scripts/dev.sh plan    offline plan of every stack (summary, plan JSON, rendered + validated manifests
#                          and rule files), the policy pack's report over every stack, and an on-call
#                          drill: the rollback runbook against real local backends
#   scripts/dev.sh test    the checks (ruff, mypy, import-linter) and then the whole test suite (what CI runs)
#   scripts/dev.sh check   only the checks
#   scripts/dev.sh setup   only the setup
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv

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
  local blocker=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$blocker" ]; then printf '#!/bin/sh\nexit 101\n' > "$blocker"; chmod +x "$blocker"; created=1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway luajit >/dev/null
  [ "$created" = 1 ] && rm -f "$blocker"
  return 0
}

setup() {
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # Reinstall only when the pins changed; the stamp records what was installed.
  local stamp="$VENV/.llmops-installed" wanted
  wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
    echo "$wanted" > "$stamp"
  fi
}

# Lint, types and the layering, before any test: each fails on any finding (configured in pyproject.toml).
check() {
  echo "ruff: lint (pyflakes, pycodestyle, import order, bugbear)" >&2
  "$VENV/bin/ruff" check --quiet .
  echo "mypy: types (strict for the engine, manifests, PII and retrieval libraries)" >&2
  "$VENV/bin/mypy"
  echo "import-linter: the layering contracts" >&2
  "$VENV/bin/lint-imports" --no-cache | sed -n '/^Contracts:/,$p'
}

case "${1:-}" in
  setup) setup ;;
  check)
    setup
    check
    ;;
  plan)
    setup
    "$VENV/bin/llmops" preview --validate --render build/manifests --json 'build/plan-{stack}.json'
    "$VENV/bin/llmops" policy check
    install_promtool
    "$VENV/bin/llmops" drill rollback
    ;;
  test)
    setup
    check
    install_promtool
    # Two workers per core, a test file per worker at a time (its session fixtures start once per worker): the
    # runbook suites spend most of their time waiting on real backends (a rollout, a verification window), so a
    # second worker per core fills those waits. The slowest tests are listed at the end, so a slow one is seen.
    "$VENV/bin/python" -m pytest -n "$(( 2 * $(nproc) ))" --dist loadfile --durations=15 "${@:2}"
    ;;
  *) echo "usage: scripts/dev.sh plan|test|check|setup" >&2; exit 2 ;;
esac
