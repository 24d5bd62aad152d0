#!/usr/bin/env bash
# Run the whole stack in the foreground with honcho (`make run`): web, worker (with the outbox
# bridge on a thread), beat, flower, and the Cloud API simulator when no real Meta credentials
# are set.
# Redis: the one at REDIS_URL if it answers, else a local redis-server started (and stopped)
# here. Database: SQLite under var/ unless DATABASE_URL says otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"
VAR="$ROOT/var"
mkdir -p "$VAR"

# An optional .env (never committed) holds a developer's own settings, e.g. real Meta ones.
if [[ -f .env ]]; then
    set -a
    # shellcheck disable=SC1091
    . ./.env
    set +a
fi

export PORT="${PORT:-8080}"
SIMULATOR_PORT="${SIMULATOR_PORT:-8081}"
export FLOWER_PORT="${FLOWER_PORT:-5555}"
export METRICS_PORT="${METRICS_PORT:-9091}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"

say() { echo "run: $*" >&2; }

# --- Meta: real credentials, or the local simulator with dev tenants ----------------------
SIMULATE=""
if [[ -z "${ALFRED_TENANTS:-}" && -z "${META_TOKEN:-}" ]]; then
    SIMULATE=1
    export ALFRED_TENANTS='{"home": {"phone_number_id": "100000000000001", "waba_id": "200000000000001", "token": "dev-token-home"}, "biz": {"phone_number_id": "100000000000002", "waba_id": "200000000000002", "token": "dev-token-biz"}}'
    export META_APP_SECRET="${META_APP_SECRET:-dev-app-secret}"
    export META_VERIFY_TOKEN="${META_VERIFY_TOKEN:-dev-verify-token}"
    export META_APP_ID="${META_APP_ID:-1234567890}"
    export SIMULATOR_APP_ID="$META_APP_ID"
    export GRAPH_API_URL="http://127.0.0.1:$SIMULATOR_PORT"
    export SIMULATOR_WEBHOOK_URL="http://127.0.0.1:$PORT/webhook"
fi

# --- Redis ---------------------------------------------------------------------------------
redis_answers() {
    python - "$REDIS_URL" <<'PY' 2>/dev/null
import sys
from alfred.redis_client import get_redis  # a sentinel:// REDIS_URL too
get_redis(sys.argv[1]).ping()
PY
}

OWN_REDIS_PID=""
stop_own_redis() {
    if [[ -n "$OWN_REDIS_PID" ]] && kill -0 "$OWN_REDIS_PID" 2>/dev/null; then
        kill "$OWN_REDIS_PID" 2>/dev/null || true
    fi
}
trap stop_own_redis EXIT

REDIS_NOTE="(already running)"
if ! redis_answers; then
    read -r host port < <(python - "$REDIS_URL" <<'PY'
import sys
from urllib.parse import urlsplit
url = urlsplit(sys.argv[1])
print(url.hostname or "127.0.0.1", url.port or 6379)
PY
)
    if [[ "$host" != "127.0.0.1" && "$host" != "localhost" ]]; then
        say "Redis at $REDIS_URL does not answer, and it is not on this machine: start it there."
        exit 1
    fi
    if ! command -v redis-server >/dev/null; then
        say "Redis does not answer at $REDIS_URL and redis-server is not installed."
        say "Install it: sudo apt-get install redis-server   (macOS: brew install redis)"
        say "or set REDIS_URL to a Redis that answers, then run make run again."
        exit 1
    fi
    mkdir -p "$VAR/redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --dir "$VAR/redis" --pidfile "$VAR/redis/redis.pid" --logfile "$VAR/redis/redis.log"
    for _ in $(seq 1 40); do
        redis_answers && break
        sleep 0.25
    done
    redis_answers || { say "redis-server did not start; see var/redis/redis.log"; exit 1; }
    OWN_REDIS_PID="$(cat "$VAR/redis/redis.pid")"
    REDIS_NOTE="(started here, pid $OWN_REDIS_PID; stops with the stack)"
fi

# --- ports: one clear line now, rather than one process dying with EADDRINUSE later ----------
port_taken() {
    python - "$1" <<'PY' 2>/dev/null
import socket, sys
with socket.socket() as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(0)
sys.exit(1)
PY
}
PORTS=("web PORT $PORT" "flower FLOWER_PORT $FLOWER_PORT")
[[ -n "$SIMULATE" ]] && PORTS+=("simulator SIMULATOR_PORT $SIMULATOR_PORT")
[[ -n "${METRICS_PORT:-}" ]] && PORTS+=("metrics METRICS_PORT $METRICS_PORT")
for spec in "${PORTS[@]}"; do
    read -r what name number <<<"$spec"
    if port_taken "$number"; then
        say "port $number ($what) is already in use: stop what holds it, or run $name=<free port> make run"
        exit 1
    fi
done

