#!/bin/sh
# Runs every libFuzzer driver built in BUILD (default build-fuzz) for SECONDS each
# (default 60), starting from its seed corpus tests/fuzz/corpus/<driver>/ and the
# regression cases there. New inputs go to a scratch folder, not into the repository.
# A crash, leak or sanitizer report stops with the driver's output and the input that
# caused it (BUILD/fuzz-artifacts/); exit status 1.
set -eu
BUILD=${1:-build-fuzz}
SECONDS_EACH=${2:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
ARTIFACTS="$BUILD/fuzz-artifacts"
mkdir -p "$ARTIFACTS"
status=0
for driver in "$BUILD"/fuzz_*; do
    [ -x "$driver" ] || continue
    name=$(basename "$driver")
    seeds="$HERE/corpus/$name"
    scratch=$(mktemp -d)
    log="$ARTIFACTS/$name.log"
    if "$driver" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$name-" \
        "$scratch" "$seeds" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz $name: ${runs:-?} runs in ${SECONDS_EACH}s, no finding"
    else
        echo "fuzz $name: FAILED (log $log)" >&2
        tail -40 "$log" >&2
        status=1
    fi
    rm -rf "$scratch"
done
exit $status
