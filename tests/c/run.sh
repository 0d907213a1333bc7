#!/usr/bin/env bash
# The C test suite: compiles every tests/c/test_*.c against include/batchdb.h with
# -std=c11 -Wall -Wextra -Wpedantic -Werror, and runs each program in up to three passes:
#   valgrind  linked to libbatchdb.so, under valgrind (memory errors and definite/indirect
#             leaks fail);
#   asan      linked to libbatchdb.a, built with -fsanitize=address,undefined (LeakSanitizer on);
#   plain     built -O2 against libbatchdb.so with no checker. This pass also runs the
#             tests/c/timing_*.c programs, whose time and CPU bounds valgrind and the
#             sanitizers would distort.
# A probe that leaks a handle on purpose must be rejected by both checkers, or the suite fails.
# Every pass counts into one last line, "c: N passed, M failed".
#
# The programs use temporary files, or, when BATCHDB_TEST_PG holds a PostgreSQL URL, a fresh
# schema per test on that server (the library must then be built with --features postgres).
#
# Usage: tests/c/run.sh [--lib DIR] [--passes valgrind,asan,plain] [--out DIR]
#   --lib DIR     (or BATCHDB_C_LIB) link the libbatchdb.so/.a already built in DIR, instead of
#                 running `cargo build --release --lib` and using target/release (with
#                 BATCHDB_TEST_PG set: built with --features postgres into target/pg/release);
#   --passes LIST (or BATCHDB_C_PASSES) the passes to run, comma-separated; default all three;
#   --out DIR     (or BATCHDB_C_OUT) where programs and logs go; default target/ctest.
# Runs from anywhere; exits non-zero on any failure.
set -uo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
lib="${BATCHDB_C_LIB:-}"
passes="${BATCHDB_C_PASSES:-valgrind,asan,plain}"
out="${BATCHDB_C_OUT:-$root/target/ctest}"
while [ $# -gt 0 ]; do
    case "$1" in
        --lib) lib="$2"; shift 2 ;;
        --passes) passes="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "tests/c/run.sh: unknown argument $1 (see the usage at the top of the file)" >&2
           echo "c: 0 passed, 1 failed"; exit 2 ;;
    esac
done
for pass in ${passes//,/ }; do
    case "$pass" in
        valgrind|asan|plain) ;;
        *) echo "tests/c/run.sh: unknown pass $pass (valgrind, asan, plain)" >&2
           echo "c: 0 passed, 1 failed"; exit 2 ;;
    esac
done
wants() { [[ ",$passes," == *",$1,"* ]]; }
mkdir -p "$out"
CC="${CC:-cc}"
CFLAGS=(-std=c11 -Wall -Wextra -Wpedantic -Werror -g -I"$root/include")

if [ -z "$lib" ] && [ -n "${BATCHDB_TEST_PG:-}" ]; then
    # The default build has no PostgreSQL backend; keep target/release the default build.
    lib="$root/target/pg/release"
    echo "== cargo build --release --features postgres (into target/pg)"
    bash tests/build-deps.sh || { echo "c: 0 passed, 1 failed"; exit 1; }
    CARGO_TARGET_DIR="$root/target/pg" cargo build --release --lib --features postgres \
        || { echo "c: 0 passed, 1 failed"; exit 1; }
elif [ -z "$lib" ]; then
    lib="$root/target/release"
    echo "== cargo build --release (library and header)"
    cargo build --release --lib || { echo "c: 0 passed, 1 failed"; exit 1; }
fi
lib="$(cd "$lib" && pwd)" || { echo "c: 0 passed, 1 failed"; exit 1; }
if [ -n "${BATCHDB_TEST_PG:-}" ]; then
    echo "== against PostgreSQL (BATCHDB_TEST_PG), library from $lib"
fi
# A library built with the postgres feature links OpenSSL (its TLS): the shared one names it
# itself, the archive needs it on the link line.
STATIC_LIBS=(-lpthread -ldl -lm)
if readelf -d "$lib/libbatchdb.so" 2>/dev/null | grep -q 'NEEDED.*libssl'; then
    STATIC_LIBS+=(-lssl -lcrypto)
fi

if wants valgrind && ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y valgrind >/dev/null || { apt-get update >/dev/null && apt-get install -y valgrind >/dev/null; }
    fi
    command -v valgrind >/dev/null 2>&1 || { echo "valgrind is missing (install it, or run as root)"; exit 1; }
