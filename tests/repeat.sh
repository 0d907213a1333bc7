#!/usr/bin/env bash
# Runs the Rust suites (`cargo test`) and the C suite (tests/c/run.sh) N times in a row and
# reports every failure by test name, to catch tests that fail by chance (issue 24).
# CI does not run it: it is the proof behind RELIABILITY.md's "repeated runs" figures.
#
#   bash tests/repeat.sh N            # N rounds on the machine as it is
#   bash tests/repeat.sh N --busy     # the same while a loop rebuilds another checkout from
#                                     # scratch with `cargo build --release`, loading both cores
#
# Environment: BATCHDB_C_PASSES picks the C passes (default valgrind,asan,plain, as CI);
# REPEAT_OUT is where the logs go (default target/repeat). Builds once before the first round.
# Ends with "repeat: N passed, M failed" (rounds) and exits non-zero when any round failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

rounds="${1:-}"
busy=0
[ "${2:-}" = --busy ] && busy=1
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]] || [ $# -gt 2 ] || { [ $# -eq 2 ] && [ $busy -eq 0 ]; }; then
    echo "usage: tests/repeat.sh N [--busy]" >&2
    exit 2
fi
out="${REPEAT_OUT:-$root/target/repeat}"
rm -rf "$out"
mkdir -p "$out"

echo "== building once: cargo test --no-run, cargo build --release --lib"
cargo test --no-run -q >"$out/build.log" 2>&1 && cargo build --release --lib -q >>"$out/build.log" 2>&1 || {
    cat "$out/build.log"
    echo "repeat: 0 passed, 1 failed"
    exit 1
}

load_pid=
stop_load() {
    if [ -n "$load_pid" ]; then
        kill -- -"$load_pid" 2>/dev/null
        wait "$load_pid" 2>/dev/null
        load_pid=
    fi
}
trap stop_load EXIT
if [ $busy -eq 1 ]; then
    # Another checkout of this commit, rebuilt from scratch over and over in its own folder
    # and process group (so that stop_load ends cargo and every rustc under it).
    other="$out/other-checkout"
    git -c advice.detachedHead=false clone -q --no-hardlinks "$root" "$other" || { echo "repeat: cannot clone for --busy" >&2; exit 1; }
    set -m
    (
        cd "$other"
        while true; do
            CARGO_TARGET_DIR="$other/target" cargo build --release -q >/dev/null 2>&1
            rm -rf "$other/target"
        done
    ) &
    load_pid=$!
    set +m
    echo "== load: rebuilding $other from scratch in a loop (process group $load_pid)"
fi

declare -A failures=()
failed_rounds=0
for ((i = 1; i <= rounds; i++)); do
    started=$(date +%s)
    rlog="$out/round-$i-rust.log"
    clog="$out/round-$i-c.log"
    cargo test --no-fail-fast >"$rlog" 2>&1
    rust_status=$?
    bash tests/c/run.sh --lib target/release --out "$out/ctest-$i" >"$clog" 2>&1
    c_status=$?

    names=()
    # Rust: "test NAME ... FAILED"; a test binary that died without naming a test counts as
    # its target ("error: test failed, to rerun pass `--test queue`").
    while read -r name; do names+=("rust $name"); done < <(sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' "$rlog")
    if [ $rust_status -ne 0 ] && [ ${#names[@]} -eq 0 ]; then
        while read -r target; do names+=("rust target $target"); done < <(
            sed -n 's/.*to rerun pass `\(.*\)`.*/\1/p' "$rlog")
        [ ${#names[@]} -eq 0 ] && names+=("rust (exit status $rust_status)")
    fi
    # C: "-- LABEL FAILED ..." per program, and "FAIL NAME" per test inside its log.
    while read -r label; do
        local_fails=$(sed -n 's/^FAIL \(.*\)$/\1/p' "$out/ctest-$i/$label.log" 2>/dev/null)
        if [ -n "$local_fails" ]; then
            while read -r t; do names+=("c $label $t"); done <<<"$local_fails"
        else
            names+=("c $label")
        fi
    done < <(sed -n 's/^-- \([^ ]*\) FAILED.*/\1/p' "$clog")
    if [ $c_status -ne 0 ] && ! grep -q '^-- .* FAILED' "$clog"; then
        names+=("c (exit status $c_status)")
    fi

    rust_line=$(grep -E '^test result:' "$rlog" | awk '{p+=$4; f+=$6} END {printf "%d passed, %d failed", p, f}')
    c_line=$(grep -E '^c: [0-9]+ passed' "$clog" | tail -1)
    took=$(($(date +%s) - started))
    if [ ${#names[@]} -eq 0 ]; then
        echo "round $i/$rounds: ok (rust ${rust_line}; ${c_line:-c: no summary}; ${took}s; load $(cut -d' ' -f1 /proc/loadavg))"
    else
        failed_rounds=$((failed_rounds + 1))
        echo "round $i/$rounds: FAILED (rust ${rust_line}; ${c_line:-c: no summary}; ${took}s; logs $rlog $clog)"
        for n in "${names[@]}"; do
            echo "   $n"
            failures["$n"]=$((${failures["$n"]:-0} + 1))
        done
    fi
done
stop_load

echo
if [ ${#failures[@]} -eq 0 ]; then
    echo "no test failed in $rounds rounds"
else
    echo "failures by test name (count of rounds):"
    for n in "${!failures[@]}"; do echo "   ${failures[$n]}  $n"; done | sort -rn
fi
echo "repeat: $((rounds - failed_rounds)) passed, $failed_rounds failed"
[ $failed_rounds -eq 0 ]
