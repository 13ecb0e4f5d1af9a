#!/usr/bin/env bash
# bench/push_pull/run.sh - push/pull throughput of ferry (SQLite and PostgreSQL) beside
# pouchdb-server and the raw SQLite limit, in one run on one machine. See bench/README.md.
#
#   bench/push_pull/setup.sh     # once: Debian packages and pouchdb-server (idempotent)
#   bench/push_pull/run.sh       # builds ferry (make), runs everything, prints the table
#
# Settings (environment):
#   ROWS=100000 BATCH=500 CLIENTS=4 PAGE=1000   the workload
#   TARGETS="raw raw-triggers ferry-sqlite sqlite3-json ferry-pg pouchdb"   what to run
#                  (sqlite3-json: the sqlite3 shell prints ferry-sqlite's rows as JSON)
#   BATCH_ID=0     1: ferry pushes carry a batch_id (ferry's idempotent retries)
#   REPORT=1       1: after the pull, ferry targets also push ROWS more rows (other keys)
#                  through the Pinakes report (/api/v1/sync/report, per-operation results),
#                  shown as target NAME-report beside the legacy push
#   RULES=0        1: sales gets an owner column, and ferry-sqlite and ferry-pg run twice,
#                  without a sync rule and with --sync-rule sales=owner:owner (targets
#                  ferry-sqlite-owner, ferry-pg-owner; pushes fill owner with the user id)
#   RULES_FIRST=0  1: with RULES=1, run ferry-pg-owner before ferry-pg (order effects)
#   PG_WARMUP=0    1: an untimed ferry-pg-warmup run first (a fresh cluster's first writes
#                  are several times slower while it creates its WAL segments)
#   THREADS=       ferry --threads (default: ferry's own default)
#   PERF=0         1: perf record ferry during each push phase (needs perf), reports kept
#   KEEP=0         1: keep the temp folder (logs, databases) and print where it is
#   OUT=           a file to copy the RESULT lines and the table to
#   BEFORE_BIN=    another ferry binary (an older build): each ferry target's rows are pulled
#                  again through it (target NAME-before) and after/before ratios printed
#   NODES=         e.g. 1,2,3: also push through that many `ferry serve` on one PostgreSQL
#                  database (a fresh one per count; client i sends to node i mod N), targets
#                  ferry-pg-n1, ferry-pg-n2, ...; the table gives rows/s per node count
#                  and the ratio of the largest count to 1 node. With TARGETS=nodes only
#                  that sweep runs. The sweep's table splits the CPU time between the
#                  nodes, PostgreSQL, the client and the rest of the machine, and shows how
#                  busy the cores were (so a run limited by the CPU shows it).
#   PG_STATS=0     1: with NODES, PostgreSQL loads pg_stat_statements; after each node count
#                  the statements that took the most time, and what its backends waited on
#                  (pg_stat_activity sampled every 20 ms during the push), are printed
# Every run uses fresh temp folders and stops every process it started, even on Ctrl-C.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROWS=${ROWS:-100000}
BATCH=${BATCH:-500}
CLIENTS=${CLIENTS:-4}
PAGE=${PAGE:-1000}
TARGETS=${TARGETS:-"raw raw-triggers ferry-sqlite sqlite3-json ferry-pg pouchdb"}
BATCH_ID=${BATCH_ID:-0}
REPORT=${REPORT:-1}
PG_WARMUP=${PG_WARMUP:-0}
TOTAL=$((ROWS * (1 + REPORT))) # rows in sales after a ferry target
RULES=${RULES:-0}
RULES_FIRST=${RULES_FIRST:-0}
SALES_SQL="CREATE TABLE sales(id TEXT PRIMARY KEY, customer_id TEXT, total INTEGER$([ "$RULES" = 1 ] && echo ", owner TEXT" || true))"
OWNER_RULE=(--sync-rule sales=owner:owner)
THREADS=${THREADS:-}
PERF=${PERF:-0}
KEEP=${KEEP:-0}
OUT=${OUT:-}
BEFORE_BIN=${BEFORE_BIN:-}
NODES=${NODES:-}
PG_STATS=${PG_STATS:-0}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
FERRY="$REPO/build/ferry"
POUCH="$HERE/node_modules/.bin/pouchdb-server"

log() { printf '== %s\n' "$*" >&2; }
fail() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
want() { [[ " $TARGETS " == *" $1 "* ]]; }

