#!/usr/bin/env bash
# bench/push_pull/setup.sh - installs what bench/push_pull/run.sh needs. Idempotent: when
# everything is there it only checks. Debian packages through apt-get (as root, or with
# password-less sudo); pouchdb-server through npm into bench/push_pull/node_modules, at
# the version pinned in package.json. Nothing is downloaded by hand.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

# ferry's own build and run dependencies, plus what the benchmark adds: the C client
# (libcurl, jansson), the raw SQLite program, the sqlite3 shell (creates the user's table
# before ferry starts), node and npm for pouchdb-server
extra=(sqlite3)
command -v node >/dev/null || extra+=(nodejs)
command -v npm >/dev/null || extra+=(npm)
"$REPO/scripts/bootstrap.sh" "${extra[@]}"

# pouchdb-server (its LevelDB binding, leveldown, ships prebuilt binaries inside the npm
# package, so no install script has to run). Reinstalled only when package.json changed.
stamp="$HERE/node_modules/.setup-stamp"
if [ ! -x "$HERE/node_modules/.bin/pouchdb-server" ] || [ ! -f "$stamp" ] ||
  [ "$HERE/package.json" -nt "$stamp" ]; then
  echo "setup: npm install (pouchdb-server) into $HERE/node_modules" >&2
  (cd "$HERE" && npm install --no-audit --no-fund --loglevel=error >&2)
  touch "$stamp"
fi

# a quick check that the LevelDB binding loads on this machine
(cd "$HERE" && node -e "require('leveldown')" 2>/dev/null) || {
  echo "setup: pouchdb-server's LevelDB binding (leveldown) does not load with node $(node --version)" >&2
  exit 1
}

command -v perf >/dev/null || echo "setup: optional: apt-get install linux-perf for PERF=1 profiles" >&2
echo "setup: ready" >&2
