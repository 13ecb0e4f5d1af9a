#!/usr/bin/env bash
# bench/http/longpoll.sh - CONNS (default 10000) idle long-polls on one ferry (SQLite),
# then one push: ferry's RSS while they wait, and the wake latency (longpoll.py). ferry
# runs with --max-connections CONNS+100 (room for the push) and its default
# --max-connections-per-ip (the pollers come from many loopback addresses).
#   bench/http/longpoll.sh      # builds ferry (make build) unless FERRY_BIN is given
# Settings: CONNS=10000, FERRY_BIN=, FERRY_ARGS= (more serve flags), KEEP=0.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CONNS=${CONNS:-10000}
KEEP=${KEEP:-0}
log() { printf '== %s\n' "$*" >&2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-longpoll.XXXXXX")
FPID=
cleanup() {
  [ -n "$FPID" ] && kill -TERM "$FPID" 2>/dev/null && wait "$FPID" 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

if [ -n "${FERRY_BIN:-}" ]; then FERRY=$FERRY_BIN; else
  make -C "$REPO" build >/dev/null
  FERRY="$REPO/build/ferry"
fi
ulimit -n "$(ulimit -Hn)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/data"
# ferry creates its database on first start; the synced table must exist before
"$FERRY" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/first.log" 2>&1 &
FPID=$!
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.05; done
kill -TERM "$FPID"; wait "$FPID" || true
sqlite3 "$WORK/data/ferry.db" 'CREATE TABLE bench(id TEXT PRIMARY KEY, n INTEGER);'
# shellcheck disable=SC2086 # FERRY_ARGS: several flags
"$FERRY" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --allowed-tables bench \
  --rate-limit 0 --max-connections $((CONNS + 100)) ${FERRY_ARGS:-} >"$WORK/ferry.out" 2>"$WORK/ferry.log" &
FPID=$!
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.05; done
tok() { "$FERRY" token create --role device --name "$1" --user bench --device "$1" --data-dir "$WORK/data" 2>/dev/null; }
POLL=$(tok poller)
PUSH=$(tok pusher)
log "ferry pid $FPID on $PORT ($FERRY), $CONNS long-polls; load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$HERE/longpoll.py" --url "http://127.0.0.1:$PORT" --poll-token "$POLL" \
  --push-token "$PUSH" --conns "$CONNS" --pid "$FPID"
