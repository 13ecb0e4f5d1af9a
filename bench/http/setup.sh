#!/usr/bin/env bash
# bench/http/setup.sh - installs what bench/http/run.sh needs (wrk, nginx-light) and
# ferry's own build dependencies, through scripts/bootstrap.sh. Idempotent.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$HERE/../../scripts/bootstrap.sh" run wrk nginx-light
echo "setup: ready" >&2
