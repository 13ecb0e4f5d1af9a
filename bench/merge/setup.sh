#!/usr/bin/env bash
# bench/merge needs only what ferry's build needs, git, python3 and curl (all in
# scripts/bootstrap.sh). Idempotent.
set -euo pipefail
exec "$(cd "$(dirname "$0")/../.." && pwd)/scripts/bootstrap.sh"
