#!/usr/bin/env bash
# Every test suite of batchdb, as README.md gives it: formatting and lints, the Rust suites,
# the C suite under valgrind, ASan/UBSan and plain (with its timing tests), the Go suite with
# -race (plus brief fuzzing, and a build against an installed library), the Node suite, and
# each cargo-fuzz target for 60 s.
# Installs what a fresh machine lacks (valgrind; koffi through npm ci; cargo-fuzz; pkg-config and
# libssl-dev for the postgres feature, tests/build-deps.sh). Exits non-zero on the first failing suite.
#
#   bash tests/all.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
step() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }

step "rust: fmt and clippy (default build, and with the postgres feature)"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# The postgres feature's TLS builds against OpenSSL: pkg-config and libssl-dev, installed when
# missing, before the first build with the feature (this one; benches and tests/pg follow).
bash tests/build-deps.sh
cargo clippy --all-targets --features postgres -- -D warnings

step "rust: release build (library, CLI)"
cargo build --release

step "rust: tests"
cargo test

step "c: tests under valgrind, ASan/UBSan, and plain -O2 with the timing programs"
bash tests/c/run.sh

step "go: vet and tests with -race (-tags batchdb_dev links target/release/libbatchdb.a)"
(cd bindings/go && go vet -tags batchdb_dev ./... && go test -tags batchdb_dev -race -count=1 ./...)

step "go: brief fuzzing of each row decoder, by count (RELIABILITY.md has the long runs)"
# A count, not a duration: Go 1.26's fuzz coordinator can report its own -fuzztime deadline as
# a failure ("context deadline exceeded", no crasher; golang/go#75804, fixed in Go 1.27). Each
# count is about 20 s here on 2 cores.
for run in FuzzRowJSON:200000x FuzzRowsFromC:2000x; do
    target=${run%%:*}
    (cd bindings/go && go test -tags batchdb_dev -run "^$target\$" -fuzz "^$target\$" -fuzztime="${run#*:}" .)
done

step "go: an outside module builds against an installed batchdb (temp PREFIX and GOPROXY)"
bash tests/go-install.sh

step "node: npm ci (koffi, pinned) and node --test (loads target/release/libbatchdb.so)"
(cd bindings/node && npm ci --no-audit --no-fund && npm test)

step "ui: the dashboard in Debian's chromium driven by playwright-core (installs chromium when missing)"
bash tests/ui/run.sh

step "fuzz: each cargo-fuzz target for 60 s from its seeds (nightly; installs cargo-fuzz when missing)"
bash tests/fuzz/run.sh 60

step "benchmarks: smoke run of every workload (BENCHMARKS.md has the full run)"
bash benches/run.sh --smoke

step "benchmarks: callgrind instruction counts of an add and a claim+complete, vs benches/instructions.txt"
# Fails when either grows more than 10%; BLESS=1 bash benches/callgrind.sh updates the figures.
bash benches/callgrind.sh

step "postgres: the core, queue, queues, pipelines and ui suites against a throwaway PostgreSQL cluster"
bash tests/pg/run.sh
