#!/usr/bin/env bash
# Instruction counts as a regression check (issue 22): one `add` and one claim+complete cycle
# (durability normal, warmed up, averaged over 100 of each) counted by
# `valgrind --tool=callgrind`, compared with the committed figures in benches/instructions.txt.
# Fails when either grows more than 10% (BATCHDB_ICOUNT_TOLERANCE, in percent). Instructions,
# not time: the figure does not move with the machine's load.
#
#   bash benches/callgrind.sh           check (CI: the smoke step of tests/all.sh)
#   BLESS=1 bash benches/callgrind.sh   write the measured figures to benches/instructions.txt:
#                                       do this, and commit it, when a change is MEANT to cost
#                                       more (or when it got cheaper, to keep the gate tight)
#
# The program is the harness's second binary, batchdb-icount (benches/harness/src/icount.rs),
# built as benches/run.sh builds the harness (same folder, same features), so that after the
# smoke run nothing is rebuilt. Installs valgrind with apt-get when it is missing and this runs
# as root (a fresh CI machine), as tests/c/run.sh does.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
figures="$root/benches/instructions.txt"
tolerance=${BATCHDB_ICOUNT_TOLERANCE:-10}

if ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "benches/callgrind.sh: installing valgrind" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq valgrind >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq valgrind >/dev/null 2>&1; }
    fi
    command -v valgrind >/dev/null 2>&1 ||
        { echo "benches/callgrind.sh: valgrind is missing (needs root and apt-get to install it)" >&2; exit 1; }
fi

# As benches/run.sh: with the postgres feature when that builds (the library's rlib must not be
# rebuilt with other features in this folder), else without.
harness_target="$root/target/bench"
if ! (bash tests/build-deps.sh >/dev/null 2>&1 &&
        cd benches/harness && cargo build --release --quiet --features postgres --target-dir "$harness_target" 2>/dev/null); then
    (cd benches/harness && cargo build --release --quiet --target-dir "$harness_target")
fi
bin="$harness_target/release/batchdb-icount"
work=$(mktemp -d "${TMPDIR:-/tmp}/batchdb-callgrind.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Instructions per operation of one kind: the counted function's total over the ops counted.
count() {
    local kind=$1 out="$work/callgrind.$1.out" n
    n=$(valgrind --tool=callgrind --callgrind-out-file="$out" --collect-atstart=no \
        --toggle-collect="*icount_measured_$kind*" -q "$bin" "$kind" "$work/db-$kind" | awk '{print $2}')
    awk -v n="$n" '/^(summary|totals):/ { t = $2 } END { if (t == "" || n == "") exit 1; printf "%d\n", t / n }' "$out"
}

declare -A now
for kind in add cycle; do
    now[$kind]=$(count "$kind")
done

if [[ "${BLESS:-}" == 1 ]]; then
    {
        echo "# Instructions per operation, counted by benches/callgrind.sh under valgrind --tool=callgrind"
        echo "# (benches/harness/src/icount.rs: durability normal, warmed up, the average of 100). CI fails"
        echo "# when a figure grows more than 10%. Rewritten only by BLESS=1 bash benches/callgrind.sh."
        echo "# $(date -u +%Y-%m-%d) $(git rev-parse --short HEAD 2>/dev/null || echo '?'), valgrind $(valgrind --version | sed 's/valgrind-//')"
        for kind in add cycle; do
            echo "$kind ${now[$kind]}"
        done
    } >"$figures"
    echo "benches/callgrind.sh: wrote $figures: add ${now[add]}, cycle ${now[cycle]} instructions per op"
    exit 0
fi

[[ -f "$figures" ]] || { echo "benches/callgrind.sh: $figures is missing (BLESS=1 writes it)" >&2; exit 1; }
failed=0
for kind in add cycle; do
    was=$(awk -v k="$kind" '$1 == k { print $2 }' "$figures")
    if [[ -z "$was" ]]; then
        echo "benches/callgrind.sh: no '$kind' figure in $figures" >&2
        failed=1
        continue
    fi
    pct=$(awk -v a="${now[$kind]}" -v b="$was" 'BEGIN { printf "%+.1f", (a - b) * 100 / b }')
    if awk -v a="${now[$kind]}" -v b="$was" -v t="$tolerance" 'BEGIN { exit !(a > b * (1 + t / 100)) }'; then
        verdict="FAIL: more than +$tolerance%"
        failed=1
    else
        verdict=ok
    fi
    printf 'instructions per %-5s %10d (committed %d, %s%%) %s\n' "$kind" "${now[$kind]}" "$was" "$pct" "$verdict"
done
if [[ $failed != 0 ]]; then
    echo "benches/callgrind.sh: an operation costs more instructions than benches/instructions.txt allows;" \
        "if that is intended, run BLESS=1 bash benches/callgrind.sh and commit the figures" >&2
    exit 1
fi
