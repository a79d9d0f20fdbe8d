#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder that reads outside bytes (see docs/fuzzing.md).
#
#   scripts/fuzz.sh [--brief] [TARGET...]
#
# Builds fuzz/ with libFuzzer's coverage instrumentation on stable Rust, then runs each target
# (all by default) for FUZZ_SECONDS (300; 20 with --brief, as CI runs it) on one core. The
# corpus grows in <target dir>/fuzz/corpus/<target>, seeded from fuzz/seeds/<target>. Exits
# non-zero if any target crashed, after printing the path of each crashing input.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

seconds=${FUZZ_SECONDS:-300}
if [[ ${1:-} == --brief ]]; then
    seconds=${FUZZ_SECONDS:-20}
    shift
fi

# libfuzzer-sys compiles libFuzzer's C++ source.
if ! command -v c++ >/dev/null 2>&1; then
    if [[ $(id -u) != 0 ]]; then
        echo "fuzz: a C++ compiler is missing; install it with: sudo apt-get install -y g++" >&2
        exit 1
    fi
    echo "fuzz: installing g++" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
fi

# The flags cargo-fuzz passes (sancov with inline 8-bit counters, PC table, compare tracing),
# without its nightly-only sanitizer: everything here is safe Rust, so a bug shows as a panic.
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Clink-dead-code"
out=${CARGO_TARGET_DIR:-$repo/target}/fuzz
# --target keeps RUSTFLAGS off build scripts and proc macros, which cannot link sancov.
CARGO_TARGET_DIR=$out cargo build --manifest-path fuzz/Cargo.toml --release --target "$host" --bins
bin=$out/$host/release

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^keyledger-fuzz$')
fi

crashed=()
summary=()
for target in "${targets[@]}"; do
    corpus=$out/corpus/$target
    artifacts=$out/artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    log=$out/$target.log
    echo "== $target: ${seconds}s"
    status=0
    seeds=()
    [[ -d fuzz/seeds/$target ]] && seeds=("fuzz/seeds/$target")
    "$bin/$target" "$corpus" "${seeds[@]}" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 &
    pid=$!
    wait "$pid" || status=$?
    # The config target's input file (named by its process id; see fuzz_targets/config.rs).
    rm -f "/dev/shm/keyledger-fuzz-config-$pid.toml" "${TMPDIR:-/tmp}/keyledger-fuzz-config-$pid.toml"
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" || true
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    summary+=("$target: ${execs:-?} executions in ${seconds}s")
    if [[ $status -ne 0 ]]; then
        tail -n 40 "$log"
        input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        echo "!! $target crashed (exit $status); crashing input: ${input:-see $log}"
        crashed+=("$target: ${input:-$log}")
    fi
done

echo "== fuzzing summary"
printf '%s\n' "${summary[@]}"
if [[ ${#crashed[@]} -gt 0 ]]; then
    echo "== crashes (reproduce: $bin/<target> <input>)"
    printf '%s\n' "${crashed[@]}"
fi
echo "fuzz: $((${#targets[@]} - ${#crashed[@]})) passed, ${#crashed[@]} failed"
[[ ${#crashed[@]} -eq 0 ]]
