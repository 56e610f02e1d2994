#!/usr/bin/env bash
# Build .venv-skyrl: SkyRL 0.3 (CPU, no vLLM/GPU extras) + agent-envs (no extras) + pytest, at
# the exact versions in locks/skyrl.lock, for the SkyRL adapter (trainers/adapters/skyrl.py) and
# its tests (tests_external/skyrl). SkyRL pins transformers<=5.8 and peft==0.18.1, older than our
# [train] extra, hence a venv of its own.
#
# What is installed: skyrl==0.3.0 and the packages of its `skyrl-train` extra except the CUDA-only
# ones (flash-attn, vllm-router, nixl), torch==2.13.0 (the CPU wheel this machine keeps on disk:
# pip takes torch 2.13.0+cpu from its find-links; SkyRL's own `fsdp` extra would pin torch 2.11 +
# vLLM and pull gigabytes of CUDA wheels), pytest, and agent-envs itself (-e ., no extras).
#
# Usage: bash scripts/setup_skyrl.sh          install from the lock (idempotent: a venv that
#                                             already matches the lock is left alone)
#        bash scripts/setup_skyrl.sh --lock   re-resolve in a throwaway venv, rewrite the lock
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."
VENV="${SKYRL_VENV:-.venv-skyrl}"  # SKYRL_VENV: build elsewhere (e.g. to test a fresh build)
LOCK="${SKYRL_LOCK:-locks/skyrl.lock}"  # SKYRL_LOCK: write/read another lock file
PY="${PYTHON:-python3}"
REQS=(
    "torch==2.13.0" "skyrl==0.3.0"
    # skyrl[skyrl-train] without flash-attn, vllm-router, nixl (CUDA only)
    loguru tqdm ninja tensorboard func_timeout "hydra-core==1.3.2" accelerate torchdata omegaconf
    "ray==2.56.0" "peft==0.18.1" "debugpy==1.8.0" hf_transfer wandb "datasets>=4.0.0" tensordict
    jaxtyping "skyrl-gym==0.4.0" polars s3fs fastapi uvicorn pybind11 setuptools
    pytest pytest-asyncio pytest-timeout
    docstring-parser  # agent-envs[functions]: python-tool imports the functions family (agent-v0)
)
log() { echo "[setup-skyrl] $*"; }

freeze() {  # the venv's packages, as the lock lists them
    "$1/bin/python" -m pip freeze --all --disable-pip-version-check --exclude agent-envs \
        --exclude pip | LC_ALL=C sort -f
}

if [ "${1:-}" = "--lock" ]; then
    TMP="$(mktemp -d /tmp/skyrl-lock.XXXXXX)"
    trap 'rm -rf "$TMP"' EXIT
    log "resolving ${#REQS[@]} requirements with $($PY --version) in $TMP (no constraints)"
    "$PY" -m venv "$TMP/venv"
    "$TMP/venv/bin/python" -m pip install -q --disable-pip-version-check "${REQS[@]}" -e . 2>&1 \
        | { grep -v -e "^WARNING: Location" || true; }
    if freeze "$TMP/venv" | grep -qi '^nvidia-'; then
        log "error: the resolution pulled CUDA wheels (nvidia-*); torch must stay 2.13.0+cpu" >&2
        exit 1
    fi
    mkdir -p locks
    {
        echo "# pip constraints for .venv-skyrl (scripts/setup_skyrl.sh): SkyRL 0.3 on the CPU."
        echo "# Refresh: bash scripts/setup_skyrl.sh --lock, then run tests_external/skyrl."
        echo "# Resolved on $($PY --version 2>&1), $(uname -m), on $(date -u +%F)."
        freeze "$TMP/venv"
    } > "$LOCK.new"
    mv "$LOCK.new" "$LOCK"
    log "wrote $LOCK ($(grep -vc '^#' "$LOCK") packages)"
    exit 0
fi

[ -f "$LOCK" ] || { log "error: $LOCK is missing; run: bash scripts/setup_skyrl.sh --lock" >&2; exit 1; }
STAMP="$VENV/.agent-envs-skyrl-stamp"
WANT="$(cat "$LOCK" "$SELF" | sha256sum | cut -d' ' -f1)"
check() {
    TIKTOKEN_ENCODINGS_BASE="${TIKTOKEN_ENCODINGS_BASE:-$PWD/../shared/vocab}" \
        "$VENV/bin/python" -c "import trainers.adapters.skyrl, skyrl, torch; \
print('skyrl', __import__('importlib.metadata').metadata.version('skyrl'), '| torch', \
torch.__version__, '| transformers', __import__('transformers').__version__)"
}
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] && check >/dev/null 2>&1; then
    log "$VENV is up to date with $LOCK: $(check)"
    exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $($PY --version)"
    "$PY" -m venv "$VENV"
fi
log "installing ${#REQS[@]} requirements + agent-envs (-e .) into $VENV from $LOCK (a few minutes on a fresh venv)"
OUT="$(mktemp /tmp/setup-skyrl.XXXXXX.log)"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -c "$LOCK" "${REQS[@]}" -e . \
        >"$OUT" 2>&1; then
    cat "$OUT" >&2
    log "error: pip could not install from $LOCK (above); if the requirements changed, refresh" \
        "the lock: bash scripts/setup_skyrl.sh --lock" >&2
    exit 1
fi
grep -E "^Successfully installed" "$OUT" | cut -c1-300 || true
rm -f "$OUT"
log "checking $VENV against $LOCK"
if ! diff <(grep -v '^#' "$LOCK") <(freeze "$VENV") >/tmp/setup-skyrl-diff.txt; then
    cat /tmp/setup-skyrl-diff.txt >&2
    log "error: $VENV differs from $LOCK (< lock, > venv): packages were added or changed by" \
        "hand. Rebuild it: rm -rf $VENV && bash scripts/setup_skyrl.sh" >&2
    exit 1
fi
check >/dev/null 2>&1 || { check; log "error: the install is broken (see above)" >&2; exit 1; }
echo "$WANT" > "$STAMP"
log "done: $(check)"
