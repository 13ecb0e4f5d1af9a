#!/usr/bin/env bash
# bench/merge: a 3-way merge of two files with 1% of the lines edited on each side (the
# same base), at several sizes, by ferry (the CLI, `ferry merge`, and the API, POST
# /api/v1/merge/files) and by `git merge-file`, in one run, checking that every one gives
# git's bytes. For each size and favor it prints:
#   wall: hyperfine's mean +- sd of REPS runs (the API through curl; curl's own start-up,
#         measured the same way on /health, is in the header, so it can be subtracted);
#   cpu:  mean user + system CPU time (hyperfine's, for the API the server's, read from
#         /proc before and after the runs);
#   instr: instructions counted by callgrind in one run of git and of the CLI (INSTR=0
#         skips it); the figure a busy machine does not disturb;
# and each ratio to git. Not run by CI.
#   bench/merge/run.sh             # builds ferry (make build), then runs
#   SIZES="10000 100000 300000" EDIT_PERCENT=1 REPS=20 INSTR=1 KEEP=1 bench/merge/run.sh
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SIZES=${SIZES:-10000 100000 300000}
EDIT_PERCENT=${EDIT_PERCENT:-1}
REPS=${REPS:-20}
INSTR=${INSTR:-1}
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

for tool in git curl hyperfine; do
  command -v "$tool" >/dev/null || fail "$tool is missing (bench/merge/setup.sh installs it)"
done
if [ "$INSTR" = 1 ]; then
  command -v valgrind >/dev/null || fail "valgrind is missing (bench/merge/setup.sh; or INSTR=0)"
fi
log "building ferry"
make -C "$REPO" build >/dev/null

mkdir -p "$WORK/root"
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$FERRY" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --file-root "$WORK/root" \
  --rate-limit 0 >"$WORK/ferry.out" 2>"$WORK/ferry.log" &
SERVER_PID=$!
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.05; done

log "sizes: $SIZES lines, $EDIT_PERCENT% edited on each side, $REPS runs each; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$WORK" "$FERRY" "$PORT" "$SERVER_PID" "$EDIT_PERCENT" "$REPS" "$INSTR" $SIZES <<'PY'
import json, os, random, re, subprocess, sys

work, ferry, port, server_pid, pct, reps, instr = sys.argv[1:8]
pct, reps, instr, sizes = float(pct), int(reps), instr == "1", [int(n) for n in sys.argv[8:]]
root = f"{work}/root"
token = open(f"{work}/data/admin.token").read().strip()
tick = os.sysconf("SC_CLK_TCK")
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
url = f"http://127.0.0.1:{port}"
WARMUP = 2


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


def hyperfine(argv):
    """(mean, sd, mean user + system) in seconds over reps runs of argv, no shell. Exit
    codes are ignored (git and ferry exit non-zero on conflicts): the outputs are checked
    before."""
    out = f"{work}/hyperfine.json"
    cmd = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
    subprocess.run(["hyperfine", "-N", "-i", "--style", "none", "--warmup", str(WARMUP), "--runs",
                    str(reps), "--export-json", out, cmd], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = json.load(open(out))["results"][0]
    return r["mean"], r["stddev"], r["user"] + r["system"]


def instructions(argv):
    """Instructions callgrind counts in one run of argv (all threads; the exit code is a
    count of conflicts for both)."""
    res = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + argv,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return int(re.search(r"I\s+refs:\s+([\d,]+)", res.stderr).group(1).replace(",", ""))


def server_cpu():
    fields = open(f"/proc/{server_pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick


def curl(path, body=None, out="/dev/null"):
    argv = ["curl", "-sS", "-o", out, "--fail", url + path]
    if body:
        argv += ["-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
                 "--data-binary", "@" + body]
    return argv


def measure_api(body):
    """hyperfine over curl, and the server's CPU per request over all of them (warm-ups too:
    the server's clock-tick counters are too coarse for one request)."""
    before = server_cpu()
    mean, sd, _ = hyperfine(curl("/api/v1/merge/files", body))
    return mean, sd, (server_cpu() - before) / (reps + WARMUP)


curl_mean, curl_sd, _ = hyperfine(curl("/health"))
print(f"curl's own start-up and a /health request (in the api wall): "
      f"{curl_mean * 1000:.1f} +- {curl_sd * 1000:.1f} ms")
print(f"{'lines':>7} {'favor':<6} | wall ms: {'git':>11} {'cli':>11} {'api':>11} {'cli/git':>7} "
      f"{'api/git':>7} | cpu ms: {'git':>6} {'cli':>6} {'api':>6} {'cli/git':>7} {'api/git':>7} | "
      f"Minstr: {'git':>6} {'cli':>6} {'cli/git':>7} | conflicts")
flags = {"none": "--diff3", "source": "--ours", "target": "--theirs", "union": "--union"}
worst = {}
for n in sizes:
    paths = make_files(n)
    for favor, flag in flags.items():
        git_argv = ["git", "merge-file", "-p", flag, "-L", "source", "-L", "base", "-L", "target",
                    paths["source"], paths["base"], paths["target"]]
        cli_argv = [ferry, "merge", "--favor", favor, paths["base"], paths["source"],
                    paths["target"]]
        body = f"{work}/body.json"
        with open(body, "w") as f:
            json.dump({"baseFile": paths["base"], "sourceFile": paths["source"],
                       "targetFile": paths["target"], "favor": favor}, f)
        want = subprocess.run(git_argv, stdout=subprocess.PIPE).stdout
        if subprocess.run(cli_argv, stdout=subprocess.PIPE).stdout != want:
            sys.exit(f"{n} lines, favor {favor}: ferry merge differs from git merge-file {flag}")
        res = json.loads(subprocess.run(curl("/api/v1/merge/files", body, "-"),
                                        stdout=subprocess.PIPE, check=True).stdout)
        if res["mergedContent"].encode() != want:
            sys.exit(f"{n} lines, favor {favor}: the API's mergedContent differs from git {flag}")
        git, cli, api = hyperfine(git_argv), hyperfine(cli_argv), measure_api(body)
        ratios = {"wall cli": cli[0] / git[0], "wall api": api[0] / git[0],
                  "cpu cli": cli[2] / git[2], "cpu api": api[2] / git[2]}
        git_i = cli_i = 0
        if instr:
            git_i, cli_i = instructions(git_argv), instructions(cli_argv)
            ratios["instr cli"] = cli_i / git_i
        for k, v in ratios.items():
            worst[k] = max(worst.get(k, 0), v)
        ms = lambda m: f"{m[0] * 1000:5.1f}+-{m[1] * 1000:4.1f}"
        print(f"{n:>7} {favor:<6} | wall ms: {ms(git):>11} {ms(cli):>11} {ms(api):>11} "
              f"{ratios['wall cli']:6.2f}x {ratios['wall api']:6.2f}x | cpu ms: "
              f"{git[2] * 1000:6.1f} {cli[2] * 1000:6.1f} {api[2] * 1000:6.1f} "
              f"{ratios['cpu cli']:6.2f}x {ratios['cpu api']:6.2f}x | Minstr: "
              f"{git_i / 1e6:6.0f} {cli_i / 1e6:6.0f} {ratios.get('instr cli', 0):6.2f}x | "
              f"{len(res['conflicts'])}", flush=True)
print("worst ratios to git (goal <= 1): " + ", ".join(f"{k} {v:.2f}x" for k, v in worst.items()))
PY
log "same bytes as git merge-file for every size and favor (ratios: ferry / git)"
