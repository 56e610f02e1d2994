#!/usr/bin/env bash
# Build .venv-verl: verl 0.9.1 (no vllm/sglang extras), the CPU torch 2.13.0 wheel, agent-envs
# (-e ., no extras) and pytest, at exactly the versions in locks/verl.lock. A venv of its own
# because verl 0.9.1 requires transformers>=5.5.3,<5.11 and our main lock (requirements.lock)
# has a newer transformers. Idempotent: re-running installs only what changed.
#
#   bash scripts/setup_verl.sh          # build/update .venv-verl from locks/verl.lock
#   bash scripts/setup_verl.sh --lock   # re-resolve in a throwaway venv and rewrite the lock
#
# What gets resolved (--lock): verl==0.9.1 and torch==2.13.0 (that exact pin resolves to the CPU
# wheel here; any looser pin pulls gigabytes of CUDA packages, which the lock must never hold),
# plus three packages verl 0.9.1 imports at `import verl.experimental.agent_loop` but lists
# only under its heavy `verl-core` extra (cachetools, fastapi, uvicorn), plus pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LOCK=locks/verl.lock
PIP_FLAGS=(-q --disable-pip-version-check)
TOP=("verl==0.9.1" "torch==2.13.0" cachetools fastapi uvicorn
     pytest pytest-asyncio pytest-timeout
     docstring-parser)  # agent-envs[functions]: python-tool imports the functions family (agent-v0)

quiet() {  # run pip, print its log only when it fails
    local log
    log="$(mktemp /tmp/agent-envs-verl.XXXXXX.log)"
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    grep -v -e "^WARNING: Location" -e "^  *!!" "$log" || true
    rm -f "$log"
}

if [ "${1:-}" = "--lock" ]; then
    TMP="$(mktemp -d /tmp/agent-envs-verl-lock.XXXXXX)"
    trap 'rm -rf "$TMP"' EXIT
    echo "[setup-verl] resolving ${TOP[*]} and agent-envs (-e .) with $($PY --version) in $TMP"
    "$PY" -m venv "$TMP/venv"
    quiet "$TMP/venv/bin/python" -m pip install "${PIP_FLAGS[@]}" "${TOP[@]}" -e .
    mkdir -p locks
    {
        echo "# .venv-verl's exact versions (pip freeze); scripts/setup_verl.sh installs from it."
        echo "# Refresh: bash scripts/setup_verl.sh --lock, then run tests_external/verl."
        echo "# Resolved for ${TOP[*]} + agent-envs on $($PY --version 2>&1), $(uname -m), on $(date -u +%F)."
        "$TMP/venv/bin/python" -m pip freeze --disable-pip-version-check --exclude agent-envs \
            | LC_ALL=C sort -f
    } > "$LOCK.new"
    if grep -qi -e "^nvidia-" -e "^triton==" "$LOCK.new"; then
        echo "[setup-verl] error: the resolution pulled CUDA packages:" >&2
        grep -i -e "^nvidia-" -e "^triton==" "$LOCK.new" >&2
        rm -f "$LOCK.new"
        exit 1
    fi
    mv "$LOCK.new" "$LOCK"
    echo "[setup-verl] wrote $LOCK ($(grep -vc '^#' "$LOCK") packages)"
    exit 0
fi

[ -f "$LOCK" ] || { echo "[setup-verl] error: $LOCK is missing; run: bash scripts/setup_verl.sh --lock" >&2; exit 1; }
if [ ! -x .venv-verl/bin/python ]; then
    echo "[setup-verl] creating .venv-verl with $($PY --version)"
    "$PY" -m venv .venv-verl
fi
echo "[setup-verl] installing $(grep -vc '^#' "$LOCK") packages from $LOCK (verl 0.9.1, torch 2.13.0 CPU wheel)"
quiet .venv-verl/bin/python -m pip install "${PIP_FLAGS[@]}" -r "$LOCK" \
    || { echo "[setup-verl] error: pip could not install $LOCK (above)" >&2; exit 1; }
echo "[setup-verl] installing agent-envs (-e ., no extras; its dependencies are in the lock)"
quiet .venv-verl/bin/python -m pip install "${PIP_FLAGS[@]}" --no-deps -e . \
    || { echo "[setup-verl] error: pip could not install agent-envs (above)" >&2; exit 1; }
echo "[setup-verl] checking the install"
.venv-verl/bin/python -m pip check --disable-pip-version-check
.venv-verl/bin/python -c "import torch, verl, transformers
import verl.experimental.agent_loop, trainers.adapters.verl
assert torch.__version__.endswith('+cpu'), torch.__version__
print('[setup-verl] done: verl', verl.__version__, '| torch', torch.__version__,
      '| transformers', transformers.__version__)" \
    || { echo "[setup-verl] error: the install is broken (see above)" >&2; exit 1; }
