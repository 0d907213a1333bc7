#!/usr/bin/env bash
# Builds every cargo-fuzz target once and runs each for a bounded time from its committed seeds
# (tests/fuzz/seeds/TARGET). New corpus entries go to a temporary folder; a crash leaves its
# input in tests/fuzz/artifacts/TARGET/ and fails the script. Installs cargo-fuzz when missing
# (about 25 s with `--locked`, once per machine; CI can cache ~/.cargo/bin).
#
#   bash tests/fuzz/run.sh            # 60 s per target (CI)
#   bash tests/fuzz/run.sh 300        # seconds per target
#   FUZZ_TARGETS="damage" bash tests/fuzz/run.sh 600
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
secs="${1:-60}"
targets="${FUZZ_TARGETS:-ops damage cli_args}"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Each input opens a database in a fresh temporary folder: keep those in memory where we can.
if [[ -d /dev/shm && -w /dev/shm ]]; then export TMPDIR=/dev/shm; fi

# One build of every target (the crate is shared); `cargo fuzz run` then finds them built.
cargo +nightly fuzz build --fuzz-dir tests/fuzz

for t in $targets; do
    work="$(mktemp -d -p "${TMPDIR:-/tmp}")"
    echo "fuzz: $t for ${secs} s"
    # -timeout: one input taking 10 s counts as a hang; -rss_limit_mb bounds memory; a fixed
    # -seed (FUZZ_SEED, default 1) makes a run replay the same inputs in the same order, so a
    # failure in CI is met again by running this script with the same seed.
    cargo +nightly fuzz run --fuzz-dir tests/fuzz "$t" "$work" "tests/fuzz/seeds/$t" -- \
        -max_total_time="$secs" -seed="${FUZZ_SEED:-1}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2>"$work.log" || {
        # What failed and where its input is (libFuzzer's own lines, not cargo-fuzz's backtrace).
        grep -E -A2 'panicked at|ERROR: libFuzzer|Test unit written|SUMMARY' "$work.log" | head -n 40 >&2
        echo "fuzz: $t failed; replay: cargo +nightly fuzz run --fuzz-dir tests/fuzz $t ARTIFACT" >&2
        rm -rf "$work" "$work.log"
        exit 1
    }
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$work.log" | sed "s/^/fuzz: $t: /" || true
    echo "fuzz: $t: corpus $(find "$work" -type f | wc -l) inputs, no crash"
    rm -rf "$work" "$work.log"
done
