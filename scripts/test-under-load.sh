#!/usr/bin/env bash
# Runs `make test` RUNS times in a row (default 5) while one busy loop per core keeps every core
# at 100 %, and stops at the first failure. A test that passes only on an idle machine depends
# on timing luck: this is how we show ours do not (issue "Hardening", docs/operations.md).
#
#   scripts/test-under-load.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
logs=${CARGO_TARGET_DIR:-target}
mkdir -p "$logs"
cores=$(nproc)

# Build first (unloaded), so the runs measure tests, not the compiler.
cargo nextest run --workspace --no-run >/dev/null

burners=()
stop_burners() {
    for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_burners EXIT
for _ in $(seq "$cores"); do
    # Bounded: each burner ends on its own after two hours even if this script is killed.
    timeout 7200 sh -c 'while :; do :; done' &
    burners+=($!)
done

for run in $(seq "$runs"); do
    started=$(date +%s)
    if ! make test >"$logs/test-under-load-$run.log" 2>&1; then
        echo "run $run of $runs FAILED under load; see $logs/test-under-load-$run.log" >&2
        grep -E '^\s+(FAIL|SIGSEGV|TIMEOUT)' "$logs/test-under-load-$run.log" >&2 || true
        exit 1
    fi
    summary=$(grep -E 'Summary' "$logs/test-under-load-$run.log" | tail -1)
    echo "run $run of $runs passed in $(($(date +%s) - started)) s with $cores busy loops:$summary"
done