# --- database and metrics --------------------------------------------------------------------
python -m alfred db upgrade
# A fresh folder: every process writes its metrics here, and one serves the sum on METRICS_PORT.
export PROMETHEUS_MULTIPROC_DIR="$VAR/prometheus"
python -c 'import sys; from pathlib import Path; from alfred.metrics import wipe_multiproc_dir; wipe_multiproc_dir(Path(sys.argv[1]))' "$PROMETHEUS_MULTIPROC_DIR"

# --- Flower's credentials: never open. Dev credentials made once, kept in var/ -------------
FLOWER_NOTE="(FLOWER_BASIC_AUTH from your environment)"
if [[ -z "${FLOWER_BASIC_AUTH:-}" ]]; then
    if [[ ! -s "$VAR/flower-dev-auth" ]]; then
        (umask 077; printf 'dev:%s\n' "$(python -c 'import secrets; print(secrets.token_urlsafe(12))')" \
            >"$VAR/flower-dev-auth")
    fi
    FLOWER_BASIC_AUTH="$(cat "$VAR/flower-dev-auth")"
    FLOWER_NOTE="user ${FLOWER_BASIC_AUTH%%:*}, password ${FLOWER_BASIC_AUTH#*:}  (dev credentials, var/flower-dev-auth)"
fi
export FLOWER_BASIC_AUTH

# --- the processes ---------------------------------------------------------------------------
# honcho gives each process its own PORT; pin ours, so every process agrees on the web port.
PROCFILE="$VAR/Procfile.run"
{
    echo "web: PORT=$PORT exec gunicorn -c gunicorn.conf.py wsgi:app --bind 127.0.0.1:$PORT"
    echo "worker: PORT=$PORT exec python -m alfred.worker_app -P threads -c 8 -Q ingest,outbound,alfred --outbox --loglevel INFO"
    echo "beat: PORT=$PORT exec python -m alfred.beat_app --schedule $VAR/celerybeat-schedule --loglevel INFO"
    echo "flower: PORT=$PORT FLOWER_ADDRESS=127.0.0.1 exec python -m alfred.operations.flower"
    if [[ -n "$SIMULATE" ]]; then
        echo "simulator: PORT=$PORT exec python -m alfred simulator --host 127.0.0.1 --port $SIMULATOR_PORT"
    fi
} >"$PROCFILE"

DB="$(python -c 'from alfred import runtime; from alfred.cli.output import safe_url; print(safe_url(runtime.settings().database_url))')"
# Commands run in another terminal (`python -m alfred send`, `smoke`) need the same settings:
# with the simulator they are dev values, written here for `. var/dev.env`. Real credentials
# stay where the developer keeps them (.env), never copied to disk by this script.
if [[ -n "$SIMULATE" ]]; then
    {
        echo "# Written by make run: the settings of the stack it runs (dev tenants, simulator)."
        for name in ALFRED_TENANTS META_APP_SECRET META_VERIFY_TOKEN META_APP_ID GRAPH_API_URL \
            REDIS_URL DATABASE_URL; do
            [[ -n "${!name:-}" ]] && printf 'export %s=%q\n' "$name" "${!name}"
        done
    } >"$VAR/dev.env"
    SETTINGS_STEP="  . var/dev.env                  # this stack's settings: dev tenants, the simulator"
elif [[ -f .env ]]; then
    SETTINGS_STEP="  set -a; . ./.env; set +a       # your settings, as this stack read them"
else
    SETTINGS_STEP="  # with the same ALFRED_TENANTS, META_* and GRAPH_API_URL as this stack"
fi
cat <<EOF

Alfred's WhatsApp bridge, running here (Ctrl-C stops everything):
  web        http://127.0.0.1:$PORT   /webhook  /healthz  /readyz
  metrics    http://127.0.0.1:$METRICS_PORT/metrics   every process's, summed; /live/<process>
  flower     http://127.0.0.1:$FLOWER_PORT   $FLOWER_NOTE
EOF
if [[ -n "$SIMULATE" ]]; then
    cat <<EOF
  simulator  http://127.0.0.1:$SIMULATOR_PORT   the Cloud API stand-in (no Meta credentials set);
             its webhooks go to $SIMULATOR_WEBHOOK_URL, signed with META_APP_SECRET=$META_APP_SECRET
             tenants home and biz; verify token $META_VERIFY_TOKEN
EOF
else
    echo "  Meta       ${GRAPH_API_URL:-https://graph.facebook.com} (real credentials from the environment)"
fi
cat <<EOF
  worker, beat   no port (Celery queues ingest, outbound, alfred; the worker also runs the «alfred-outbox» bridge)
  redis      $REDIS_URL $REDIS_NOTE
  database   $DB
Try, in another terminal:
$SETTINGS_STEP
  .venv/bin/python -m alfred smoke --tenant home --to +14155550100
  .venv/bin/python -m alfred --help

EOF

# Not exec: the trap above must stop a redis-server we started once honcho is done.
honcho start -f "$PROCFILE" -d "$ROOT" -e /dev/null
