#!/bin/sh
# First start: a cluster with user and database `fmnist` (password $PGPASSWORD_FMNIST), password
# authentication from the network. Then run PostgreSQL in the foreground.
set -eu
BIN=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s\n' "${PGPASSWORD_FMNIST:?set PGPASSWORD_FMNIST}" > /tmp/pw
  "$BIN/initdb" -D "$PGDATA" -U fmnist --pwfile=/tmp/pw --auth-host=scram-sha-256 --auth-local=trust -E UTF8
  rm -f /tmp/pw
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
  "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start
  "$BIN/createdb" -U fmnist fmnist
  "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp
