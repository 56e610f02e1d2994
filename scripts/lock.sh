#!/usr/bin/env bash
# Refresh requirements.lock: the exact versions the test suite is run with.
#
# Resolves the newest releases that pyproject.toml's ranges allow for every extra CI installs
# (all but `gpu`, which needs CUDA), in a throwaway venv, and writes `pip freeze` of it. Then run
# the suite (`bash .ci/run`) before committing the new lock. Usage: scripts/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="dev,train,ray,data,docker,bench,eval,browser,functions,server,docs"
PY="${PYTHON:-python3}"
TMP="$(mktemp -d /tmp/agent-envs-lock.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
echo "[lock] resolving agent-envs[$EXTRAS] with $($PY --version) in $TMP"
"$PY" -m venv "$TMP/venv"
"$TMP/venv/bin/python" -m pip install -q --disable-pip-version-check ".[$EXTRAS]" 2>&1 \
    | { grep -v -e "^WARNING: Location" || true; }
{
    echo "# The exact versions the test suite runs with; scripts/setup.sh and .ci/run install"
    echo "# from it (pip constraints). Refresh: bash scripts/lock.sh, then bash .ci/run."
    echo "# Resolved for agent-envs[$EXTRAS] on $($PY --version 2>&1), $(uname -m), on $(date -u +%F)."
    "$TMP/venv/bin/python" -m pip freeze --disable-pip-version-check --exclude agent-envs \
        | LC_ALL=C sort -f
} > requirements.lock.new
mv requirements.lock.new requirements.lock
echo "[lock] wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
