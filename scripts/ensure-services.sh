#!/usr/bin/env bash
# Make Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, trust auth for `postgres`,
# database `test`) answer for the test suite. Does nothing when both already answer;
# starts them when installed; installs them with apt-get when running as root.
# Idempotent and quiet on success; says exactly what is missing otherwise.
set -euo pipefail

REDIS_PORT=6379
PG_PORT=5432
HERE="$(cd "$(dirname "$0")/.." && pwd)"

say() { echo "ensure-services: $*" >&2; }

port_open() {
    # A TCP connect with a one-second limit, needing nothing but bash.
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

redis_ok() {
    # An open port is not enough: another program may hold it. Ask for PONG.
    local reply
    reply="$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT; \
        printf 'PING\r\n' >&3; head -c 7 <&3" 2>/dev/null || true)"
    [[ "$reply" == +PONG* ]]
}

pg_query() {
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -w -d "${2:-postgres}" -Atqc "$1" 2>/dev/null
}

pg_ok() {
    command -v psql >/dev/null && [[ "$(pg_query 'select 1')" == 1 ]]
}

wait_for() {
    # Poll a check every half second, up to $2 tries (default 60: 30 s).
    local check="$1" i
    for i in $(seq 1 "${2:-60}"); do
        "$check" && return 0
        sleep 0.5
    done
    return 1
}

apt_install() {
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
        return 1
    fi
    say "installing $* with apt-get (once per machine)"
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "${ALFRED_APT_UPDATED:-}" ]]; then
        apt-get update -qq >/dev/null
        export ALFRED_APT_UPDATED=1
    fi
    apt-get install -y -qq "$@" >/dev/null
}

explain_and_exit() {
    say "$1"
    say "install them and re-run: sudo apt-get install redis-server postgresql"
    say "(macOS: brew install redis postgresql@16 && brew services start redis postgresql@16)"
    say "or point the tests elsewhere: TEST_REDIS_URL=redis://… TEST_PG_URL=postgresql+psycopg://…"
    exit 1
}

ensure_redis() {
    redis_ok && return 0
    if port_open "$REDIS_PORT"; then
        explain_and_exit "something listens on 127.0.0.1:$REDIS_PORT but does not answer PING"
    fi
    command -v redis-server >/dev/null || apt_install redis-server ||
        explain_and_exit "Redis is not running and redis-server is not installed"
    mkdir -p "$HERE/var/redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir "$HERE/var/redis" --logfile "$HERE/var/redis/redis.log" >/dev/null
    wait_for redis_ok || explain_and_exit "redis-server did not start (see var/redis/redis.log)"
}

pg_version() {
    ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1
}

pg_start() {
    local version
    version="$(pg_version)"
    if [[ -z "$version" ]] || [[ ! -d "/etc/postgresql/$version/main" ]]; then
        command -v pg_createcluster >/dev/null || return 1
        version="${version:-$(ls /usr/lib/postgresql | sort -V | tail -n 1)}"
        pg_createcluster "$version" main >/dev/null
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
    wait_for pg_port_open
}

pg_port_open() { port_open "$PG_PORT"; }

pg_allow_trust() {
    # Trust auth for postgres over 127.0.0.1: only on a cluster of this machine, as root.
    local version hba
    version="$(pg_version)"
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    [[ "$(id -u)" == 0 && -n "$version" && -f "$hba" ]] || return 1
    grep -q '^host all postgres 127.0.0.1/32 trust' "$hba" || sed -i \
        '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload >/dev/null 2>&1
    wait_for pg_ok
}

ensure_postgres() {
    if ! pg_port_open; then
        if ! command -v pg_ctlcluster >/dev/null || ! command -v psql >/dev/null; then
            apt_install postgresql ||
                explain_and_exit "PostgreSQL is not running and is not installed"
        fi
        pg_start || explain_and_exit "PostgreSQL is installed but did not start"
    fi
    command -v psql >/dev/null || apt_install postgresql-client ||
        explain_and_exit "psql is missing (package postgresql-client)"
    wait_for pg_ok 10 || pg_allow_trust ||
        explain_and_exit "PostgreSQL on 127.0.0.1:$PG_PORT refuses user postgres without a \
password; add 'host all postgres 127.0.0.1/32 trust' to pg_hba.conf"
    if [[ "$(pg_query "select 1 from pg_database where datname = 'test'")" != 1 ]]; then
        pg_query 'create database test' >/dev/null || true
        [[ "$(pg_query 'select 1' test)" == 1 ]] ||
            explain_and_exit "could not create database test"
    fi
}

ensure_sentinel() {
    # The Sentinel tests start their own sentinels on free ports: only the binary is needed.
    command -v redis-sentinel >/dev/null && return 0
    apt_install redis-sentinel || {
        say "redis-sentinel is not installed (the Sentinel tests need it)"
        say "install it and re-run: sudo apt-get install redis-sentinel (macOS: it comes with redis)"
        exit 1
    }
}

# Tests pointed at other servers need nothing started here.
[[ -z "${TEST_REDIS_URL:-}" ]] && ensure_redis
[[ -z "${TEST_PG_URL:-}" ]] && ensure_postgres
ensure_sentinel
exit 0
