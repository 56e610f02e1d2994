#!/usr/bin/env bash
# Install the reference implementations the test suite holds our code against, without their
# heavy dependencies (what their tested code paths import is in the `dev` extra, locked):
#   gpt-oss    OpenAI's reference browser tool (gpt_oss/tools/simple_browser). The wheel
#              declares Python 3.12; its browser tool runs on 3.11.
#   bfcl-eval  BFCL's data and checkers (ast_checker, multi_turn_checker).
# Idempotent. Usage: scripts/install_test_oracles.sh   (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
GPT_OSS=0.0.9
BFCL_EVAL=2026.3.23
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
have gpt-oss "$GPT_OSS" && have bfcl-eval "$BFCL_EVAL" \
    || { echo "[oracles] error: the test oracles did not install (see above)" >&2; exit 1; }
echo "[oracles] gpt-oss $GPT_OSS and bfcl-eval $BFCL_EVAL installed"
