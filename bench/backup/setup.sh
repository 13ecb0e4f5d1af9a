#!/usr/bin/env bash
# bench/backup needs ferry's build packages plus the two peers it is measured against:
# restic and borgbackup (Debian packages). Idempotent.
set -euo pipefail
exec "$(cd "$(dirname "$0")/../.." && pwd)/scripts/bootstrap.sh" run restic borgbackup python3
