#!/usr/bin/env bash
# Mixed-load soak of the built CLI (not part of CI): for DURATION, one long-lived `batchdb run`
# (2 workers) runs jobs that adders queue (payloads of 1 B to 600 KiB, so both inline and
# chunked blobs), while other loops list, read results, prune + gc, retry failures and check,
# and a slow reader process comes and goes (a `get` of a large result held open through a
# pipe). Every INTERVAL seconds it samples the runner's RSS, open file descriptors and threads,
# and the WAL's and the file's size, into a CSV; at the end tests/soak/plot.js draws the SVG and
# judges the trend (exit status 1 when a series grows).
#
#   cargo build --release
#   nice bash tests/soak/soak.sh 30m            # the recorded run (RELIABILITY.md)
#   bash tests/soak/soak.sh 60s /tmp/soak-out   # a short one; the output folder is optional
#
# DURATION is seconds, or a number with s/m/h. Output: OUT/samples.csv, OUT/soak.svg and
# OUT/summary.txt (default OUT: tests/soak/out, which git ignores).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/target/release/batchdb"
[[ -x "$bin" ]] || { echo "soak: build first: cargo build --release" >&2; exit 2; }

dur="${1:-30m}"
case "$dur" in
    *h) secs=$((${dur%h} * 3600)) ;;
    *m) secs=$((${dur%m} * 60)) ;;
    *s) secs=${dur%s} ;;
    *) secs=$dur ;;
esac
[[ "$secs" =~ ^[0-9]+$ && "$secs" -ge 10 ]] || { echo "soak: DURATION must be 10 s or more: $dur" >&2; exit 2; }
out="${2:-$root/tests/soak/out}"
interval="${SOAK_INTERVAL:-5}"
mkdir -p "$out"
work="$(mktemp -d)"
db="$work/soak.db"
export BATCHDB_PATH="$db"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
end=$((SECONDS + secs))
running() { ((SECONDS < end)); }

# The runner: CMD reads the whole payload, fails one job in 7 (by payload length), and
# otherwise writes a result of half the payload's size.
"$bin" add 'warm up' >/dev/null
"$bin" run --workers 2 --lease-ms 10000 -- \
    bash -c 'n=$(wc -c); if ((n % 7 == 0)); then echo "soak: failing on purpose" >&2; exit 3; fi; head -c $((n / 2)) /dev/urandom' \
    >"$work/run.out" 2>"$work/run.err" &
runner=$!
pids+=("$runner")

# Adders: two loops, about 5 adds a second in all.
adder() {
    local i=0
    while running; do
        i=$((i + 1))
        case $((RANDOM % 4)) in
            0) "$bin" add "small job $BASHPID $i $RANDOM" >/dev/null ;;
            1) head -c $((RANDOM % 4000 + 1)) /dev/urandom | "$bin" add >/dev/null ;;
            *) head -c $(((RANDOM % 600 + 1) * 1024)) /dev/urandom | "$bin" add >/dev/null ;;
        esac
        sleep 0.4
    done
}
adder & pids+=($!)
adder & pids+=($!)

# Listers: every table, and stats.
(while running; do
    for k in job pending result fail; do "$bin" list "$k" >/dev/null; done
    "$bin" stats >/dev/null
    sleep 1
done) & pids+=($!)

# A reader that comes and goes: a `get` of the newest result through a pipe that drains it
# slowly, so the process holds its read open for a while, then exits.
(while running; do
    h=$("$bin" list result | tail -n 1 | sed -n 's/.*"hash": *"\([0-9a-f]*\)".*/\1/p')
    if [[ -n "$h" ]]; then
        # The result may be pruned and collected meanwhile: that is a clean "not found".
        "$bin" get "$h" 2>>"$work/reader.err" | (sleep 2; cat >/dev/null) || true
    fi
    sleep 1
done) & pids+=($!)

# Maintenance: prune what ended more than 10 s ago and gc, every 15 s; retry a few failures
# (they fail again: same payload) and cancel some pending instances; check once a minute.
(n=0; while running; do
    sleep 15
    n=$((n + 1))
    "$bin" prune --older-than 10s >/dev/null
    "$bin" gc >/dev/null
    "$bin" list fail | head -n 3 | sed -n 's/.*"key": *\["\([0-9a-f]*\)", *\([0-9]*\)\].*/\1 \2/p' |
        while read -r k c; do "$bin" retry "$k" "$c" >/dev/null 2>&1 || true; done
    if ((n % 4 == 0)); then
        "$bin" check >"$work/check.out" 2>&1 || { echo "soak: check failed:" >&2; cat "$work/check.out" >&2; exit 1; }
    fi
done) & maint=$!
pids+=("$maint")

# The sampler (in this shell).
csv="$out/samples.csv"
echo "t_s,rss_kib,fds,threads,wal_bytes,db_bytes,pending,results,fails,blobs" >"$csv"
start=$SECONDS
while running; do
    [[ -d /proc/$runner ]] || { echo "soak: the runner exited:" >&2; cat "$work/run.err" >&2; exit 1; }
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$runner/status")
    thr=$(awk '/^Threads:/ {print $2}' "/proc/$runner/status")
    fds=$(find "/proc/$runner/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    wal=$(stat -c %s "$db-wal" 2>/dev/null || echo 0)
    size=$(stat -c %s "$db")
    stats=$("$bin" stats)
    field() { sed -n "s/^$1: *//p" <<<"$stats"; }
    echo "$((SECONDS - start)),$rss,$fds,$thr,$wal,$size,$(field pending),$(field results),$(field fails),$(field blobs)" >>"$csv"
    sleep "$interval"
done

# Stop the load, then make sure the file is sound.
wait "$maint" || { echo "soak: the maintenance loop failed" >&2; exit 1; }
kill -TERM "$runner" 2>/dev/null || true
wait "$runner" 2>/dev/null || true
"$bin" check >"$work/check.out" 2>&1 || { echo "soak: final check failed:" >&2; cat "$work/check.out" >&2; exit 1; }
{
    echo "duration: ${secs} s, samples every ${interval} s: $(($(wc -l <"$csv") - 1))"
    echo "runner: $(tail -n 1 "$work/run.err")"
    echo "final stats: $("$bin" stats | tr '\n' ' ')"
    echo "reader errors: $(sort "$work/reader.err" 2>/dev/null | uniq -c | tr '\n' ';')"
    echo "final check: clean"
} >"$out/summary.txt"
node "$root/tests/soak/plot.js" "$csv" "$out/soak.svg" | tee -a "$out/summary.txt"
