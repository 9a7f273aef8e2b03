#!/usr/bin/env bash
# Starts a local PostgreSQL for the Prefect server — its default SQLite database locks when several
# runs write at once — and prints the PREFECT_API_DATABASE_CONNECTION_URL line to export before
# scripts/prefect_server.sh. Installs Debian's postgresql when missing; safe to run again.
set -euo pipefail
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { as_root su postgres -c "$1"; }

# Stdout carries only the export line, for `eval "$(scripts/postgres.sh)"`: pg_ctlcluster prints notices
# there ("Removed stale pid file." after an unclean shutdown), which made the line garbage. A redirect of
# the block, not `exec 3>&1`: the server started here would inherit a spare descriptor and hold the
# caller's pipe open.
{
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
  fi
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  as_root pg_ctlcluster "$version" main status >/dev/null 2>&1 || as_root pg_ctlcluster "$version" main start
  as_postgres "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'castline'\"" | grep -q 1 \
    || as_postgres "psql -qc \"CREATE ROLE castline LOGIN PASSWORD 'castline'\""
  as_postgres "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'prefect'\"" | grep -q 1 \
    || as_postgres "createdb -O castline prefect"
} >&2
port="$(as_postgres "psql -tAc 'SHOW port'")"
echo "export PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://castline:castline@127.0.0.1:${port}/prefect"
