#!/usr/bin/env bash
# bench/files/setup.sh - installs what bench/files/run.sh needs. Idempotent. Debian
# packages through scripts/bootstrap.sh (nginx, rsync, and ferry's own); @tus/server, its
# file store and tus-js-client through npm into bench/files/node_modules, at the versions
# pinned in package.json. Nothing is downloaded by hand.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

"$REPO/scripts/bootstrap.sh" nginx-light rsync

stamp="$HERE/node_modules/.setup-stamp"
if [ ! -f "$stamp" ] || [ "$HERE/package.json" -nt "$stamp" ]; then
  echo "setup: npm install (@tus/server, @tus/file-store, tus-js-client) into $HERE/node_modules" >&2
  (cd "$HERE" && npm install --no-audit --no-fund --loglevel=error >&2)
  touch "$stamp"
fi
echo "setup: ready" >&2
