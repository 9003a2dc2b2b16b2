#!/usr/bin/env bash
# Starts and stops a real PostgreSQL server for tests: Debian's package
# (installed when missing), `initdb` into its own directory, a free loopback
# port, trust authentication on loopback only.
#
#   hack/postgres.sh up     [--name NAME] [--owner-pid PID] [--durable]
#   hack/postgres.sh down   [--name NAME]
#   hack/postgres.sh stop   [--name NAME]   # an outage: stop at once (a crash), keep the data
#   hack/postgres.sh start  [--name NAME]   # back after `stop`, same port and data
#
# Each server lives in /tmp/edge-quota-postgres-<uid>/NAME (a place the
# `postgres` user can reach when we run as root), so several run side by side. With --owner-pid it stops by itself when that process exits.
# The last line `up` prints is
#   DATABASE_URL=postgres://postgres@127.0.0.1:<port>/quota
# PostgreSQL refuses to run as root; as root the server runs as `postgres`.
#
# A server runs with fsync and synchronous commits off (fast, and nothing is
# lost while it is shut down cleanly), unless started `--durable`: `stop`
# is an immediate shutdown, a crash, and an outage test must not lose
# commits the server acknowledged (the service rightly took them as
# written). `start` keeps the setting `up` chose.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
cmd="${1:-}"
shift || true
NAME="default"
OWNER_PID=""
DURABLE=""
while (($#)); do
    case "$1" in
        --name) NAME="$2"; shift 2 ;;
        --owner-pid) OWNER_PID="$2"; shift 2 ;;
        --durable) DURABLE=1; shift ;;
        *) echo "postgres.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ "$NAME" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "postgres.sh: --name must match [A-Za-z0-9._-]+" >&2; exit 2; }
BASE="${EDGE_QUOTA_PG_DIR:-${TMPDIR:-/tmp}/edge-quota-postgres-$(id -u)}"
DIR="$BASE/$NAME"

log() { echo "postgres[$NAME]: $*" >&2; }

pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}

ensure_installed() {
    if [[ -n "$(pg_bin)" && -x "$(pg_bin)/initdb" ]]; then
        return
    fi
    if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
        log "error: PostgreSQL is not installed; install Debian's postgresql package (apt-get install postgresql)"
        exit 1
    fi
    log "installing Debian's postgresql package"
    apt_install postgresql >/dev/null
    # The package may start a cluster of its own on 5432; the tests do not use it.
}

# Runs a PostgreSQL command as the right user.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

running() {
    [[ -f "$DIR/port" ]] && as_pg "$(pg_bin)/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

up() {
    ensure_installed
    local bin
    bin="$(pg_bin)"
    if running; then
        log "already running"
        echo "DATABASE_URL=postgres://postgres@127.0.0.1:$(cat "$DIR/port")/quota"
        return
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"
    chmod 755 "$BASE"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$DIR"; fi
    as_pg "$bin/initdb" -D "$DIR/data" -U postgres --auth=trust --encoding=UTF8 --no-sync >"$DIR/initdb.log" 2>&1 || {
        log "initdb failed:"; cat "$DIR/initdb.log" >&2; exit 1
    }
    local port
    port="$(free_port)"
    echo "$port" >"$DIR/port"
    if [[ -n "$DURABLE" ]]; then touch "$DIR/durable"; fi
    start_server
    as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE quota" >/dev/null
    log "ready on 127.0.0.1:$port"
    if [[ -n "$OWNER_PID" ]]; then
        start_reaper "$OWNER_PID" "$HERE/postgres.sh" "$NAME"
    fi
    echo "DATABASE_URL=postgres://postgres@127.0.0.1:$port/quota"
}

start_server() {
    local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    if [[ -f "$DIR/durable" ]]; then
        durability="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
    fi
    as_pg "$(pg_bin)/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
        -o "-p $(cat "$DIR/port") -c listen_addresses=127.0.0.1 -k $DIR $durability" \
        start >/dev/null || { log "start failed:"; tail -20 "$DIR/server.log" >&2; exit 1; }
}

# An outage: the server stops at once (open connections break), data stays.
stop_only() {
    running || { log "error: not running"; exit 1; }
    as_pg "$(pg_bin)/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null
    log "stopped (data kept)"
}

start_again() {
    [[ -f "$DIR/port" ]] || { log "error: no server named $NAME (use up)"; exit 1; }
    running && { log "already running"; return; }
    start_server
    log "running again on 127.0.0.1:$(cat "$DIR/port")"
}

down() {
    if [[ ! -d "$DIR" ]]; then
        log "not running"
        return
    fi
    local bin
    bin="$(pg_bin)"
    [[ -n "$bin" ]] && as_pg "$bin/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
    log "stopped"
}

case "$cmd" in
    up) up ;;
    down) down ;;
    stop) stop_only ;;
    start) start_again ;;
    *) echo "usage: $0 up|down|stop|start [--name NAME] [--owner-pid PID] [--durable]" >&2; exit 2 ;;
esac
