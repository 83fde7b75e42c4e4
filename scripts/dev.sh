#!/usr/bin/env bash
# One entry point for a fresh clone: sets up .venv (pinned by pyproject.toml + constraints.txt),
# then runs the main job or the tests.
#
#   scripts/dev.sh plan    offline plan of every stack: summary, plan JSON, rendered + validated manifests
#   scripts/dev.sh test    the whole test suite (what CI runs)
#   scripts/dev.sh setup   only the setup
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv

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

case "${1:-}" in
  setup) setup ;;
  plan)
    setup
    "$VENV/bin/llmops" preview --validate --render build/manifests --json 'build/plan-{stack}.json'
    ;;
  test)
    setup
    "$VENV/bin/python" -m pytest "${@:2}"
    ;;
  *) echo "usage: scripts/dev.sh plan|test|setup" >&2; exit 2 ;;
esac
