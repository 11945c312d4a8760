#!/bin/sh
# PostgreSQL from Debian's package: initdb on first start (trust auth, local only), then serve 127.0.0.1.
set -eu
BIN=/usr/lib/postgresql/15/bin
DATA=/var/lib/postgresql/lab/data
mkdir -p "$DATA"
chown -R postgres:postgres /var/lib/postgresql/lab
if [ ! -s "$DATA/PG_VERSION" ]; then
  runuser -u postgres -- "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  echo "CREATE DATABASE edms;" | runuser -u postgres -- "$BIN/postgres" --single -D "$DATA" postgres >/dev/null
fi
exec runuser -u postgres -- "$BIN/postgres" -D "$DATA" -c listen_addresses=127.0.0.1 -p "$LAB_DB_PORT" \
  -c unix_socket_directories=/tmp -c fsync=off -c full_page_writes=off
