#!/usr/bin/env bash
# Fly's single-VM mode (the default, fly.toml): the whole stack in one Machine, honcho over the
# Procfile. The metrics folder is wiped first, so no value outlives a restart; the processes
# then share it and one of them serves the sum on METRICS_PORT. honcho hands PORT to web (the
# Procfile's first line) from -p. On SIGTERM honcho passes it to every process and waits for
# them (each finishes its work within fly.toml's kill_timeout; docs/operations.md, Shutdown).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PROMETHEUS_MULTIPROC_DIR:?set PROMETHEUS_MULTIPROC_DIR (fly.toml and the Dockerfile do)}"
python -c 'import sys; from pathlib import Path; from alfred.metrics import wipe_multiproc_dir; wipe_multiproc_dir(Path(sys.argv[1]))' "$PROMETHEUS_MULTIPROC_DIR"
# honcho SIGKILLs what is still running 5 s after it passed SIGTERM on; give the processes
# 25 s instead (gunicorn's graceful_timeout is 20 s, Celery's soft shutdown 20 s), under
# fly.toml's kill_timeout of 30 s.
exec python -c 'import sys, honcho.manager, honcho.command
honcho.manager.KILL_WAIT = int(sys.argv[1])
argv = sys.argv[2:]
honcho.command.main(argv)' "${HONCHO_KILL_WAIT_S:-25}" start -f Procfile -p "${PORT:-8080}"
