#!/usr/bin/env bash
# Create .venv and install agent-envs with the extras the tests and the main job use.
# Idempotent: re-running only installs what changed. Usage: scripts/setup.sh [EXTRAS]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-dev,train}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
echo "[setup] installing agent-envs[$EXTRAS] into .venv (torch is the CPU wheel torch==2.13.0)"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]" 2>&1 \
    | grep -v -e "^WARNING: Location" -e "^  *!!" -e "with strategy, WheelFile" || true
.venv/bin/python -c "import agent_envs, sandboxes, trainers" \
    || { echo "[setup] error: the install is broken (see above)" >&2; exit 1; }
echo "[setup] done: $(.venv/bin/python -c 'import agent_envs; print("agent-envs", agent_envs.__version__)')"
