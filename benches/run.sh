#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md in one command:
#
#   bash benches/run.sh            full run (about 10 minutes); writes benches/results/results.json,
#                                  results.md (the table) and the SVG plots beside them
#   bash benches/run.sh --smoke    every workload tiny (seconds), for CI; writes to
#                                  ${TMPDIR:-/tmp}/batchdb-bench-smoke/ and leaves the tree alone
#
# Any further arguments go to the harness (e.g. --only P4,P9). It builds: the library (for
# libbatchdb.so and libbatchdb.a), the C and Go cycle programs (P6, benches/c and benches/go),
# the Node binding's dependencies for benches/node/cycle.js (P6, npm ci in bindings/node), the
# effectum peer (P8, its own crate), the original JavaScript batchdb (P7, npm ci in
# benches/original), and the harness itself (with its postgres feature, for P10). For P10 it
# starts a throwaway PostgreSQL server with fsync on (tests/pg/cluster.sh, installing Debian's
# postgresql when root and missing; port $BATCHDB_BENCH_PG_PORT, default 54339) and stops it
# on exit.
# A peer that cannot be built is reported in the results, never invented.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

smoke=()
if [[ "${1:-}" == "--smoke" ]]; then
    smoke=(--smoke)
    shift
    out_dir="${TMPDIR:-/tmp}/batchdb-bench-smoke"
else
    out_dir="$root/benches/results"
fi
mkdir -p "$out_dir"
# The peers' programs and build logs: in the (ignored) target folder, never in benches/results.
build_dir="${CARGO_TARGET_DIR:-$root/target}/bench-peers"
mkdir -p "$build_dir"
peers=()

echo "== building the library (release)" >&2
cargo build --release --quiet
lib_dir="${CARGO_TARGET_DIR:-$root/target}/release"

echo "== building the C cycle program (P6)" >&2
if cc -O2 -Wall -Wextra -I "$root/include" benches/c/cycle.c -L "$lib_dir" -lbatchdb \
        -Wl,-rpath,"$lib_dir" -o "$build_dir/cycle-c"; then
    peers+=(--c-cycle "$build_dir/cycle-c")
    peers+=(--cli "$lib_dir/batchdb")
else
    echo "   (C cycle program did not build: P6-C is reported as not measured)" >&2
fi

echo "== building the Go cycle program (P6)" >&2
# cgo links target/release/libbatchdb.a (bindings/go with -tags batchdb_dev), built just above.
# The old binary goes first: go build leaves an output whose Go inputs are unchanged as it is,
# and the library it links is not one of them (a stale program once refused a file of a newer
# schema version than the library it was linked with).
rm -f "$build_dir/cycle-go"
if ! command -v go >/dev/null; then
    peers+=(--go-cycle-status "go is not installed")
elif (cd benches/go && go build -tags batchdb_dev -o "$build_dir/cycle-go" . 2>"$build_dir/go-build.log"); then
    peers+=(--go-cycle "$build_dir/cycle-go")
else
    peers+=(--go-cycle-status "go build failed: $(tail -3 "$build_dir/go-build.log" | tr '\n' ' ')")
fi

echo "== installing the Node binding's dependencies (P6)" >&2
# The binding loads target/release/libbatchdb.so; koffi comes from npm ci (bindings/node).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    peers+=(--node-cycle-status "node or npm is not installed")
elif (cd bindings/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>"$build_dir/npm-node.log"); then
    peers+=(--node-cycle "$root/benches/node/cycle.js")
else
    peers+=(--node-cycle-status "npm ci in bindings/node failed: $(tail -3 "$build_dir/npm-node.log" | tr '\n' ' ')")
fi

echo "== building the effectum peer (P8)" >&2
if (cd benches/effectum && cargo build --release --quiet); then
    peers+=(--effectum "$root/benches/effectum/target/release/batchdb-bench-effectum")
else
    echo "   (effectum did not build: P8 is reported as not measured)" >&2
fi

echo "== installing the original JavaScript batchdb (P7)" >&2
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    peers+=(--original-status "node or npm is not installed")
elif (cd benches/original && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>"$build_dir/npm.log"); then
    peers+=(--original "$root/benches/original")
else
    peers+=(--original-status "npm ci failed: $(tail -3 "$build_dir/npm.log" | tr '\n' ' ')")
fi

echo "== building the harness" >&2
# In its own target folder: the library's rlib has no hash in its file name (the crate is also a
# cdylib and a staticlib), so a build of the library without the postgres feature in the shared
# folder would silently replace the one the harness links with it (P10 then fails to open).
# With its postgres feature (P10) when that builds, else without, and P10 says why.
harness_target="$root/target/bench"
pg_feature=1
# The feature's TLS needs pkg-config and libssl-dev to build; installed when missing (as root).
bash tests/build-deps.sh || true
if ! (cd benches/harness && cargo build --release --quiet --features postgres --target-dir "$harness_target" \
        2>"$build_dir/harness-pg-build.log"); then
    pg_feature=0
    (cd benches/harness && cargo build --release --quiet --target-dir "$harness_target")
fi

echo "== starting a PostgreSQL server, fsync on (P10)" >&2
# A throwaway cluster (tests/pg/cluster.sh; stopped and removed on exit), on its own port so
# that it never meets tests/pg/run.sh's. fsync on: the figures must include real durability.
if [[ $pg_feature == 0 ]]; then
    peers+=(--pg-status "the harness did not build with its postgres feature: $(tail -3 "$build_dir/harness-pg-build.log" | tr '\n' ' ')")
else
    PG_WHO=benches/run.sh
    PG_FSYNC=on
    PG_PORT=${BATCHDB_BENCH_PG_PORT:-54339}
    source tests/pg/cluster.sh
    if pg_cluster_start; then
        peers+=(--pg "$PG_URL")
    else
        peers+=(--pg-status "PostgreSQL could not be started: $PG_ERROR")
    fi
fi

echo "== running" >&2
# Not exec: the EXIT trap must still stop the PostgreSQL server afterwards.
"$harness_target/release/batchdb-bench" "${smoke[@]}" \
    --out "$out_dir/results.json" --plots "$out_dir" --scratch "${TMPDIR:-/tmp}/batchdb-bench-scratch" \
    "${peers[@]}" "$@"
