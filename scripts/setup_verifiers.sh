#!/usr/bin/env bash
# Build .venv-verifiers: Prime Intellect's verifiers 0.4.0 with its [openenv] extra (OpenEnv's
# client, openenv 0.4.1), agent-envs (-e ., no extras; what the tests use in-process is in
# the lock: the [browser] and [functions] extras' packages) and pytest, at exactly the
# versions in locks/verifiers.lock. A venv of its own because verifiers' openenv 0.4.1 and our
# [server] extra's openenv-core 0.3 both install the `openenv` package. The env server the
# tests drive runs from the main .venv, as it would on an env box. Idempotent: re-running
# installs only what changed.
#
#   bash scripts/setup_verifiers.sh          # build/update .venv-verifiers from the lock
#   bash scripts/setup_verifiers.sh --lock   # re-resolve in a throwaway venv, rewrite the lock
#
# Then: .venv-verifiers/bin/python -m pytest tests_external/verifiers
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LOCK=locks/verifiers.lock
PIP_FLAGS=(-q --disable-pip-version-check)
TOP=("verifiers[openenv]==0.4.0" pytest pytest-asyncio pytest-timeout)

quiet() {  # run pip, print its log only when it fails
    local log
    log="$(mktemp /tmp/agent-envs-verifiers.XXXXXX.log)"
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    grep -v -e "^WARNING: Location" -e "^  *!!" "$log" || true
    rm -f "$log"
}

if [ "${1:-}" = "--lock" ]; then
    TMP="$(mktemp -d /tmp/agent-envs-verifiers-lock.XXXXXX)"
    trap 'rm -rf "$TMP"' EXIT
    echo "[setup-verifiers] resolving ${TOP[*]} and agent-envs[browser,functions] (-e .) with $($PY --version) in $TMP"
    "$PY" -m venv "$TMP/venv"
    quiet "$TMP/venv/bin/python" -m pip install "${PIP_FLAGS[@]}" "${TOP[@]}" -e ".[browser,functions]"
    mkdir -p locks
    {
        echo "# .venv-verifiers' exact versions (pip freeze); scripts/setup_verifiers.sh installs from it."
        echo "# Refresh: bash scripts/setup_verifiers.sh --lock, then run tests_external/verifiers."
        echo "# Resolved for ${TOP[*]} + agent-envs[browser,functions] on $($PY --version 2>&1), $(uname -m), on $(date -u +%F)."
        "$TMP/venv/bin/python" -m pip freeze --disable-pip-version-check --exclude agent-envs \
            | LC_ALL=C sort -f
    } > "$LOCK.new"
    if grep -qi -e "^openenv-core==" "$LOCK.new"; then
        echo "[setup-verifiers] error: the resolution pulled openenv-core, which clashes with openenv:" >&2
        grep -i -e "^openenv" "$LOCK.new" >&2
        rm -f "$LOCK.new"
        exit 1
    fi
    mv "$LOCK.new" "$LOCK"
    echo "[setup-verifiers] wrote $LOCK ($(grep -vc '^#' "$LOCK") packages)"
    exit 0
fi

[ -f "$LOCK" ] || { echo "[setup-verifiers] error: $LOCK is missing; run: bash scripts/setup_verifiers.sh --lock" >&2; exit 1; }
if [ ! -x .venv-verifiers/bin/python ]; then
    echo "[setup-verifiers] creating .venv-verifiers with $($PY --version)"
    "$PY" -m venv .venv-verifiers
fi
echo "[setup-verifiers] installing $(grep -vc '^#' "$LOCK") packages from $LOCK (verifiers 0.4.0, openenv 0.4.1)"
quiet .venv-verifiers/bin/python -m pip install "${PIP_FLAGS[@]}" -r "$LOCK" \
    || { echo "[setup-verifiers] error: pip could not install $LOCK (above)" >&2; exit 1; }
echo "[setup-verifiers] installing agent-envs (-e ., no extras; its dependencies are in the lock)"
quiet .venv-verifiers/bin/python -m pip install "${PIP_FLAGS[@]}" --no-deps -e . \
    || { echo "[setup-verifiers] error: pip could not install agent-envs (above)" >&2; exit 1; }
echo "[setup-verifiers] checking the install"
.venv-verifiers/bin/python -m pip check --disable-pip-version-check
.venv-verifiers/bin/python -c "import importlib.metadata as md
import openenv, verifiers.v1 as vf, agent_envs
from verifiers.v1.tasksets.openenv import OpenEnvEnv, OpenEnvTaskset
from openenv import GenericEnvClient
print('[setup-verifiers] done: verifiers', md.version('verifiers'), '| openenv',
      md.version('openenv'), '| agent-envs', agent_envs.__version__)" \
    || { echo "[setup-verifiers] error: the install is broken (see above)" >&2; exit 1; }
