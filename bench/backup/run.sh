#!/usr/bin/env bash
# bench/backup: ferry backup vs restic and borg on one tree, in one run: the initial
# backup's time, the repository's size, an incremental backup after 1% of the files
# changed, and a full restore. Every tool encrypts (ferry: XChaCha20-Poly1305, restic:
# AES-256, borg: repokey-blake2) and compresses with zstd level 3 (restic: auto). The
# tree is bench/files' layout at backup scale: FILES files (default 20,000, ~2 GB), half
# random bytes, half text (make_tree.py). Prints a table and the ratios ferry/peer, in
# wall time and in CPU time (user + system, which a busy shared machine disturbs less).
# Not run by CI.
#   bench/backup/setup.sh      # once: restic, borgbackup
#   bench/backup/run.sh        # builds ferry (make build), then runs (~12 minutes)
#   FILES=2000 KEEP=1 WORK=/var/tmp/bb bench/backup/run.sh
#   PEERS=restic bench/backup/run.sh   # leave borg out (quicker repeated runs)
#   FERRY=/path/to/other/ferry bench/backup/run.sh   # measure another build
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
FILES=${FILES:-20000}
KEEP=${KEEP:-0}
PEERS=${PEERS:-restic borg}
FERRY=${FERRY:-$REPO/build/ferry}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-backup.XXXXXX")}

log() { printf '== %s\n' "$*" >&2; }
fail() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
cleanup() { if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT INT TERM

for tool in $PEERS python3; do
  command -v "$tool" >/dev/null || fail "$tool is missing (bench/backup/setup.sh)"
done
log "building ferry"
make -C "$REPO" build >/dev/null

SRC="$WORK/src"
if [ ! -d "$SRC" ]; then
  log "making the tree: $FILES files"
  python3 "$HERE/make_tree.py" "$SRC" "$FILES"
fi
sync
log "tree: $(du -sh "$SRC" | cut -f1) in $(find "$SRC" -type f | wc -l) files"

PW="$WORK/password"
echo "bench password" >"$PW"
export FERRY_BACKUP_PASSWORD="bench password" RESTIC_PASSWORD_FILE="$PW"
export BORG_PASSPHRASE="bench password" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

timed() { # timed NAME cmd...: runs cmd, prints its wall seconds (its CPU seconds to NAME.cpu)
  local t0 t1
  t0=$(date +%s.%N)
  "${@:2}" >"$WORK/$1.log" 2>&1 || { cat "$WORK/$1.log" >&2; fail "$1 failed"; }
  t1=$(date +%s.%N)
  times >"$WORK/$1.cpu" # its last line: this subshell's children's user and system time
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}
cpu() { # cpu NAME: the user + system seconds timed recorded
  python3 - "$(cat "$WORK/$1.cpu")" <<'PY'
import re, sys
parts = re.findall(r"(\d+)m([\d.]+)s", sys.argv[1].splitlines()[-1])
print("%.2f" % sum(int(m) * 60 + float(sec) for m, sec in parts))
PY
}
size() { du -sb "$1" | cut -f1; }

declare -A T
TOOLS="ferry $PEERS"
rm -rf "$WORK"/repo-* "$WORK"/out-*
case " $PEERS " in *" restic "*) restic -q -r "$WORK/repo-restic" init >/dev/null ;; esac
case " $PEERS " in *" borg "*) borg init --encryption=repokey-blake2 "$WORK/repo-borg" >/dev/null 2>&1 ;; esac

backup() { # backup TOOL N: the N-th version of the tree
  case $1 in
    ferry) "$FERRY" backup create "$WORK/repo-ferry" "$SRC" --no-progress ;;
    restic) restic -r "$WORK/repo-restic" backup --compression auto "$SRC" ;;
    borg) borg create --compression zstd,3 "$WORK/repo-borg::v$2" "$SRC" ;;
  esac
}
restore() { # restore TOOL N: the newest version into out-TOOL-N
  local out="$WORK/out-$1-$2"
  case $1 in
    ferry) "$FERRY" backup restore "$WORK/repo-ferry" latest "$out" --no-progress ;;
    restic) restic -r "$WORK/repo-restic" restore latest --target "$out" ;;
    borg) mkdir -p "$out" && (cd "$out" && borg extract "$WORK/repo-borg::v2") ;;
  esac
}

