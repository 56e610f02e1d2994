#!/usr/bin/env bash
# What benchmarks/browser_engines.py needs to run Lucene as pyserini does, outside the project's
# venv (neither is a dependency of agent-envs): Anserini's fatjar, taken from the pyserini
# 0.22.1 wheel (Java 11+), and a Python with pyjnius to call it. Usage:
#   bash scripts/setup_engines_bench.sh [DIR]     (default /work/data/pyserini)
set -euo pipefail
DIR="${1:-/work/data/pyserini}"
PY="${PYTHON:-python3}"
mkdir -p "$DIR"
cd "$DIR"
JAR=pyserini/resources/jars/anserini-0.22.1-fatjar.jar
if [ ! -f "$JAR" ]; then
    "$PY" -m pip download -q --no-deps pyserini==0.22.1 -d .
    unzip -o -q pyserini-0.22.1-py3-none-any.whl "$JAR"
fi
if [ ! -x venv/bin/python ]; then
    "$PY" -m venv venv
    venv/bin/pip install -q pyjnius==1.9.0
fi
java -version 2>&1 | head -1
echo "jar: $DIR/$JAR"
echo "python: $DIR/venv/bin/python"
