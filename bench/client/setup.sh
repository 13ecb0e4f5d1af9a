#!/usr/bin/env bash
# Installs the PouchDB side of the benchmark (package-lock.json) into bench/client/node_modules,
# once: again only when the lock file changes. Never committed.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.ferry-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error >&2
cp package-lock.json "$stamp"
