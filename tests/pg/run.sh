#!/usr/bin/env bash
# The core and queue suites against a real PostgreSQL server (issue 12).
#
# Starts a throwaway cluster in a temporary folder on 127.0.0.1:$BATCHDB_PG_PORT (default
# 54329), runs `cargo test --features postgres --test core --test queue` with BATCHDB_TEST_PG
# pointing at it (every test gets a fresh schema), smoke-tests the CLI against it, runs the
# TLS matrix (tests/pg/tls.sh, its own clusters with and without ssl = on), the multi-host
# network scenarios (tests/pg/netns.sh, issue 23) and the C suite, and
# stops the cluster on exit. Installs Debian's postgresql package when no server binaries are found
# (as root). Where no server can be started it says so and exits non-zero: it never passes
# without having run the suite.
#
# The cluster runs with fsync=off (it is thrown away): durability is not what this measures.
# Starting and stopping it is tests/pg/cluster.sh, shared with benches/run.sh (P10).
# Extra arguments go to cargo test, e.g. `tests/pg/run.sh -- --test-threads=1`.
set -uo pipefail
cd "$(dirname "$0")/../.."

fail() {
    echo "tests/pg/run.sh: FAILED: $*" >&2
    echo "pg: 0 passed, 1 failed"
    exit 1
}

# The postgres feature's TLS builds against OpenSSL: pkg-config and libssl-dev, installed
# when missing (tests/build-deps.sh, as root), before the first build with the feature.
bash tests/build-deps.sh || fail "the build dependencies of --features postgres are missing"

# Install (when needed), initdb and start; stopped and removed on exit (tests/pg/cluster.sh).
# The role batchdb_pw must give its password (the redaction test tries a wrong one).
PG_WHO=tests/pg/run.sh
PG_FSYNC=off
PG_HBA_EXTRA="host all batchdb_pw 127.0.0.1/32 scram-sha-256"
source tests/pg/cluster.sh
pg_cluster_start || fail "$PG_ERROR"
# The names the rest of this script uses.
PORT=$PG_PORT PSQL=$PG_PSQL BIN=$PG_BIN TMP=$PG_TMP DATA=$PG_DATA
as_pg() { pg_as "$@"; }

"$PSQL" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres <<SQL || fail "creating the test roles"
CREATE ROLE batchdb_test LOGIN;
CREATE DATABASE batchdb_test OWNER batchdb_test;
CREATE ROLE batchdb_pw LOGIN PASSWORD 'the-right-password';
SQL

URL="postgres://batchdb_test@127.0.0.1:$PORT/batchdb_test"
echo "tests/pg/run.sh: server up at $URL"

# A command that restarts the server (`pg_ctl restart -m fast`: every connection is ended), for
# tests/outage.rs: a run goes on through restarts (issue 23).
RESTART="$TMP/restart.sh"
{
    echo '#!/usr/bin/env bash'
    declare -p PG_AS
    declare -f pg_as
    echo "pg_as $(printf '%q ' "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 restart) >/dev/null"
} >"$RESTART"
chmod +x "$RESTART"

LOG="$TMP/cargo-test.log"
BATCHDB_TEST_PG="$URL" BATCHDB_TEST_PG_RESTART="$RESTART" cargo test --features postgres --test core --test queue --test queues --test pipelines --test ui --test outage "$@" 2>&1 | tee "$LOG"
STATUS=${PIPESTATUS[0]}
# The unit tests that only a postgres build has (URL and sslmode parsing, redaction against the
# driver's own reading); the default build's `cargo test` runs the rest.
cargo test --features postgres --lib -- store::postgres:: location:: 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || STATUS=1

# The CLI, built with the feature, against the same server.
CLI_STATUS=0
if cargo build --features postgres --bin batchdb -q 2>&1; then
    B=target/debug/batchdb
    DB="$URL?schema=cli_smoke"
    out=$("$B" --db "$DB" add 'echo hello from postgres' 2>&1) || { echo "$out"; CLI_STATUS=1; }
    out=$("$B" --db "$DB" run --until-empty -- sh 2>&1) || { echo "$out"; CLI_STATUS=1; }
    got=$("$B" --db "$DB" get "$("$B" --db "$DB" list result | head -1 | sed 's/.*"hash":"\([0-9a-f]*\)".*/\1/')" 2>&1)
    if [ "$got" = "hello from postgres" ]; then echo "cli against postgres: ok"; else echo "cli against postgres: got '$got'"; CLI_STATUS=1; fi
