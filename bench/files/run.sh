#!/usr/bin/env bash
# bench/files/run.sh - file transfer speed of ferry beside its peers, in one run on one
# machine (see bench/README.md):
#   download  curl GET of one big file: ferry's /api/v1/sync/download vs nginx (sendfile),
#             both serving the same file on disk (the blob in ferry's store)
#   upload    tus-js-client uploading the same file: ferry's /tus/ vs @tus/server with
#             its file store
#   dirsync   a tree of many small files: ferry's POST /api/v1/sync/files vs `rsync -a`,
#             first into an empty folder, then again after 1% of the files changed
#
#   bench/files/setup.sh     # once: nginx, rsync, @tus/server, tus-js-client (idempotent)
#   bench/files/run.sh       # builds ferry (make), runs everything, prints the table
#
# Settings (environment): SIZE_MB=1024 (the big file), FILES=20000 (the tree), CHANGED=1
# (percent of files changed for the second sync), REPEAT=3 (best of, for transfers),
# KEEP=0 (1: keep the temp folder), OUT= (a file to copy the table to).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SIZE_MB=${SIZE_MB:-1024}
FILES=${FILES:-20000}
CHANGED=${CHANGED:-1}
REPEAT=${REPEAT:-3}
KEEP=${KEEP:-0}
OUT=${OUT:-}
FERRY="$REPO/build/ferry"

log() { printf '== %s\n' "$*" >&2; }
fail() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-files.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # wait_http URL: until it answers at all (any status)
  for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
  fail "nothing answers at $1"
}
mbps() { python3 -c "print(f'{$1 / 1048576 / $2:.1f}')"; }
best() { sort -g | head -1; } # the shortest of several times

[ -x "$HERE/node_modules/.bin/tus-js-client" ] || [ -d "$HERE/node_modules/tus-js-client" ] ||
  fail "run bench/files/setup.sh first"
command -v nginx >/dev/null || fail "nginx is missing: run bench/files/setup.sh"
command -v rsync >/dev/null || fail "rsync is missing: run bench/files/setup.sh"

log "building ferry"
make -C "$REPO" build >/dev/null

log "making a ${SIZE_MB} MiB file of random bytes"
BIG="$WORK/big.bin"
head -c "${SIZE_MB}M" /dev/urandom >"$BIG"
BYTES=$(stat -c %s "$BIG")

# --- ferry -----------------------------------------------------------------------------
mkdir -p "$WORK/roots"
FPORT=$(free_port)
"$FERRY" serve --listen "127.0.0.1:$FPORT" --data-dir "$WORK/ferry-data" \
  --file-root "$WORK/roots" --max-upload 64G --rate-limit 0 >"$WORK/ferry.out" 2>"$WORK/ferry.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$FPORT/health"
TOKEN=$(cat "$WORK/ferry-data/admin.token")
AUTH="Authorization: Bearer $TOKEN"

# --- upload: tus-js-client to ferry and to @tus/server ---------------------------------
TPORT=$(free_port)
mkdir -p "$WORK/tus-files"
node "$HERE/tus_server.mjs" "$TPORT" "$WORK/tus-files" >"$WORK/tus-server.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$TPORT/files"

