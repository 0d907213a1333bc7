#!/usr/bin/env bash
# The C test suite: builds the release library, compiles every tests/c/test_*.c against
# include/batchdb.h with -std=c11 -Wall -Wextra -Wpedantic -Werror, and runs each program
#   1. linked to libbatchdb.so, under valgrind (memory errors and definite/indirect leaks fail);
#   2. linked to libbatchdb.a, built with -fsanitize=address,undefined (LeakSanitizer on).
# A probe that leaks a handle on purpose must be rejected by both, or the suite fails.
# Usage: tests/c/run.sh          (from anywhere; exits non-zero on any failure)
set -uo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="$root/target/ctest"
mkdir -p "$out"
lib="$root/target/release"
CC="${CC:-cc}"
CFLAGS=(-std=c11 -Wall -Wextra -Wpedantic -Werror -g -I"$root/include")

echo "== cargo build --release (library and header)"
cargo build --release --lib || { echo "c: 0 passed, 1 failed"; exit 1; }

if ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y valgrind >/dev/null || { apt-get update >/dev/null && apt-get install -y valgrind >/dev/null; }
    fi
fi
command -v valgrind >/dev/null 2>&1 || { echo "valgrind is missing (install it, or run as root)"; exit 1; }

passed=0
failed=0
VALGRIND=(valgrind -q --error-exitcode=101 --leak-check=full --errors-for-leak-kinds=definite,indirect
          --show-leak-kinds=definite,indirect)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=102:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=103"

# Runs one built program; counts its PASS/FAIL lines, and a bad exit status as one failure.
run_program() {
    local label="$1"; shift
    local log="$out/$label.log"
    "$@" >"$log" 2>&1
    local status=$?
    local p f
    p=$(grep -c '^PASS ' "$log")
    f=$(grep -c '^FAIL ' "$log")
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$status" -ne 0 ] || [ "$f" -ne 0 ] || [ "$p" -eq 0 ]; then
        [ "$f" -eq 0 ] && failed=$((failed + 1))
        echo "-- $label FAILED (exit status $status):"
        cat "$log"
    else
        echo "-- $label: $p passed"
    fi
}

# Expects a program to be rejected by a checker (non-zero exit status).
expect_rejected() {
    local label="$1"; shift
    if "$@" >"$out/$label.log" 2>&1; then
        echo "-- $label FAILED: the leak checker did not report the leaked handle"
        failed=$((failed + 1))
    else
        echo "-- $label: leak detected, as it must be"
        passed=$((passed + 1))
    fi
}

tests=(tests/c/test_*.c)

echo "== valgrind (libbatchdb.so)"
for src in "${tests[@]}" tests/c/leak_probe.c; do
    name="$(basename "$src" .c)"
    if ! "$CC" "${CFLAGS[@]}" "$src" -o "$out/$name" -L"$lib" -lbatchdb -Wl,-rpath,"$lib" -lpthread; then
        echo "-- $name: does not compile"; failed=$((failed + 1)); continue
    fi
    if [ "$name" = leak_probe ]; then
        expect_rejected "valgrind-leak-probe" "${VALGRIND[@]}" "$out/$name"
    else
        run_program "valgrind-$name" "${VALGRIND[@]}" "$out/$name"
    fi
done

echo "== AddressSanitizer + UndefinedBehaviorSanitizer (libbatchdb.a)"
for src in "${tests[@]}" tests/c/leak_probe.c; do
    name="$(basename "$src" .c)"
    if ! "$CC" "${CFLAGS[@]}" -fsanitize=address,undefined -fno-omit-frame-pointer "$src" \
        -o "$out/$name.asan" "$lib/libbatchdb.a" -lpthread -ldl -lm; then
        echo "-- $name (asan): does not compile"; failed=$((failed + 1)); continue
    fi
    if [ "$name" = leak_probe ]; then
        expect_rejected "asan-leak-probe" "$out/$name.asan"
    else
        run_program "asan-$name" "$out/$name.asan"
    fi
done

echo "c: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
