#!/usr/bin/env bash
# The core and queue suites against a real PostgreSQL server (issue 12).
#
# Starts a throwaway cluster in a temporary folder on 127.0.0.1:$BATCHDB_PG_PORT (default
# 54329), runs `cargo test --features postgres --test core --test queue` with BATCHDB_TEST_PG
# pointing at it (every test gets a fresh schema), smoke-tests the CLI against it, and stops
# the cluster on exit. Installs Debian's postgresql package when no server binaries are found
# (as root). Where no server can be started it says so and exits non-zero: it never passes
# without having run the suite.
#
# The cluster runs with fsync=off (it is thrown away): durability is not what this measures.
# Extra arguments go to cargo test, e.g. `tests/pg/run.sh -- --test-threads=1`.
set -uo pipefail
cd "$(dirname "$0")/../.."

PORT=${BATCHDB_PG_PORT:-54329}
fail() {
    echo "tests/pg/run.sh: FAILED: $*" >&2
    echo "pg: 0 passed, 1 failed"
    exit 1
}

find_bin() {
    for d in /usr/lib/postgresql/*/bin /usr/local/bin /usr/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" -o -x "$(dirname "$d")/bin/postgres" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

BIN=$(find_bin)
if [ -z "$BIN" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "tests/pg/run.sh: no PostgreSQL server found; installing Debian's postgresql package" >&2
        apt-get update -qq >/dev/null 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 \
            || fail "apt-get install postgresql did not work"
        BIN=$(find_bin)
    fi
fi
[ -n "$BIN" ] || fail "no PostgreSQL server (initdb, pg_ctl) on this machine, and it could not be installed"
PSQL=$(command -v psql || echo "$BIN/psql")
echo "tests/pg/run.sh: PostgreSQL from $BIN ($("$BIN/pg_ctl" --version))"

TMP=$(mktemp -d /tmp/batchdb-pg.XXXXXX) || fail "mktemp"
chmod 755 "$TMP"
AS=()
if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root.
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh postgres \
        || fail "cannot create the postgres user"
    chown postgres "$TMP"
    if command -v runuser >/dev/null; then AS=(runuser -u postgres --); else AS=(su postgres -s /bin/sh -c); fi
fi
as_pg() {
    if [ ${#AS[@]} -eq 0 ]; then "$@"; elif [ "${AS[0]}" = su ]; then "${AS[@]}" "$(printf '%q ' "$@")"; else "${AS[@]}" "$@"; fi
}

DATA="$TMP/data"
cleanup() {
    as_pg "$BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT

as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --no-sync >"$TMP/initdb.log" 2>&1 \
    || { cat "$TMP/initdb.log" >&2; fail "initdb"; }
# Loopback only; the role batchdb_pw must give its password (the redaction test tries a wrong one).
cat >"$DATA/pg_hba.conf" <<HBA
local all all trust
host all batchdb_pw 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
HBA
as_pg "$BIN/pg_ctl" -D "$DATA" -l "$TMP/server.log" -w -t 60 start \
    -o "-p $PORT -k $TMP -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" >/dev/null \
    || { cat "$TMP/server.log" >&2; fail "the server did not start on 127.0.0.1:$PORT"; }

"$PSQL" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres <<SQL || fail "creating the test roles"
CREATE ROLE batchdb_test LOGIN;
CREATE DATABASE batchdb_test OWNER batchdb_test;
CREATE ROLE batchdb_pw LOGIN PASSWORD 'the-right-password';
SQL

URL="postgres://batchdb_test@127.0.0.1:$PORT/batchdb_test"
echo "tests/pg/run.sh: server up at $URL"

LOG="$TMP/cargo-test.log"
BATCHDB_TEST_PG="$URL" cargo test --features postgres --test core --test queue "$@" 2>&1 | tee "$LOG"
STATUS=${PIPESTATUS[0]}

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
passed=$((passed + c_passed))
failed=$((failed + c_failed))
echo "pg: of which the C suite: $c_passed passed, $c_failed failed"
echo "pg: $passed passed, $failed failed"
[ "$STATUS" -eq 0 ] && [ "$CLI_STATUS" -eq 0 ] && [ "$C_STATUS" -eq 0 ]
