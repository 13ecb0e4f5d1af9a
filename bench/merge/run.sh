#!/usr/bin/env bash
# bench/merge: a 3-way merge of two files with 1% of the lines edited on each side (the
# same base), at several sizes, by ferry (the CLI, `ferry merge`, and the API, POST
# /api/v1/merge/files) and by `git merge-file`, in one run. For each size and favor it
# prints the best wall time of REPS runs and the mean CPU time (user + system; for the API,
# the server's), the ratios to git, and checks that every one gives git's bytes. CPU time
# is the steadier figure on a shared machine. Not run by CI.
#   bench/merge/run.sh             # builds ferry (make build), then runs
#   SIZES="10000 100000 300000" EDIT_PERCENT=1 REPS=5 KEEP=1 bench/merge/run.sh
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SIZES=${SIZES:-10000 100000 300000}
EDIT_PERCENT=${EDIT_PERCENT:-1}
REPS=${REPS:-5}
KEEP=${KEEP:-0}
FERRY="$REPO/build/ferry"
PY=/usr/bin/python3

log() { printf '== %s\n' "$*" >&2; }
fail() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-merge.XXXXXX")
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

command -v git >/dev/null || fail "git is missing"
log "building ferry"
make -C "$REPO" build >/dev/null

mkdir -p "$WORK/root"
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$FERRY" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --file-root "$WORK/root" \
  --rate-limit 0 >"$WORK/ferry.out" 2>"$WORK/ferry.log" &
SERVER_PID=$!
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.05; done

log "sizes: $SIZES lines, $EDIT_PERCENT% edited on each side, best/mean of $REPS runs; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$WORK" "$FERRY" "$PORT" "$SERVER_PID" "$EDIT_PERCENT" "$REPS" $SIZES <<'PY'
import http.client, json, os, random, subprocess, sys, time

work, ferry, port, server_pid, pct, reps = sys.argv[1:7]
pct, reps, sizes = float(pct), int(reps), [int(n) for n in sys.argv[7:]]
root = f"{work}/root"
token = open(f"{work}/data/admin.token").read().strip()
tick = os.sysconf("SC_CLK_TCK")
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def make_files(n):
    rng = random.Random(12345)
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

    paths = {}
    for name, lines in (("base", base), ("source", edit("source")), ("target", edit("target"))):
        paths[name] = f"{root}/{name}.txt"
        with open(paths[name], "w") as f:
            f.write("\n".join(lines) + "\n")
    return paths


def run_cmd(argv):
    """(wall seconds, cpu seconds, stdout bytes) of one run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, _, ru = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, ru.ru_utime + ru.ru_stime, out


def server_cpu():
    fields = open(f"/proc/{server_pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick


def run_api(paths, favor):
    body = json.dumps({"baseFile": paths["base"], "sourceFile": paths["source"],
                       "targetFile": paths["target"], "favor": favor})
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=120)
    t0 = time.perf_counter()
    conn.request("POST", "/api/v1/merge/files", body, {
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    wall = time.perf_counter() - t0
    conn.close()
    assert resp.status == 200, data[:300]
    return wall, data


def measure(fn):
    """Best wall time and mean CPU time of reps runs, and the last output."""
    walls, cpus = [], []
    for _ in range(reps):
        wall, cpu, out = fn()
        walls.append(wall)
        cpus.append(cpu)
    return min(walls), sum(cpus) / len(cpus), out


def measure_api(paths, favor):
    """The server's CPU is read in clock ticks: it is taken over all runs, then divided."""
    before = server_cpu()
    walls, data = [], None
    for _ in range(reps):
        wall, data = run_api(paths, favor)
        walls.append(wall)
    return min(walls), (server_cpu() - before) / reps, data


flags = {"none": "--diff3", "source": "--ours", "target": "--theirs", "union": "--union"}
print(f"{'lines':>7} {'favor':<7} {'git_s':>7} {'cli_s':>7} {'api_s':>7} {'cli/git':>7} "
      f"{'api/git':>7} | {'git_cpu':>7} {'cli_cpu':>7} {'api_cpu':>7} {'cli/git':>7} "
      f"{'api/git':>7} | conflicts")
worst = {"cli": 0.0, "api": 0.0}
for n in sizes:
    paths = make_files(n)
    for favor, flag in flags.items():
        git = measure(lambda: run_cmd(["git", "merge-file", "-p", flag, "-L", "source", "-L",
                                       "base", "-L", "target", paths["source"], paths["base"],
                                       paths["target"]]))
        cli = measure(lambda: run_cmd([ferry, "merge", "--favor", favor, paths["base"],
                                       paths["source"], paths["target"]]))
        api = measure_api(paths, favor)
        if cli[2] != git[2]:
            sys.exit(f"{n} lines, favor {favor}: ferry merge differs from git merge-file {flag}")
        res = json.loads(api[2])
        if res["mergedContent"].encode() != git[2]:
            sys.exit(f"{n} lines, favor {favor}: the API's mergedContent differs from git {flag}")
        ratios = [cli[0] / git[0], api[0] / git[0], cli[1] / git[1], api[1] / git[1]]
        worst["cli"] = max(worst["cli"], ratios[0])
        worst["api"] = max(worst["api"], ratios[1])
        print(f"{n:>7} {favor:<7} {git[0]:7.3f} {cli[0]:7.3f} {api[0]:7.3f} {ratios[0]:6.2f}x "
              f"{ratios[1]:6.2f}x | {git[1]:7.3f} {cli[1]:7.3f} {api[1]:7.3f} {ratios[2]:6.2f}x "
              f"{ratios[3]:6.2f}x | {len(res['conflicts'])}", flush=True)
print(f"worst wall ratio: cli {worst['cli']:.2f}x, api {worst['api']:.2f}x (goal <= 1)")
PY
log "same bytes as git merge-file for every size and favor (ratios: ferry / git)"