# --- temp folder and cleanup ----------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
chmod 755 "$WORK" # the postgres user must reach its cluster folder inside
RESULTS="$WORK/results.txt"
: >"$RESULTS"
PIDS=()        # processes we started (ferry, pouchdb-server), stopped at exit
PG_DATA=""     # a running cluster, stopped at exit

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_pid() { # stop_pid PID: SIGTERM, wait up to 15 s, then SIGKILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "process $pid did not stop on SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ -n "$PG_DATA" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1
  fi
  if [ "$KEEP" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build ----------------------------------------------------------------------------

[ -x "$POUCH" ] || ! want pouchdb || fail "pouchdb-server is not installed: run $HERE/setup.sh"
sanitized() { readelf -d "$1" 2>/dev/null | grep -Eq 'lib(asan|ubsan|tsan)'; }
if [ -n "${FERRY_BIN:-}" ]; then
  FERRY=$FERRY_BIN
else
  log "building ferry (make)"
  make -C "$REPO" >"$WORK/make.log" 2>&1 || { tail -30 "$WORK/make.log" >&2; fail "make failed"; }
  if sanitized "$FERRY"; then
    # `make` reuses build/CMakeCache.txt; when that has FERRY_SANITIZE=ON (left by a
    # sanitizer configure of build/), build/ferry is an ASan/UBSan binary, several
    # times slower. Build the same optimised configuration with sanitizers off instead.
    log "build/ferry links a sanitizer runtime (FERRY_SANITIZE=ON in build/CMakeCache.txt);" \
      "building an optimised copy in $HERE/.build"
    { cmake -S "$REPO" -B "$HERE/.build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_TESTS=OFF \
      -DFERRY_SANITIZE=OFF && cmake --build "$HERE/.build" -j "$(nproc)"; } >>"$WORK/make.log" 2>&1 ||
      { tail -30 "$WORK/make.log" >&2; fail "build of $HERE/.build failed"; }
    FERRY="$HERE/.build/ferry"
  fi
fi
sanitized "$FERRY" && log "WARNING: $FERRY is a sanitizer build; its numbers mean little"
mkdir -p "$WORK/bin"
CFLAGS="-O2 -Wall -Wextra"
# shellcheck disable=SC2046,SC2086
gcc $CFLAGS -o "$WORK/bin/client" "$HERE/client.c" $(pkg-config --cflags --libs libcurl jansson) -lpthread
# shellcheck disable=SC2046,SC2086
gcc $CFLAGS -o "$WORK/bin/raw_sqlite" "$HERE/raw_sqlite.c" $(pkg-config --cflags --libs sqlite3)
CLIENT="$WORK/bin/client"

record() { # record TARGET: keeps the RESULT lines of stdin, tagged with the target
  local line
  while IFS= read -r line; do
    case $line in
    RESULT*) echo "target=$1 ${line#RESULT }" >>"$RESULTS"; echo "   $line" >&2 ;;
    *) echo "$line" >&2 ;;
    esac
  done
}

wait_http() { # wait_http URL LOGFILE PID
  local i
  for i in $(seq 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { cat "$2" >&2; fail "server exited while starting"; }
    sleep 0.1
  done
  cat "$2" >&2
  fail "server at $1 did not answer in 30 s"
}

# Summary of ferry's own per-request durationMs for one path (from its JSON log).
server_times() { # server_times LOG PATH (a path never asked prints nothing)
  { grep -F "\"path\":\"$2\"" "$1" || true; } | sed -n 's/.*"durationMs":\([0-9.]*\).*/\1/p' | sort -n |
    awk -v p="$2" '
      function at(q,   i) { i = int(NR * q) + 1; if (i > NR) i = NR; return v[i] }
      { v[NR] = $1; s += $1 }
      END { if (NR) printf "   ferry log %s: n=%d server-side p50=%.2f ms p95=%.2f ms max=%.2f ms sum=%.2f s\n", p, NR, at(0.5), at(0.95), v[NR], s / 1000 }'
  grep -F "\"path\":\"$2\"" "$1" | grep -v '"status":200' | head -5 | sed 's/^/   ferry error: /' || true
}

perf_start() { # perf_start PID NAME -> sets PERF_PID
  PERF_PID=""
  [ "$PERF" = 1 ] || return 0
  command -v perf >/dev/null || { log "PERF=1 but perf is not installed (apt-get install linux-perf)"; return 0; }
  local scope=(-p "$1")
  # on PostgreSQL the backends do much of the work: record the whole machine then
  [ "$2" = ferry-pg ] && scope=(-a)
  perf record -F 1999 --call-graph dwarf,16384 "${scope[@]}" -o "$WORK/perf-$2.data" >/dev/null 2>&1 &
  PERF_PID=$!
  sleep 0.5
}

perf_stop() { # perf_stop NAME
  [ -n "${PERF_PID:-}" ] || return 0
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  perf report -i "$WORK/perf-$1.data" --stdio --no-children --percent-limit 0.7 -g none \
    --sort comm,dso,symbol >"$WORK/perf-$1.txt" 2>/dev/null || true
  log "perf profile of ferry during $1 push (self time, top entries); full: $WORK/perf-$1.txt"
  grep -E '^ +[0-9]' "$WORK/perf-$1.txt" | head -25 >&2 || true
  KEEP=1
}

# --- ferry ----------------------------------------------------------------------------

# run_ferry NAME DB_URL [FLAG...]: starts ferry (with the extra serve flags) on a fresh
# data dir (the sales table must already exist in the database), pushes, pulls, checks
# the row count, stops ferry.
# start_ferry BIN NAME DIR LOG: starts BIN serve on DIR/data (with dbarg and extra of the
# caller) and waits until it answers; sets FPID and FPORT.
start_ferry() {
  local bin=$1 name=$2 dir=$3 logf=$4 i port=""
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/data" "${dbarg[@]}" "${extra[@]}" \
    --allowed-tables sales --rate-limit 0 >"$logf" 2>&1 &
  FPID=$!
  PIDS+=("$FPID")
  for i in $(seq 300); do
    port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$logf" | head -1)
    [ -n "$port" ] && break
    kill -0 "$FPID" 2>/dev/null || { cat "$logf" >&2; fail "ferry ($name) exited while starting"; }
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$logf" >&2; fail "ferry ($name) did not start"; }
  wait_http "http://127.0.0.1:$port/health" "$logf" "$FPID"
  FPORT=$port
}

# pull_before NAME DIR TOKEN: with BEFORE_BIN, pulls the same rows again through that
# binary on the same database (target NAME-before), for the after/before ratio. By then
# the table also holds the REPORT rows (TOTAL in all); the ratio compares rows/s.
pull_before() {
  [ -n "$BEFORE_BIN" ] || return 0
  local name=$1 dir=$2 token=$3 pids
  start_ferry "$BEFORE_BIN" "$name-before" "$dir" "$dir/ferry-before.log"
  pids=$FPID
  [ -n "$PG_DATA" ] && [[ "$name" == ferry-pg* ]] && pids+=",$(head -1 "$PG_DATA/postmaster.pid")"
  log "$name-before: pull from cursor 0 through $BEFORE_BIN, pages of $PAGE"
  "$CLIENT" pull --kind ferry --url "http://127.0.0.1:$FPORT/sync/pull" --token "$token" \
    --page "$PAGE" --expect "$TOTAL" --pids "$pids" --label "$name-before" |
    record "$name-before" || log "$name-before pull had errors (see above)"
  stop_pid "$FPID"
}

run_ferry() {
  local name=$1 db=$2 dir="$WORK/$1" pids dbarg=() extra=()
  shift 2
  mkdir -p "$dir"
  [ -n "$db" ] && dbarg=(--db "$db")
  [ -n "$THREADS" ] && extra=(--threads "$THREADS")
  extra+=("$@")
  start_ferry "$FERRY" "$name" "$dir" "$dir/ferry.log"
  local fpid=$FPID port=$FPORT i
  # one device token per client, as real tills would have
  local tokens="" t
  for i in $(seq "$CLIENTS"); do
    t=$("$FERRY" token create --role device --name "bench-$i" --user bench --device "bench-$i" \
      --data-dir "$dir/data" "${dbarg[@]}" 2>"$dir/token.err") || { cat "$dir/token.err" >&2; fail "ferry token create failed"; }
    tokens+="${tokens:+,}$t"
  done
  pids=$fpid
  [ -n "$PG_DATA" ] && [[ "$name" == ferry-pg* ]] && pids+=",$(head -1 "$PG_DATA/postmaster.pid")"
  local bid=()
  [ "$BATCH_ID" = 1 ] && bid=(--batch-id)
  log "$name: push $ROWS rows, batches of $BATCH, $CLIENTS clients (ferry pid $fpid, port $port)"
  perf_start "$fpid" "$name"
  "$CLIENT" push --kind ferry --url "http://127.0.0.1:$port/sync/push" --token "$tokens" \
    --rows "$ROWS" --batch "$BATCH" --clients "$CLIENTS" --pids "$pids" --label "$name" \
    "${bid[@]}" | record "$name" || log "$name push had errors (see above)"
  perf_stop "$name"
  log "$name: pull from cursor 0, pages of $PAGE"
  "$CLIENT" pull --kind ferry --url "http://127.0.0.1:$port/sync/pull" --token "${tokens%%,*}" \
    --page "$PAGE" --expect "$ROWS" --pids "$pids" --label "$name" |
    record "$name" || log "$name pull had errors (see above)"
  if [ "$REPORT" = 1 ]; then
    log "$name: Pinakes report of $ROWS more rows, batches of $BATCH, $CLIENTS clients"
    "$CLIENT" push --kind report --url "http://127.0.0.1:$port/api/v1/sync/report" \
      --token "$tokens" --rows "$ROWS" --batch "$BATCH" --clients "$CLIENTS" --pids "$pids" \
      --label "$name-report" "${bid[@]}" | record "$name-report" || log "$name report had errors (see above)"
  fi
  server_times "$dir/ferry.log" /sync/push >&2
  server_times "$dir/ferry.log" /sync/pull >&2
  server_times "$dir/ferry.log" /api/v1/sync/report >&2
  stop_pid "$fpid"
  grep -E '"level":"(error|warn)"' "$dir/ferry.log" | head -5 | sed 's/^/   ferry log: /' >&2 || true
  pull_before "$name" "$dir" "${tokens%%,*}"
}

# pg_stats_start DB_URL FILE: resets pg_stat_statements and samples, every 20 ms, what
# the database's backends are doing (wait event, or CPU when none) into FILE; the
# sampler runs in the background ($!).
pg_stats_start() {
  psql -X -q -At "$1" -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' \
    -c 'SELECT pg_stat_statements_reset()' >/dev/null
  printf '%s\n' "SELECT COALESCE(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active' \\watch 0.02" |
    psql -X -q -At "$1" >"$2" 2>/dev/null &
}

# pg_stats_report DB_URL SAMPLER FILE: stops the sampler and prints the wait events
# and the statements that took the most time.
pg_stats_report() {
  kill "$2" 2>/dev/null || true
  wait "$2" 2>/dev/null || true
  echo "   what PostgreSQL's active backends did (samples every 20 ms):"
  grep -v '^$' "$3" | sort | uniq -c | sort -rn | head -8 | sed 's/^/     /'
  echo "   statements by total time (ms total, calls, ms mean, rows):"
  psql -X -q -At -F ' | ' "$1" -c "SELECT round(total_exec_time)::bigint, calls,
      round(mean_exec_time::numeric, 3), rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110)
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY total_exec_time DESC LIMIT 10" | sed 's/^/     /'
}

# run_nodes N DB_URL: N ferry nodes on one database (the sales table exists), CLIENTS
# device tokens, one push of ROWS rows spread over the nodes, the row count checked.
run_nodes() {
  local n=$1 db=$2 name="ferry-pg-n$1" urls="" pids="" i k port fpid dir extra=()
  [ -n "$THREADS" ] && extra=(--threads "$THREADS")
  for k in $(seq "$n"); do
    dir="$WORK/$name/node$k"
    mkdir -p "$dir"
    "$FERRY" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --db "$db" "${extra[@]}" \
      --allowed-tables sales --rate-limit 0 >"$dir/ferry.log" 2>&1 &
    fpid=$!
    PIDS+=("$fpid")
    port=""
    for i in $(seq 300); do
      port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$dir/ferry.log" | head -1)
      [ -n "$port" ] && break
      kill -0 "$fpid" 2>/dev/null || { cat "$dir/ferry.log" >&2; fail "ferry ($name node $k) exited while starting"; }
      sleep 0.1
    done
    [ -n "$port" ] || fail "ferry ($name node $k) did not start"
    wait_http "http://127.0.0.1:$port/health" "$dir/ferry.log" "$fpid"
    urls+="${urls:+,}http://127.0.0.1:$port/sync/push"
    pids+="${pids:+,}$fpid"
  done
  local tokens="" t
  for i in $(seq "$CLIENTS"); do
    t=$("$FERRY" token create --role device --name "bench-$i" --user bench --device "bench-$i" \
      --data-dir "$WORK/$name/node1/data" --db "$db" 2>"$WORK/$name/token.err") ||
      { cat "$WORK/$name/token.err" >&2; fail "ferry token create failed"; }
    tokens+="${tokens:+,}$t"
  done
  pids+=",$(head -1 "$PG_DATA/postmaster.pid")"
  local bid=()
  [ "$BATCH_ID" = 1 ] && bid=(--batch-id)
  log "$name: push $ROWS rows, batches of $BATCH, $CLIENTS clients over $n node(s)"
  local sampler=""
  if [ "$PG_STATS" = 1 ]; then
    pg_stats_start "$db" "$WORK/$name/waits.txt"
    sampler=$!
  fi
  "$CLIENT" push --kind ferry --url "$urls" --token "$tokens" --rows "$ROWS" --batch "$BATCH" \
    --clients "$CLIENTS" --pids "$pids" --label "$name" "${bid[@]}" | record "$name" ||
    log "$name push had errors (see above)"
  [ -n "$sampler" ] && pg_stats_report "$db" "$sampler" "$WORK/$name/waits.txt" >&2
  for fpid in ${pids//,/ }; do
    [ "$fpid" = "$(head -1 "$PG_DATA/postmaster.pid")" ] || stop_pid "$fpid"
  done
}

# --- the targets ----------------------------------------------------------------------

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
  "$(uname -sr); work dir on $(df -PT "$WORK" | awk 'NR==2 {print $2 " (" $1 ")"}')" >&2
echo "ferry: $FERRY ($("$FERRY" --version 2>&1 | head -1); $(grep -E '^CMAKE_BUILD_TYPE' "$(dirname "$FERRY")/CMakeCache.txt" 2>/dev/null | cut -d= -f2 || echo '?') build; sanitizers: $(sanitized "$FERRY" && echo ON || echo off))" >&2
echo "workload: $ROWS rows, push batches of $BATCH from $CLIENTS clients, pull pages of $PAGE" >&2

if want raw; then
  log "raw: $ROWS inserts through libsqlite3, WAL, synchronous=FULL, one transaction per $BATCH"
  "$WORK/bin/raw_sqlite" "$WORK/raw.db" --rows "$ROWS" --batch "$BATCH" --label raw | record raw
fi

if want ferry-sqlite || want raw-triggers; then
  mkdir -p "$WORK/ferry-sqlite/data"
  sqlite3 "$WORK/ferry-sqlite/data/ferry.db" "$SALES_SQL;"
  run_ferry ferry-sqlite ""
  sqlite3 "$WORK/ferry-sqlite/data/ferry.db" 'SELECT count(*) FROM sales' |
    awk -v n="$TOTAL" '{print "   ferry-sqlite: " $1 " rows in sales" ($1 == n ? "" : " (EXPECTED " n ")")}' >&2
fi

if want sqlite3-json && want ferry-sqlite; then
  # What ferry's pull is measured against: the sqlite3 shell reading the same rows and
  # printing them as JSON, with no HTTP at all (best of three runs).
  db="$WORK/ferry-sqlite/data/ferry.db"
  log "sqlite3-json: sqlite3 -json over the $ROWS rows of ferry-sqlite's sales"
  best=""
  for i in 1 2 3; do
    t0=$(date +%s.%N)
    sqlite3 -json "$db" "SELECT id, customer_id, total FROM sales ORDER BY rowid LIMIT $ROWS" >"$WORK/sqlite3.json"
    t1=$(date +%s.%N)
    best=$(awk -v a="$t0" -v b="$t1" -v best="$best" 'BEGIN { d = b - a; print (best == "" || d < best) ? d : best }')
  done
  n=$(grep -c '"id":' "$WORK/sqlite3.json" || true)
  echo "RESULT label=sqlite3-json phase=pull ops=1 rows=$n wall_s=$best ops_s=0 rows_s=$(awk -v n="$n" -v t="$best" 'BEGIN { printf "%.1f", n / t }') errors=$([ "$n" = "$ROWS" ] && echo 0 || echo 1)" |
    record sqlite3-json
fi

if want ferry-sqlite && [ "$RULES" = 1 ]; then
  mkdir -p "$WORK/ferry-sqlite-owner/data"
  sqlite3 "$WORK/ferry-sqlite-owner/data/ferry.db" "$SALES_SQL;"
  run_ferry ferry-sqlite-owner "" "${OWNER_RULE[@]}"
  sqlite3 "$WORK/ferry-sqlite-owner/data/ferry.db" "SELECT count(*) FROM sales WHERE owner = 'bench'" |
    awk -v n="$TOTAL" '{print "   ferry-sqlite-owner: " $1 " rows owned by bench" ($1 == n ? "" : " (EXPECTED " n ")")}' >&2
fi

if want raw-triggers; then
  # Diagnostic: the raw inserts into a copy of ferry's schema, capture triggers included,
  # to separate the triggers' cost from the rest of ferry's work.
  log "raw-triggers: the raw inserts into ferry's schema (with its capture triggers)"
  sqlite3 "$WORK/ferry-sqlite/data/ferry.db" .schema | grep -v '^CREATE TABLE sqlite_' |
    sqlite3 "$WORK/raw-triggers.db"
  sqlite3 "$WORK/raw-triggers.db" "INSERT INTO ferry_writer(id, device_id, horizon) VALUES (1, NULL, 0)"
  "$WORK/bin/raw_sqlite" "$WORK/raw-triggers.db" --no-create --rows "$ROWS" --batch "$BATCH" \
    --label raw-triggers | record raw-triggers
fi

if want ferry-pg || { [ -n "$NODES" ] && want nodes; }; then
  [ -x "$PG_BIN/initdb" ] || fail "PostgreSQL server binaries not found in $PG_BIN (run setup.sh)"
  pgroot="$WORK/pg"
  mkdir -p "$pgroot/sock"
  [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$pgroot"
  pgport=$("$CLIENT" freeport)
  log "ferry-pg: temporary PostgreSQL cluster on port $pgport (fsync and synchronous_commit on)"
  (cd "$pgroot" && as_pg "$PG_BIN/initdb" -D "$pgroot/data" --auth=trust -U postgres -N -E UTF8 \
    --locale=C >"$WORK/initdb.log" 2>&1) || { cat "$WORK/initdb.log" >&2; fail "initdb failed"; }
  PG_DATA="$pgroot/data"
  (cd "$pgroot" && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$pgroot/log" -w -t 60 \
    -o "-p $pgport -k $pgroot/sock -c listen_addresses=127.0.0.1 -c max_connections=100$([ "$PG_STATS" = 1 ] && echo " -c shared_preload_libraries=pg_stat_statements,auto_explain -c pg_stat_statements.track=all -c auto_explain.log_min_duration=40" || true)" start \
    >/dev/null) || { cat "$pgroot/log" >&2; fail "pg_ctl start failed"; }
  psql_() { psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pgport" -U postgres "$@"; }
  psql_ -d postgres -c "CREATE DATABASE ferry_bench"
  psql_ -d ferry_bench -c "$SALES_SQL"
  echo "   postgres: $(psql_ -d postgres -c "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','wal_sync_method','full_page_writes','shared_buffers','server_version')")" >&2
  pg_plain() {
    run_ferry ferry-pg "postgres://postgres@127.0.0.1:$pgport/ferry_bench"
    n=$(psql_ -d ferry_bench -c 'SELECT count(*) FROM sales')
    echo "   ferry-pg: $n rows in sales$([ "$n" = "$TOTAL" ] || echo " (EXPECTED $TOTAL)")" >&2
  }
  pg_owner() {
    psql_ -d postgres -c "CREATE DATABASE ferry_bench_owner"
    psql_ -d ferry_bench_owner -c "$SALES_SQL"
    run_ferry ferry-pg-owner "postgres://postgres@127.0.0.1:$pgport/ferry_bench_owner" "${OWNER_RULE[@]}"
    n=$(psql_ -d ferry_bench_owner -c "SELECT count(*) FROM sales WHERE owner = 'bench'")
    echo "   ferry-pg-owner: $n rows owned by bench$([ "$n" = "$TOTAL" ] || echo " (EXPECTED $TOTAL)")" >&2
  }
  # A fresh cluster's first run is several times slower (it creates its WAL segments):
  # with RULES=1 or PG_WARMUP=1 an untimed warm-up run (target ferry-pg-warmup, left out
  # of the ratios) goes first, so the measured runs start alike. RULES_FIRST=1 runs the owner
  # variant before the plain one, to check the order does not matter.
  if [ "$RULES" = 1 ] || [ "$PG_WARMUP" = 1 ]; then
    psql_ -d postgres -c "CREATE DATABASE ferry_bench_warmup"
    psql_ -d ferry_bench_warmup -c "$SALES_SQL"
    run_ferry ferry-pg-warmup "postgres://postgres@127.0.0.1:$pgport/ferry_bench_warmup"
  fi
  if [ "$RULES" = 1 ] && [ "$RULES_FIRST" = 1 ]; then pg_owner; fi
  want ferry-pg && pg_plain
  if [ "$RULES" = 1 ] && [ "$RULES_FIRST" != 1 ]; then pg_owner; fi
  if [ -n "$NODES" ]; then
    # an untimed warm-up first: a fresh cluster's first run creates its WAL segments
    psql_ -d postgres -c "CREATE DATABASE ferry_bench_nwarm"
    psql_ -d ferry_bench_nwarm -c "$SALES_SQL"
    run_nodes 1 "postgres://postgres@127.0.0.1:$pgport/ferry_bench_nwarm" 2>/dev/null
    sed -i '/target=ferry-pg-n1 /d' "$RESULTS"
    for n in ${NODES//,/ }; do
      psql_ -d postgres -c "CREATE DATABASE ferry_bench_n$n"
      psql_ -d "ferry_bench_n$n" -c "$SALES_SQL"
      run_nodes "$n" "postgres://postgres@127.0.0.1:$pgport/ferry_bench_n$n"
      c=$(psql_ -d "ferry_bench_n$n" -c 'SELECT count(*) FROM sales')
      echo "   ferry-pg-n$n: $c rows in sales$([ "$c" = "$ROWS" ] || echo " (EXPECTED $ROWS)")" >&2
    done
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
  PG_DATA=""
fi

if want pouchdb; then
  pdir="$WORK/pouchdb"
  mkdir -p "$pdir"
  pport=$("$CLIENT" freeport)
  log "pouchdb-server $(node -p "require('$HERE/node_modules/pouchdb-server/package.json').version") on port $pport (LevelDB, node $(node --version))"
  (cd "$pdir" && exec "$POUCH" --port "$pport" --host 127.0.0.1 --dir "$pdir" \
    --config "$pdir/config.json" --no-stdout-logs >"$pdir/stdout.log" 2>&1) &
  ppid=$!
  PIDS+=("$ppid")
  wait_http "http://127.0.0.1:$pport/" "$pdir/stdout.log" "$ppid"
  curl -fsS -X PUT "http://127.0.0.1:$pport/sales" >/dev/null
  # the pid that runs node (the subshell execs it)
  log "pouchdb: push $ROWS docs with _bulk_docs, batches of $BATCH, $CLIENTS clients"
  "$CLIENT" push --kind pouch --url "http://127.0.0.1:$pport/sales/_bulk_docs" --rows "$ROWS" \
    --batch "$BATCH" --clients "$CLIENTS" --pids "$ppid" --label pouchdb |
    record pouchdb || log "pouchdb push had errors (see above)"
  log "pouchdb: pull _changes?include_docs=true from since=0, pages of $PAGE"
  "$CLIENT" pull --kind pouch --url "http://127.0.0.1:$pport/sales/_changes" --page "$PAGE" \
    --expect "$ROWS" --pids "$ppid" --label pouchdb | record pouchdb ||
    log "pouchdb pull had errors (see above)"
  stop_pid "$ppid"
fi

# --- the table ------------------------------------------------------------------------

report() {
  echo
  echo "push/pull: $ROWS rows of sales(id, customer_id, total); push in batches of $BATCH from $CLIENTS concurrent clients; pull from the start in pages of $PAGE (one client)"
  echo "machine: $(nproc) cores (client and servers share them); ops = HTTP requests (raw: transactions)"
  echo
  awk '
    function kv(line, key,   i, n, a, b) {
      n = split(line, a, " ")
      for (i = 1; i <= n; i++) { split(a[i], b, "="); if (b[1] == key) return b[2] }
      return ""
    }
    BEGIN {
      printf "%-18s %-5s %5s %7s %8s %8s %10s %8s %8s %8s %9s %9s %7s %7s %4s\n", "target", "phase", "ops", "rows", "wall_s", "ops/s", "rows/s", "p50_ms", "p95_ms", "max_ms", "srv_cpu_s", "db_cpu_s", "client%", "other_s", "err"
    }
    {
      db = kv($0, "cpu_1_s"); srv = kv($0, "cpu_0_s")
      if ($0 ~ /target=raw/) srv = kv($0, "client_cpu_s")
      if (kv($0, "target") ~ /^ferry-pg-n[0-9]+$/) { # the nodes, then PostgreSQL
        n = substr(kv($0, "target"), 11) + 0
        srv = 0
        for (i = 0; i < n; i++) srv += kv($0, "cpu_" i "_s")
        db = kv($0, "cpu_" n "_s")
      }
      oth = kv($0, "other_cpu_s")
      printf "%-18s %-5s %5s %7s %8s %8s %10s %8s %8s %8s %9s %9s %7s %7s %4s\n", kv($0, "target"), kv($0, "phase"), kv($0, "ops"), kv($0, "rows"), kv($0, "wall_s"), kv($0, "ops_s"), kv($0, "rows_s"), kv($0, "p50_ms"), kv($0, "p95_ms"), kv($0, "max_ms"), srv == "" ? "-" : srv, db == "" ? "-" : db, ($0 ~ /target=raw/) ? "-" : kv($0, "client_cpu_pct"), oth == "" ? "-" : oth, kv($0, "errors")
    }' "$RESULTS"
  echo
  echo "srv_cpu_s: CPU seconds of the server process tree during the phase (ferry, or node for pouchdb; raw: the process itself);"
  echo "db_cpu_s: PostgreSQL's (postmaster and backends); client%: the load client's CPU as a share of one core;"
  echo "other_s: CPU seconds the rest of the machine used meanwhile (anything above ~0.1 s means the run was disturbed)."
  echo
  awk -v cores="$(nproc)" '
    function kv(line, key,   i, n, a, b) {
      n = split(line, a, " ")
      for (i = 1; i <= n; i++) { split(a[i], b, "="); if (b[1] == key) return b[2] }
      return ""
    }
    { r[kv($0, "target") "/" kv($0, "phase")] = kv($0, "rows_s") + 0; e[kv($0, "target") "/" kv($0, "phase")] = kv($0, "errors") + 0 }
    # the node sweep: the CPU seconds of the nodes (cpu_0 .. cpu_{n-1}), of PostgreSQL
    # (cpu_n), of the client and of everything else, and how busy the cores were
    kv($0, "target") ~ /^ferry-pg-n[0-9]+$/ && kv($0, "phase") == "push" {
      n = substr(kv($0, "target"), 11) + 0
      f = 0
      for (i = 0; i < n; i++) f += kv($0, "cpu_" i "_s")
      wall = kv($0, "wall_s") + 0
      split_line[n] = sprintf("%8.2f %9.2f %9.2f %9.2f %9.2f %8.0f%%", wall, f, kv($0, "cpu_" n "_s"), kv($0, "client_cpu_s"), kv($0, "other_cpu_s"), wall > 0 ? 100 * kv($0, "machine_busy_s") / wall / cores : 0)
      own = f + kv($0, "cpu_" n "_s") + kv($0, "client_cpu_s")
      per_row[n] = sprintf("%9.0f %9.0f %10.0f", 1e6 * f / kv($0, "rows"), 1e6 * kv($0, "cpu_" n "_s") / kv($0, "rows"), own > 0 ? kv($0, "rows") * cores / own : 0)
    }
    function ratio(label, a, b, goal, cmp,   v, verdict) {
      if (!(a in r) || !(b in r) || r[b] == 0) { printf "%-46s n/a\n", label; return }
      v = r[a] / r[b]
      verdict = ""
      if (goal != "") verdict = (cmp == "le" ? (v <= goal ? "  (goal <= " goal ": met)" : "  (goal <= " goal ": NOT met)") : (v >= goal ? "  (goal >= " goal ": met)" : "  (goal >= " goal ": NOT met)"))
      printf "%-46s %8.2fx%s\n", label, v, verdict
    }
    END {
      print "ratios (rows/s):"
      ratio("raw sqlite / ferry-sqlite push", "raw/push", "ferry-sqlite/push", 3, "le")
      ratio("raw sqlite+triggers / ferry-sqlite push", "raw-triggers/push", "ferry-sqlite/push", "", "")
      ratio("raw sqlite / raw sqlite+triggers", "raw/push", "raw-triggers/push", "", "")
      ratio("ferry-sqlite push / pouchdb-server push", "ferry-sqlite/push", "pouchdb/push", 20, "ge")
      ratio("ferry-pg push / pouchdb-server push", "ferry-pg/push", "pouchdb/push", 20, "ge")
      ratio("ferry-sqlite pull / pouchdb-server pull", "ferry-sqlite/pull", "pouchdb/pull", 20, "ge")
      ratio("ferry-pg pull / pouchdb-server pull", "ferry-pg/pull", "pouchdb/pull", 20, "ge")
      ratio("ferry-sqlite push / ferry-pg push", "ferry-sqlite/push", "ferry-pg/push", "", "")
      ratio("report / legacy push, ferry-sqlite", "ferry-sqlite-report/push", "ferry-sqlite/push", "", "")
      ratio("report / legacy push, ferry-pg", "ferry-pg-report/push", "ferry-pg/push", "", "")
      ratio("ferry-sqlite pull / sqlite3 -json", "ferry-sqlite/pull", "sqlite3-json/pull", 0.25, "ge")
      ratio("ferry-sqlite pull after / before", "ferry-sqlite/pull", "ferry-sqlite-before/pull", 2, "ge")
      ratio("ferry-pg pull after / before", "ferry-pg/pull", "ferry-pg-before/pull", 2, "ge")
      ratio("owner rule / no rule, ferry-sqlite push", "ferry-sqlite-owner/push", "ferry-sqlite/push", 0.9, "ge")
      ratio("owner rule / no rule, ferry-sqlite pull", "ferry-sqlite-owner/pull", "ferry-sqlite/pull", 0.9, "ge")
      ratio("owner rule / no rule, ferry-pg push", "ferry-pg-owner/push", "ferry-pg/push", 0.9, "ge")
      ratio("owner rule / no rule, ferry-pg pull", "ferry-pg-owner/pull", "ferry-pg/pull", 0.9, "ge")
      nmax = 0
      for (k in r) if (k ~ /^ferry-pg-n[0-9]+\/push$/) {
        n = substr(k, 11) + 0
        if (n > nmax) nmax = n
      }
      if (nmax) {
        print ""
        print "push rows/s by node count (ferry on one PostgreSQL):"
        printf "  %-8s %10s %8s %9s %9s %9s %9s %9s %9s %9s %10s\n", "nodes", "rows/s", "wall_s", "ferry_s", "pg_s", "client_s", "other_s", "cores", "ferry_us", "pg_us", "cpu_bound"
        for (n = 1; n <= nmax; n++) if (("ferry-pg-n" n "/push") in r) printf "  %-8d %10.0f %s %s\n", n, r["ferry-pg-n" n "/push"], split_line[n], per_row[n]
        print "  (CPU seconds during the push: ferry_s all nodes, pg_s PostgreSQL, other_s the rest of the machine;"
        print "   cores: machine CPU busy / wall / " cores " cores, near 100% means the CPU is the limit;"
        print "   ferry_us, pg_us: CPU microseconds per row pushed; cpu_bound: rows/s if ferry, PostgreSQL and the"
        print "   client had the " cores " cores to themselves and used them fully, rows x cores / their CPU seconds)"
        if (nmax > 1) ratio(nmax " nodes / 1 node, ferry-pg push", "ferry-pg-n" nmax "/push", "ferry-pg-n1/push", 1.5, "ge")
      }
      print ""
      print "pull rows/s:"
      split("ferry-sqlite ferry-sqlite-before sqlite3-json ferry-sqlite-owner ferry-pg ferry-pg-before ferry-pg-owner pouchdb", t, " ")
      for (i = 1; i <= 8; i++) if ((t[i] "/pull") in r) printf "  %-14s %10.0f rows/s\n", t[i], r[t[i] "/pull"]
      bad = 0
      for (k in e) if (e[k]) { bad = 1; printf "ERRORS in %s: %d (see the client messages above)\n", k, e[k] }
    }' "$RESULTS"
}

report | tee "$WORK/table.txt"
if [ -n "$OUT" ]; then
  { cat "$WORK/table.txt"; echo; cat "$RESULTS"; } >"$OUT"
fi
