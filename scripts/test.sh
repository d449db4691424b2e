#!/usr/bin/env bash
# skybridge's one test command: dependencies, formatting, lints, tests, a short fuzz run.
#   FUZZ_SECONDS=15   seconds per fuzz target (0 skips fuzzing)
#   SKIP_DEPS=1       do not run scripts/install-deps.sh
# `--sanitizer none` lets cargo-fuzz build on the stable toolchain.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FUZZ_SECONDS=${FUZZ_SECONDS:-15}

declare -a SUMMARY=()
step() {
    local name=$1
    shift
    printf '\n==> %s\n' "$name"
    local start=$SECONDS
    if "$@"; then
        SUMMARY+=("ok    $name ($((SECONDS - start))s)")
    else
        local rc=$?
        SUMMARY+=("FAIL  $name (exit $rc)")
        print_summary
        printf '\nFAILED at step: %s (command: %s)\n' "$name" "$*" >&2
        exit 1
    fi
}
print_summary() {
    printf '\n==== summary ====\n'
    printf '%s\n' "${SUMMARY[@]}"
}

run_fuzz() {
    local targets
    targets=$(cargo fuzz list) || return 1
    [ -n "$targets" ] || { echo "no fuzz targets"; return 1; }
    for t in $targets; do
        mkdir -p "fuzz/corpus/$t"
        echo "--- fuzz $t (${FUZZ_SECONDS}s)"
        # libspeex prints one "notification: … corrupted" line per bad frame it is fed
        # (audio_decode feeds it nothing else): counted, not echoed. pipefail keeps the status.
        cargo fuzz run "$t" --sanitizer none -- -max_total_time="$FUZZ_SECONDS" "fuzz/corpus/$t" 2>&1 \
            | awk '/^notification: .*corrupted/ { n++; next } { print } END { if (n) print n " libspeex corrupt-stream notices not shown" }' \
            || { echo "fuzz target $t failed (see fuzz/artifacts/$t)"; return 1; }
    done
}

if [ "${SKIP_DEPS:-0}" != 1 ]; then
    step "install dependencies" "$ROOT/scripts/install-deps.sh"
fi
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo test" cargo test --workspace --no-fail-fast
if [ "$FUZZ_SECONDS" != 0 ]; then
    step "fuzz (${FUZZ_SECONDS}s per target)" run_fuzz
fi
print_summary
printf '\nall checks passed\n'
