#!/usr/bin/env bash
# bench/merge: a 3-way merge of two 100,000-line files with 1% of the lines edited on each
# side (the same base), by ferry (the CLI, `ferry merge`, and the API, POST
# /api/v1/merge/files) and by `git merge-file`, in one run. Prints the best of REPS times
# of each, the ratios to git, and checks that every one gives git's bytes. Not run by CI.
#   bench/merge/run.sh             # builds ferry (make build), then runs
#   LINES=100000 EDIT_PERCENT=1 REPS=5 KEEP=1 bench/merge/run.sh
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
LINES=${LINES:-100000}
EDIT_PERCENT=${EDIT_PERCENT:-1}
REPS=${REPS:-5}
KEEP=${KEEP:-0}
FERRY="$REPO/build/ferry"

log() { printf '== %s\n' "$*" >&2; }
fail() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-merge.XXXXXX")
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
best() { sort -g | head -1; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

command -v git >/dev/null || fail "git is missing"
log "building ferry"
make -C "$REPO" build >/dev/null

log "making base/source/target: $LINES lines, $EDIT_PERCENT% edited on each side"
mkdir -p "$WORK/root"
python3 - "$WORK/root" "$LINES" "$EDIT_PERCENT" <<'PY'
import random, sys
root, n, pct = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(12345)
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
base = [f"{i}: " + " ".join(rng.choice(words) for _ in range(6)) for i in range(n)]
def edit(tag):
    lines, k = list(base), int(n * pct / 100)
    for pos in sorted(rng.sample(range(n), k), reverse=True):
        op = rng.random()
        if op < 0.6:
            lines[pos] = f"{tag} changed {pos}"
        elif op < 0.8:
            lines.insert(pos, f"{tag} inserted before {pos}")
        else:
            del lines[pos]
    return lines
for name, lines in (("base", base), ("source", edit("source")), ("target", edit("target"))):
    with open(f"{root}/{name}.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
PY
B="$WORK/root/base.txt" S="$WORK/root/source.txt" T="$WORK/root/target.txt"

PORT=$(free_port)
"$FERRY" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --file-root "$WORK/root" \
  --rate-limit 0 >"$WORK/ferry.out" 2>"$WORK/ferry.log" &
SERVER_PID=$!
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.05; done
TOKEN=$(cat "$WORK/data/admin.token")

# time_git FLAG OUT, time_cli FAVOR OUT, time_api FAVOR OUT: one run each, seconds on stdout
time_git() { local t0; t0=$(now); git merge-file -p "$1" -L source -L base -L target "$S" "$B" "$T" >"$2" || true; python3 -c "print($(now) - $t0)"; }
time_cli() { local t0; t0=$(now); "$FERRY" merge --favor "$1" "$B" "$S" "$T" >"$2" || true; python3 -c "print($(now) - $t0)"; }
time_api() {
  curl -s -o "$2.json" -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' \
    -d "{\"baseFile\":\"$B\",\"sourceFile\":\"$S\",\"targetFile\":\"$T\",\"favor\":\"$1\"}" \
    "http://127.0.0.1:$PORT/api/v1/merge/files"
}

printf '%-8s %-8s %10s %10s %10s %9s %9s %s\n' favor git-flag git_s cli_s api_s cli/git api/git conflicts
for pair in none:--diff3 source:--ours target:--theirs union:--union; do
  favor=${pair%%:*} flag=${pair#*:}
  g=$(for _ in $(seq "$REPS"); do time_git "$flag" "$WORK/git.out"; done | best)
  c=$(for _ in $(seq "$REPS"); do time_cli "$favor" "$WORK/cli.out"; done | best)
  a=$(for _ in $(seq "$REPS"); do time_api "$favor" "$WORK/api"; done | best)
  cmp -s "$WORK/git.out" "$WORK/cli.out" || fail "favor $favor: ferry merge differs from git merge-file $flag"
  n=$(python3 - "$WORK/api.json" "$WORK/git.out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["mergedContent"].encode() == open(sys.argv[2], "rb").read(), "the API differs from git"
print(len(r["conflicts"]))
PY
) || fail "favor $favor: the API's mergedContent differs from git merge-file $flag"
  printf '%-8s %-8s %10.4f %10.4f %10.4f %8sx %8sx %s\n' "$favor" "$flag" "$g" "$c" "$a" \
    "$(ratio "$c" "$g")" "$(ratio "$a" "$g")" "$n"
done
log "same bytes as git merge-file for every favor (ratios: ferry time / git time; goal <= 1)"