warm() { # reads the tree once, so the tool that runs first does not alone pay for a cold cache
  find "$SRC" -type f -print0 | xargs -0 cat >/dev/null
}

log "initial backups"
warm
for t in $TOOLS; do T[${t}_init]=$(sync && timed "$t-init" backup "$t" 1); done
for t in $TOOLS; do T[${t}_size]=$(size "$WORK/repo-$t"); done

log "changing 1% of the files"
python3 "$HERE/make_tree.py" "$SRC" "$FILES" --change 1 --round "${ROUND:-$(date +%s)}"
sync
log "incremental backups"
warm
for t in $TOOLS; do T[${t}_incr]=$(sync && timed "$t-incr" backup "$t" 2); done
for t in $TOOLS; do T[${t}_size2]=$(size "$WORK/repo-$t"); done

# Each tool restores twice, in the order A B B A (each tool's quicker run counts), into
# folders kept until all are done: on ext4 without a journal, making a file scans past
# the inodes freed in the last minutes, so a restore right after another's output was
# deleted paid for that deletion (whoever came second was up to 2x slower). sync before
# each run, so none pays for the write-back of the one before.
log "full restores"
n=0
for t in $TOOLS $(printf '%s\n' $TOOLS | tac); do
  n=$((n + 1))
  sync
  s=$(timed "$t-restore$n" restore "$t" "$n")
  if [ -z "${T[${t}_restore]:-}" ] || python3 -c "import sys; sys.exit($s >= ${T[${t}_restore]})"; then
    T[${t}_restore]=$s
    cp "$WORK/$t-restore$n.cpu" "$WORK/$t-restore.cpu"
  fi
done
rm -rf "$WORK"/out-*

mb() { python3 -c "print(f'{$1 / 1048576:.0f}')"; }
printf '\n%-8s %12s %12s %12s %12s %12s\n' tool "initial s" "repo MiB" "incr s" "growth MiB" "restore s"
for t in $TOOLS; do
  printf '%-8s %12s %12s %12s %12s %12s\n' "$t" "${T[${t}_init]}" "$(mb "${T[${t}_size]}")" \
    "${T[${t}_incr]}" "$(mb "$((T[${t}_size2] - T[${t}_size]))")" "${T[${t}_restore]}"
done
printf '\nCPU seconds (user + system: less sensitive than wall time to a shared machine)\n'
printf '%-8s %12s %12s %12s\n' tool initial incr restore
for t in $TOOLS; do
  printf '%-8s %12s %12s %12s\n' "$t" "$(cpu "$t-init")" "$(cpu "$t-incr")" "$(cpu "$t-restore")"
done
for p in $PEERS; do
  python3 - "$p" "$(cpu "$p-init")" "$(cpu ferry-init)" "$(cpu "$p-incr")" "$(cpu ferry-incr)" \
    "$(cpu "$p-restore")" "$(cpu ferry-restore)" <<'PY'
import sys
p, pi, fi, pc, fc, pr, fr = sys.argv[1], *map(float, sys.argv[2:])
print(f"CPU vs {p:6s}: initial {pi / fi:.2f}x  incremental {pc / fc:.2f}x  restore {pr / fr:.2f}x")
PY
done
printf '\nratios (peer time / ferry time: > 1 means ferry is faster; repo: ferry / peer)\n'
for p in $PEERS; do
  python3 - "$p" "${T[${p}_init]}" "${T[ferry_init]}" "${T[${p}_incr]}" "${T[ferry_incr]}" \
    "${T[${p}_restore]}" "${T[ferry_restore]}" "${T[ferry_size]}" "${T[${p}_size]}" <<'PY'
import sys
p, pi, fi, pc, fc, pr, fr, fs, ps = sys.argv[1], *map(float, sys.argv[2:])
print(f"vs {p:6s}: initial {pi / fi:.2f}x  incremental {pc / fc:.2f}x  restore {pr / fr:.2f}x"
      f"  repository {fs / ps:.2f}x")
PY
done
printf 'goal: at least 1.5x restic on all three, at a repository no larger (<= 1.00x)\n'