upload() { # upload ENDPOINT [TOKEN] -> seconds; the disk is idle when it starts (sync)
  sync
  node "$HERE/tus_client.mjs" "$1" "$BIG" "${2:-}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])'
}
log "upload: tus-js-client, ${REPEAT} rounds each"
UP_FERRY=(); UP_TUS=()
for _ in $(seq "$REPEAT"); do
  UP_FERRY+=("$(upload "http://127.0.0.1:$FPORT/tus/" "$TOKEN")")
  UP_TUS+=("$(upload "http://127.0.0.1:$TPORT/files/")")
  rm -rf "$WORK/tus-files"/* # @tus/server keeps every upload; disk space is not the point
done
UP_FERRY_S=$(printf '%s\n' "${UP_FERRY[@]}" | best)
UP_TUS_S=$(printf '%s\n' "${UP_TUS[@]}" | best)

# the uploaded file is now a blob in ferry's store: both servers send that same file
SHA=$(sha256sum "$BIG" | cut -c1-64)
BLOB_DIR="$WORK/ferry-data/blobs"
[ -f "$BLOB_DIR/${SHA:0:2}/${SHA:2:2}/$SHA" ] || fail "the upload did not reach ferry's blob store"

# --- download: curl from ferry and from nginx -----------------------------------------
NPORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
$( [ "$(id -u)" -eq 0 ] && echo "user root;" )
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server {
    listen 127.0.0.1:$NPORT;
    root $BLOB_DIR;
  }
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$NPORT/"

download() { # download URL [HEADER] -> seconds (checks every byte arrived)
  local out
  out=$(curl -s -o /dev/null -w '%{time_total} %{size_download} %{http_code}' ${2:+-H "$2"} "$1")
  set -- $out
  [ "$3" = 200 ] && [ "$2" = "$BYTES" ] || fail "download of $BYTES bytes got status $3, $2 bytes"
  echo "$1"
}
log "download: curl, ${REPEAT} rounds each"
DOWN_FERRY=(); DOWN_NGINX=()
download "http://127.0.0.1:$NPORT/${SHA:0:2}/${SHA:2:2}/$SHA" >/dev/null # page cache warm
for _ in $(seq "$REPEAT"); do
  DOWN_FERRY+=("$(download "http://127.0.0.1:$FPORT/api/v1/sync/download/bench/big.bin" "$AUTH")")
  DOWN_NGINX+=("$(download "http://127.0.0.1:$NPORT/${SHA:0:2}/${SHA:2:2}/$SHA")")
done
DOWN_FERRY_S=$(printf '%s\n' "${DOWN_FERRY[@]}" | best)
DOWN_NGINX_S=$(printf '%s\n' "${DOWN_NGINX[@]}" | best)

# --- dirsync: ferry's /sync/files vs rsync -a ----------------------------------------
log "dirsync: making a tree of $FILES files"
SRC="$WORK/roots/src"
python3 "$HERE/make_tree.py" "$SRC" "$FILES"
TREE_BYTES=$(du -sb "$SRC" | cut -f1)

ferry_sync() { # ferry_sync TARGET -> seconds (wall clock, as the client sees it)
  local body out
  body=$(printf '{"sourceDirectory":"%s","targetDirectory":"%s"}' "$SRC" "$1")
  out=$(curl -s -w ' %{time_total}' -H "$AUTH" -H 'Content-Type: application/json' \
    -d "$body" "http://127.0.0.1:$FPORT/api/v1/sync/files")
  python3 -c 'import json,sys; t=sys.argv[1].rsplit(" ",1); r=json.loads(t[0]);
assert r["success"], r; print(t[1])' "$out"
}
rsync_sync() { # rsync_sync TARGET -> seconds
  local t0 t1
  t0=$(date +%s.%N); rsync -a "$SRC/" "$1/"; t1=$(date +%s.%N)
  python3 -c "print($t1 - $t0)"
}
sync_both() { # round $1 into fresh targets; the order alternates, so neither tool always
  # runs first (right after the tree was written) or last
  local f="$WORK/roots/ferry-$1" r="$WORK/roots/rsync-$1"
  if [ $(($1 % 2)) = 1 ]; then
    sync; DS_F1=$(ferry_sync "$f"); sync; DS_R1=$(rsync_sync "$r")
  else
    sync; DS_R1=$(rsync_sync "$r"); sync; DS_F1=$(ferry_sync "$f")
  fi
  python3 "$HERE/make_tree.py" "$SRC" "$FILES" --change "$CHANGED" --round "$1"
  if [ $(($1 % 2)) = 1 ]; then
    sync; DS_F2=$(ferry_sync "$f"); sync; DS_R2=$(rsync_sync "$r")
  else
    sync; DS_R2=$(rsync_sync "$r"); sync; DS_F2=$(ferry_sync "$f")
  fi
  diff -r "$SRC" "$f" >/dev/null || fail "ferry's copy differs from the source"
  diff -r "$SRC" "$r" >/dev/null || fail "rsync's copy differs from the source"
}
log "dirsync: ${REPEAT} rounds"
I_F=(); I_R=(); C_F=(); C_R=()
cat "$SRC"/*/* >/dev/null # page cache warm for both
for round in $(seq "$REPEAT"); do
  sync_both "$round"
  I_F+=("$DS_F1"); I_R+=("$DS_R1"); C_F+=("$DS_F2"); C_R+=("$DS_R2")
done
I_F_S=$(printf '%s\n' "${I_F[@]}" | best); I_R_S=$(printf '%s\n' "${I_R[@]}" | best)
C_F_S=$(printf '%s\n' "${C_F[@]}" | best); C_R_S=$(printf '%s\n' "${C_R[@]}" | best)

# --- report -------------------------------------------------------------------------------
report() {
  echo "bench/files: ${SIZE_MB} MiB file; tree of $FILES files ($((TREE_BYTES / 1048576)) MiB), ${CHANGED}% changed; best of $REPEAT"
  printf '%-34s %12s %12s %9s  %s\n' "workload" "ferry" "peer" "ratio" "goal"
  printf '%-34s %9s MB/s %7s MB/s %8.2fx  %s\n' "download (curl) vs nginx" \
    "$(mbps "$BYTES" "$DOWN_FERRY_S")" "$(mbps "$BYTES" "$DOWN_NGINX_S")" \
    "$(python3 -c "print($DOWN_NGINX_S / $DOWN_FERRY_S)")" "ferry/nginx >= 0.90"
  printf '%-34s %9s MB/s %7s MB/s %8.2fx  %s\n' "upload (tus-js-client) vs @tus/server" \
    "$(mbps "$BYTES" "$UP_FERRY_S")" "$(mbps "$BYTES" "$UP_TUS_S")" \
    "$(python3 -c "print($UP_TUS_S / $UP_FERRY_S)")" "ferry/@tus/server > 1"
  printf '%-34s %10.3f s %10.3f s %8.2fx  %s\n' "dirsync initial vs rsync -a" \
    "$I_F_S" "$I_R_S" "$(python3 -c "print($I_R_S / $I_F_S)")" "rsync time/ferry time >= 1"
  printf '%-34s %10.3f s %10.3f s %8.2fx  %s\n' "dirsync after ${CHANGED}% changed vs rsync -a" \
    "$C_F_S" "$C_R_S" "$(python3 -c "print($C_R_S / $C_F_S)")" "rsync time/ferry time >= 1"
  echo "(ratios are ferry's speed over the peer's: above 1, ferry is faster)"
}
report | tee ${OUT:+"$OUT"}