fi

passed=0
failed=0
VALGRIND=(valgrind -q --error-exitcode=101 --leak-check=full --errors-for-leak-kinds=definite,indirect
          --show-leak-kinds=definite,indirect)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=102:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=103"

# Runs one built program; counts its PASS/FAIL lines, and a bad exit status as one failure.
# SKIP lines (a test that cannot apply to this backend) count as neither. For a program that
# passed, whatever else it printed is shown: the skips, and the timing programs' figures.
run_program() {
    local label="$1"; shift
    local log="$out/$label.log"
    "$@" >"$log" 2>&1
    local status=$?
    local p f s
    p=$(grep -c '^PASS ' "$log")
    f=$(grep -c '^FAIL ' "$log")
    s=$(grep -c '^SKIP ' "$log")
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$status" -ne 0 ] || [ "$f" -ne 0 ] || [ "$p" -eq 0 ]; then
        [ "$f" -eq 0 ] && failed=$((failed + 1))
        echo "-- $label FAILED (exit status $status):"
        cat "$log"
    else
        if [ "$s" -gt 0 ]; then echo "-- $label: $p passed, $s skipped"; else echo "-- $label: $p passed"; fi
        grep -v '^PASS ' "$log" | sed 's/^/   /'
    fi
}

# Expects the leak probe to be rejected by a checker: exit status `want` (the checker's own
# code). Any other failure, e.g. the probe unable to open its database, proves nothing.
expect_rejected() {
    local label="$1" want="$2"; shift 2
    "$@" >"$out/$label.log" 2>&1
    local status=$?
    if [ "$status" -eq "$want" ]; then
        echo "-- $label: leak detected, as it must be"
        passed=$((passed + 1))
    elif [ "$status" -eq 0 ]; then
        echo "-- $label FAILED: the leak checker did not report the leaked handle"
        failed=$((failed + 1))
    else
        echo "-- $label FAILED: exit status $status, not the checker's $want:"
        cat "$out/$label.log"
        failed=$((failed + 1))
    fi
}

tests=(tests/c/test_*.c)
timing=(tests/c/timing_*.c)

if wants valgrind; then
echo "== valgrind (libbatchdb.so)"
for src in "${tests[@]}" tests/c/leak_probe.c; do
    name="$(basename "$src" .c)"
    if ! "$CC" "${CFLAGS[@]}" "$src" -o "$out/$name" -L"$lib" -lbatchdb -Wl,-rpath,"$lib" -lpthread; then
        echo "-- $name: does not compile"; failed=$((failed + 1)); continue
    fi
    if [ "$name" = leak_probe ]; then
        expect_rejected "valgrind-leak-probe" 101 "${VALGRIND[@]}" "$out/$name"
    else
        run_program "valgrind-$name" "${VALGRIND[@]}" "$out/$name"
    fi
done
fi

if wants asan; then
echo "== AddressSanitizer + UndefinedBehaviorSanitizer (libbatchdb.a)"
for src in "${tests[@]}" tests/c/leak_probe.c; do
    name="$(basename "$src" .c)"
    if ! "$CC" "${CFLAGS[@]}" -fsanitize=address,undefined -fno-omit-frame-pointer "$src" \
        -o "$out/$name.asan" "$lib/libbatchdb.a" "${STATIC_LIBS[@]}"; then
        echo "-- $name (asan): does not compile"; failed=$((failed + 1)); continue
    fi
    if [ "$name" = leak_probe ]; then
        expect_rejected "asan-leak-probe" 102 "$out/$name.asan"
    else
        run_program "asan-$name" "$out/$name.asan"
    fi
done
fi

if wants plain; then
echo "== plain, -O2 (libbatchdb.so): every test, and the timing programs"
for src in "${tests[@]}" "${timing[@]}"; do
    name="$(basename "$src" .c)"
    if ! "$CC" "${CFLAGS[@]}" -O2 "$src" -o "$out/$name.plain" -L"$lib" -lbatchdb -Wl,-rpath,"$lib" -lpthread; then
        echo "-- $name (plain): does not compile"; failed=$((failed + 1)); continue
    fi
    run_program "plain-$name" "$out/$name.plain"
done
fi

echo "c: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
