#!/usr/bin/env bash
# bench/merge needs what ferry's build needs, git, python3 and curl (all in
# scripts/bootstrap.sh), plus hyperfine (wall times, mean +- sd) and valgrind (callgrind's
# instruction counts). Idempotent.
set -euo pipefail
exec "$(cd "$(dirname "$0")/../.." && pwd)/scripts/bootstrap.sh" test hyperfine valgrind
