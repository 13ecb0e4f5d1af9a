#!/usr/bin/env bash
# bench/http/longpoll.sh - USERS x DEVICES (default 1,000 x 10 = 10,000) idle long-polls on
# one ferry, per store (SQLite, then PostgreSQL with fsync on): ferry's RSS while they
# wait, the wake latency of the waiters a single-user push concerns (that user's other
# devices) over PUSHES pushes, and one push every device sees (the everyone-wakes figure),
# and 300 slow clients from one more address (half a request each: ferry holds 256, its
# --max-connections-per-ip), all printed by longpoll.py. ferry runs with --max-connections
# CONNS+400 (room for the pushes and the slow clients); the pollers come from many loopback
# addresses.
#   bench/http/longpoll.sh      # builds ferry (make build) unless FERRY_BIN is given
# Settings: USERS=1000, DEVICES=10, PUSHES=200, STORES="sqlite pg", FERRY_BIN=,
# FERRY_ARGS= (more serve flags), PG_BIN=/usr/lib/postgresql/15/bin, KEEP=0.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
USERS=${USERS:-1000}
DEVICES=${DEVICES:-10}
PUSHES=${PUSHES:-200}
STORES=${STORES:-sqlite pg}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
KEEP=${KEEP:-0}
CONNS=$((USERS * DEVICES))
log() { printf '== %s\n' "$*" >&2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-longpoll.XXXXXX")
chmod 755 "$WORK" # the postgres user must reach its cluster folder inside
FPID=
PG_DATA=
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_ferry() {
  [ -n "$FPID" ] && kill -TERM "$FPID" 2>/dev/null && wait "$FPID" 2>/dev/null || true
  FPID=
}
cleanup() {
  stop_ferry
  [ -n "$PG_DATA" ] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

if [ -n "${FERRY_BIN:-}" ]; then FERRY=$FERRY_BIN; else
  make -C "$REPO" build >/dev/null
  FERRY="$REPO/build/ferry"
fi
ulimit -n "$(ulimit -Hn)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SCHEMA="CREATE TABLE bench(id TEXT PRIMARY KEY, owner TEXT, n INTEGER);
CREATE TABLE shared(id TEXT PRIMARY KEY, n INTEGER);"

start_pg() { # a cluster with PostgreSQL's default durability (fsync on); prints its URL
  mkdir -p "$WORK/pg"
  [ "$(id -u)" -ne 0 ] || chown postgres "$WORK/pg"
  as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" --auth=trust -U postgres -E UTF8 --locale=C >/dev/null
  PG_DATA="$WORK/pg/data"
  local port
  port=$(free_port)
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$WORK/pg/log" -w -t 30 \
    -o "-p $port -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  echo "postgres://postgres@127.0.0.1:$port/postgres"
}

run_store() { # run_store sqlite|pg
  local store=$1 port dir db
  port=$(free_port)
  dir="$WORK/data-$store"
  mkdir -p "$dir"
  if [ "$store" = pg ]; then
    start_pg >"$WORK/pg-url" # not in $(...): PG_DATA must reach cleanup
    db=$(cat "$WORK/pg-url")
    psql -q "$db" -c "$SCHEMA"
  else
    db="sqlite:$dir/ferry.db"
    sqlite3 "$dir/ferry.db" "$SCHEMA"
  fi
  # shellcheck disable=SC2086 # FERRY_ARGS: several flags
  "$FERRY" serve --listen "127.0.0.1:$port" --data-dir "$dir" --db "$db" \
    --allowed-tables bench,shared --sync-rule bench=owner:owner --sync-rule shared=shared \
    --rate-limit 0 --max-connections $((CONNS + 400)) ${FERRY_ARGS:-} \
    >"$WORK/ferry-$store.out" 2>"$WORK/ferry-$store.log" &
  FPID=$!
  for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.05; done
  log "$store: ferry pid $FPID on $port ($FERRY), $USERS users x $DEVICES devices;" \
    "load $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%s ' "$store"
  python3 "$HERE/longpoll.py" --url "http://127.0.0.1:$port" \
    --admin-token "$(cat "$dir/admin.token")" --users "$USERS" --devices "$DEVICES" \
    --pushes "$PUSHES" --pid "$FPID"
  stop_ferry
}

for store in $STORES; do run_store "$store"; done
