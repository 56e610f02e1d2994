#!/usr/bin/env bash
# Create .venv and install agent-envs with the extras the tests and the main job use, at the
# exact versions in requirements.lock (so a fresh machine gets what the suite was run with).
# Idempotent: re-running only installs what changed. Usage: scripts/setup.sh [EXTRAS]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-dev,train}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
echo "[setup] installing agent-envs[$EXTRAS] into .venv from requirements.lock (torch is the CPU wheel torch==2.13.0)"
LOG="$(mktemp /tmp/agent-envs-setup.XXXXXX.log)"
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock \
        -e ".[$EXTRAS]" >"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "[setup] error: pip could not install agent-envs[$EXTRAS] from requirements.lock (above)." \
         "If pyproject.toml changed, refresh the lock: bash scripts/lock.sh" >&2
    exit 1
fi
grep -v -e "^WARNING: Location" -e "^  *!!" -e "with strategy, WheelFile" "$LOG" || true
rm -f "$LOG"
.venv/bin/python -c "import agent_envs, sandboxes, trainers" \
    || { echo "[setup] error: the install is broken (see above)" >&2; exit 1; }
echo "[setup] done: $(.venv/bin/python -c 'import agent_envs; print("agent-envs", agent_envs.__version__)')"
