#!/usr/bin/env bash
# make load: the seed's load test (Locust, headless) on a private stack; see docs/benchmarks.md.
#   RATE=50 DURATION=300 bash bench/load.sh      (DURATION in seconds, or 5m)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
exec "$PY" bench/load.py --rate "${RATE:-50}" --duration "${DURATION:-300}" "$@"
