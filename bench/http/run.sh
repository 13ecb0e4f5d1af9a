#!/usr/bin/env bash
# bench/http/run.sh - small-request speed of ferry beside nginx, in one run on one machine
# (see bench/README.md): wrk -t2 -c64 against
#   nginx        `return 200` (nginx from Debian, a temp config on a free port)
#   ferry-health GET /health
#   ferry-feed   a device's empty feed: GET /api/v1/sync/changes?cursor=<head> with a
#                device token (authentication, rate limiting off, a feed read, JSON)
# Targets are run in rounds (nginx, health, feed, nginx, ...) and the best of ROUNDS is
# kept, so that other load on the machine hurts every target alike.
#
#   bench/http/setup.sh     # once: wrk, nginx-light (idempotent)
#   bench/http/run.sh       # builds ferry (make build), prints requests/s and ratios
#
# Settings (environment): DURATION=10 (seconds per wrk run), ROUNDS=3, THREADS= (ferry
# --threads; default ferry's own, 8), NGINX_WORKERS= (nginx worker_processes; default the
# same number as ferry's threads, so that on a busy machine both get the same share of
# the CPU from the scheduler), CONNS=64, NGINX_LOG=on (nginx writes its access log,
# as ferry writes its request log; off: no log), PERF=0 (1: perf record ferry during one
# feed run and print the top of the profile), FERRY_BIN= (measure that binary),
# FERRY_ARGS= (more `ferry serve` flags, e.g. "--token-cache-ttl 0"), KEEP=0.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-}
CONNS=${CONNS:-64}
NGINX_LOG=${NGINX_LOG:-on}
NGINX_WORKERS=${NGINX_WORKERS:-${THREADS:-8}}
PERF=${PERF:-0}
KEEP=${KEEP:-0}

log() { printf '== %s\n' "$*" >&2; }
fail() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

command -v wrk >/dev/null || fail "wrk is missing: run bench/http/setup.sh"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || fail "nginx is missing: run bench/http/setup.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-http.XXXXXX")
PIDS=()
cleanup() {
  [ -f "$WORK/nginx.pid" ] && kill -TERM "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
  fail "nothing answers at $1"
}

if [ -n "${FERRY_BIN:-}" ]; then
  FERRY=$FERRY_BIN
else
  log "building ferry (make build)"
  make -C "$REPO" build >/dev/null
  FERRY="$REPO/build/ferry"
fi
ldd "$FERRY" | grep -q 'libasan' && log "WARNING: $FERRY is a sanitizer build; its numbers mean little"

# --- nginx: return 200 -------------------------------------------------------------------
NPORT=$(free_port)
mkdir -p "$WORK/nginx"
access="access_log off;"
[ "$NGINX_LOG" = on ] && access="access_log $WORK/nginx/access.log;"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes $NGINX_WORKERS;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  $access
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server {
    listen 127.0.0.1:$NPORT;
    location / { return 200 'ok'; }
  }
}
CONF
"$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -e "$WORK/nginx/error.log"
wait_http "http://127.0.0.1:$NPORT/"

# --- ferry -------------------------------------------------------------------------------
FPORT=$(free_port)
extra=()
[ -n "$THREADS" ] && extra+=(--threads "$THREADS")
# shellcheck disable=SC2206 # split on purpose: several flags
[ -n "${FERRY_ARGS:-}" ] && extra+=(${FERRY_ARGS})
"$FERRY" serve --listen "127.0.0.1:$FPORT" --data-dir "$WORK/ferry-data" --rate-limit 0 \
  "${extra[@]}" >"$WORK/ferry.out" 2>"$WORK/ferry.log" &
FPID=$!
PIDS+=("$FPID")
wait_http "http://127.0.0.1:$FPORT/health"
DEVICE_TOKEN=$("$FERRY" token create --role device --name bench --user bench --device bench-1 \
  --data-dir "$WORK/ferry-data")
HEAD=$(curl -sf -H "Authorization: Bearer $DEVICE_TOKEN" \
  "http://127.0.0.1:$FPORT/api/v1/sync/changes?cursor=0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cursor"])')
FEED="http://127.0.0.1:$FPORT/api/v1/sync/changes?cursor=$HEAD"
log "ferry pid $FPID on $FPORT ($FERRY), nginx on $NPORT ($NGINX_WORKERS workers, access log $NGINX_LOG), head $HEAD"
log "load: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes every figure worse)"

# run_wrk NAME URL [HEADER]: one wrk run; prints "NAME rps p50 p99 errors"
run_wrk() {
  local name=$1 url=$2 out
  shift 2
  out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url")
  echo "$out" >>"$WORK/wrk-$name.txt"
  local rps p50 p99 bad
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  bad=$(echo "$out" | awk '/Non-2xx/ {print $NF} /Socket errors/ {print "sockerr"}' | tr '\n' ' ')
  echo "$name $rps $p50 $p99 ${bad:-0}"
}

declare -A BEST P50 P99 BAD
for round in $(seq "$ROUNDS"); do
  for target in nginx ferry-health ferry-feed; do
    case $target in
      nginx) line=$(run_wrk nginx "http://127.0.0.1:$NPORT/") ;;
      ferry-health) line=$(run_wrk ferry-health "http://127.0.0.1:$FPORT/health") ;;
      ferry-feed) line=$(run_wrk ferry-feed "$FEED" -H "Authorization: Bearer $DEVICE_TOKEN") ;;
    esac
    read -r _ rps p50 p99 bad <<<"$line"
    log "round $round: $line"
    if [ -z "${BEST[$target]:-}" ] || python3 -c "import sys; sys.exit(0 if $rps > ${BEST[$target]} else 1)"; then
      BEST[$target]=$rps P50[$target]=$p50 P99[$target]=$p99 BAD[$target]=$bad
    fi
  done
done

if [ "$PERF" = 1 ] && command -v perf >/dev/null; then
  log "perf record of ferry during one feed run"
  perf record -g -o "$WORK/perf.data" -p "$FPID" -- sleep "$DURATION" >/dev/null 2>&1 &
  perfpid=$!
  wrk -t2 -c"$CONNS" -d"${DURATION}s" -H "Authorization: Bearer $DEVICE_TOKEN" "$FEED" >/dev/null
  wait "$perfpid" || true
  perf report -i "$WORK/perf.data" --no-children --stdio --percent-limit 1.5 2>/dev/null |
    grep -E '^ +[0-9]' | head -40
fi

printf '\n%-14s %12s %10s %10s %s\n' target "requests/s" p50 p99 errors
for target in nginx ferry-health ferry-feed; do
  printf '%-14s %12s %10s %10s %s\n' "$target" "${BEST[$target]}" "${P50[$target]}" "${P99[$target]}" "${BAD[$target]}"
done
python3 - "${BEST[nginx]}" "${BEST[ferry-health]}" "${BEST[ferry-feed]}" <<'PY'
import sys
nginx, health, feed = map(float, sys.argv[1:])
print()
print(f"{'ratio':<28} {'value':>7}  goal")
for name, v, goal in (("ferry /health / nginx", health / nginx, 0.7),
                      ("ferry empty feed / nginx", feed / nginx, 0.5)):
    print(f"{name:<28} {v:>6.2f}x  >= {goal}: {'met' if v >= goal else 'not met'}")
PY