else
    CLI_STATUS=1
fi

# TLS (issue 23): the sslmode/sslrootcert matrix against its own two clusters, one with
# ssl = on and certificates the script makes (tests/pg/tls.sh), with the CLI built above.
TLS_LOG="$TMP/tls.log"
BATCHDB_BIN=target/debug/batchdb bash tests/pg/tls.sh 2>&1 | tee "$TLS_LOG"
TLS_STATUS=${PIPESTATUS[0]}
tls_line=$(grep -E '^pg-tls: [0-9]+ passed, [0-9]+ failed' "$TLS_LOG" | tail -1)
tls_passed=$(echo "$tls_line" | awk '{print $2+0}')
tls_failed=$(echo "$tls_line" | awk '{print $4+0}')
if [ "$TLS_STATUS" -ne 0 ] && [ "$tls_failed" -eq 0 ]; then tls_failed=1; fi

# Workers on three hosts (network namespaces) against a server on a fourth, through a cut link,
# server restarts, a stalled connection and added latency (issue 23; tests/pg/netns.sh, its own
# server). Skips, saying so, where namespaces cannot be made (not root). Bounded by timeout.
NETNS_LOG="$TMP/netns.log"
BATCHDB_BIN=target/debug/batchdb timeout 300 bash tests/pg/netns.sh 2>&1 | tee "$NETNS_LOG"
NETNS_STATUS=${PIPESTATUS[0]}
netns_line=$(grep -E '^pg-netns: [0-9]+ passed, [0-9]+ failed' "$NETNS_LOG" | tail -1)
netns_passed=$(echo "$netns_line" | awk '{print $2+0}')
netns_failed=$(echo "$netns_line" | awk '{print $4+0}')
if [ "$NETNS_STATUS" -ne 0 ] && [ "$netns_failed" -eq 0 ]; then netns_failed=1; fi

# The C suite (tests/c/run.sh: valgrind, ASan/UBSan, and the plain -O2 pass with the timing
# programs) against the same server, a fresh schema per test. The library is built with the
# feature into target/pg, so that target/release keeps the default build that the C, Go and
# Node suites link.
C_LOG="$TMP/c-suite.log"
C_STATUS=0
if CARGO_TARGET_DIR=target/pg cargo build --release --lib --features postgres 2>&1; then
    BATCHDB_TEST_PG="$URL" bash tests/c/run.sh --lib target/pg/release --out target/pg/ctest \
        --passes "${BATCHDB_PG_C_PASSES:-valgrind,asan,plain}" 2>&1 | tee "$C_LOG"
    C_STATUS=${PIPESTATUS[0]}
else
    echo "tests/pg/run.sh: the library did not build with --features postgres"
    C_STATUS=1
fi
c_line=$(grep -E '^c: [0-9]+ passed, [0-9]+ failed' "$C_LOG" 2>/dev/null | tail -1)
c_passed=$(echo "$c_line" | awk '{print $2+0}')
c_failed=$(echo "$c_line" | awk '{print $4+0}')
if [ "$C_STATUS" -ne 0 ] && [ "$c_failed" -eq 0 ]; then c_failed=1; fi

passed=$(grep -Eo '[0-9]+ passed' "$LOG" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$LOG" | awk '{s+=$1} END {print s+0}')
if [ "$STATUS" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
if [ "$CLI_STATUS" -ne 0 ]; then failed=$((failed + 1)); else passed=$((passed + 1)); fi
passed=$((passed + c_passed + tls_passed + netns_passed))
failed=$((failed + c_failed + tls_failed + netns_failed))
echo "pg: of which TLS: $tls_passed passed, $tls_failed failed"
echo "pg: of which the network scenarios: $netns_passed passed, $netns_failed failed"
echo "pg: of which the C suite: $c_passed passed, $c_failed failed"
echo "pg: $passed passed, $failed failed"
[ "$STATUS" -eq 0 ] && [ "$CLI_STATUS" -eq 0 ] && [ "$C_STATUS" -eq 0 ] && [ "$TLS_STATUS" -eq 0 ] && [ "$NETNS_STATUS" -eq 0 ]
