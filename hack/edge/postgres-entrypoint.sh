#!/bin/sh
# Entrypoint of the edge node's PostgreSQL image (hack/image.sh
# node-postgres): on first start a cluster owned by POSTGRES_USER with
# POSTGRES_PASSWORD (scram-sha-256) and the database POSTGRES_DB, reachable
# from the pod network; then the server in the foreground.
set -eu
export PATH=@PGBIN@:/bin
data="${PGDATA:-/var/lib/postgresql/data}"
if [ ! -s "$data/PG_VERSION" ]; then
    echo "$POSTGRES_PASSWORD" >/tmp/pwfile
    initdb -D "$data" -U "$POSTGRES_USER" --pwfile=/tmp/pwfile --auth=scram-sha-256 -E UTF8 --locale=C
    rm -f /tmp/pwfile
    echo "host all all 0.0.0.0/0 scram-sha-256" >>"$data/pg_hba.conf"
    echo "CREATE DATABASE \"$POSTGRES_DB\";" | postgres --single -D "$data" -j postgres >/dev/null
fi
exec postgres -D "$data" -c listen_addresses='*' -c unix_socket_directories=/tmp -c jit=off
