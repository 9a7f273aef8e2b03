#!/usr/bin/env bash
# Starts a local Prefect server with its UI (http://127.0.0.1:4200, or PREFECT_SERVER_PORT) in the
# background, unless one already answers, and prints the PREFECT_API_URL line to use. Its database lives
# in PREFECT_HOME (default .castline-config/prefect), or at PREFECT_API_DATABASE_CONNECTION_URL
# (scripts/postgres.sh). A server this script started with another database is not reused: it says so and
# exits 1. `scripts/prefect_server.sh stop` stops the one on that port.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${PREFECT_SERVER_PORT:-4200}"
export PREFECT_HOME="${PREFECT_HOME:-$root/.castline-config/prefect}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
pidfile="$PREFECT_HOME/server-$port.pid"
# The database the server on this port was started with, password left out (the server's API does not tell).
dbfile="$PREFECT_HOME/server-$port.database"
database="$(printf '%s' "${PREFECT_API_DATABASE_CONNECTION_URL:-sqlite+aiosqlite:///$PREFECT_HOME/prefect.db}" |
  sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#')"
url="http://127.0.0.1:$port/api"
# The UI asks /ui-settings where its API is; unset, the server answers with PREFECT_API_URL (often a
# server on 4200 exported earlier in this shell) or with port 4200, not the port it listens on.
export PREFECT_SERVER_API_PORT="$port" PREFECT_API_URL="$url" PREFECT_SERVER_UI_API_URL="$url"
export PREFECT_UI_URL="http://127.0.0.1:$port"
healthy() { "$root/.venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url/health" 2>/dev/null; }

ours() { [ -f "$pidfile" ] && [ -f "$dbfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if [ "${1:-start}" = "stop" ]; then
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null && rm -f "$pidfile" "$dbfile" && echo "stopped"
  exit 0
fi
if healthy; then
  if ! ours; then
    echo "reusing the Prefect server that already answers on $url (not started from $PREFECT_HOME: its database is not known here)" >&2
  elif [ "$(cat "$dbfile")" != "$database" ]; then
    echo "the Prefect server on $url stores its runs in $(cat "$dbfile"), not in $database;" \
      "stop it first (scripts/prefect_server.sh stop) or choose another PREFECT_SERVER_PORT" >&2
    exit 1
  fi
  echo "export PREFECT_API_URL=$url"
  exit 0
fi
mkdir -p "$PREFECT_HOME"
setsid "$root/.venv/bin/prefect" server start --host 127.0.0.1 --port "$port" >"$PREFECT_HOME/server-$port.log" 2>&1 &
echo $! >"$pidfile"
printf '%s\n' "$database" >"$dbfile"
for _ in $(seq 1 120); do
  healthy && { echo "export PREFECT_API_URL=$url"; exit 0; }
  sleep 0.5
done
echo "Prefect server did not answer on $url within 60 s; see $PREFECT_HOME/server-$port.log" >&2
exit 1
