#!/usr/bin/env bash
# Installs the npm packages the API tests drive (tests/api/js/package-lock.json), once:
# again only when the lock file changes.
set -euo pipefail
cd "$(dirname "$0")/../tests/api/js"
stamp=node_modules/.ferry-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
  exit 0
fi
echo "test-peers: npm ci in tests/api/js" >&2
npm ci --no-audit --no-fund --loglevel=error >&2
cp package-lock.json "$stamp"
