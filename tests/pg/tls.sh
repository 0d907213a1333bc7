#!/usr/bin/env bash
# TLS to PostgreSQL (issue 23): the sslmode/sslrootcert matrix against real servers.
#
# Makes a CA, a server certificate for the host name `localhost` signed by it, and a second,
# unrelated CA (openssl CLI); starts a throwaway cluster with ssl = on and that certificate,
# and a second one without TLS (tests/pg/cluster.sh). The role batchdb_tls may log in only
# over TLS (pg_hba: hostssl … scram-sha-256, hostnossl … reject), with a password, so a
# connection that works proves it was encrypted, and every output is checked for the password.
#
# Cases (each a CLI call; the CLI goes through Db::open like every binding):
#   verify-full, right CA, host localhost          -> works, and a `run` (which also opens the
#                                                     listener's connection) completes a job
#   verify-full, right CA, host 127.0.0.1          -> refused: the certificate names localhost
#   verify-full, wrong CA                          -> refused: the chain is not trusted
#   verify-ca, right CA, host 127.0.0.1            -> works (chain only, no host name check)
#   require (no root): TLS server                  -> works
#   require: server without TLS                    -> refused
#   prefer: server without TLS                     -> works (falls back)
#   disable: TLS-only role                         -> refused by the server (no TLS sent)
#   verify-full, sslrootcert missing file          -> a clear error naming the file
# Prints "pg-tls: N passed, M failed"; exits non-zero on any failure or when no server starts.
# tests/pg/run.sh runs it with BATCHDB_BIN set to the CLI it built; alone it builds the CLI.
# Ports: from $BATCHDB_PG_PORT (default 54329) on, the first free ones (tests/pg/cluster.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."

PASS=0
FAILS=0
ok() { echo "ok: $*"; PASS=$((PASS + 1)); }
bad() { echo "FAILED: $*"; FAILS=$((FAILS + 1)); }
finish() {
    echo "pg-tls: $PASS passed, $FAILS failed"
    [ "$FAILS" -eq 0 ]
    exit $?
}

# pkg-config and libssl-dev for the build, the openssl command for the certificates.
bash tests/build-deps.sh || { bad "the build dependencies (tests/build-deps.sh)"; finish; }

B=${BATCHDB_BIN:-target/debug/batchdb}
if [ -z "${BATCHDB_BIN:-}" ]; then
    cargo build --features postgres --bin batchdb -q || { bad "build"; finish; }
fi

CERTS=$(mktemp -d /tmp/batchdb-tls.XXXXXX)
chmod 755 "$CERTS"
cleanup_certs() { rm -rf "$CERTS"; }

mkcerts() {
    cd "$CERTS" || return 1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=batchdb test CA" \
        -keyout ca.key -out ca.crt -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" &&
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=some other CA" \
            -keyout other.key -out other.crt -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" &&
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr &&
        printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf &&
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile ext.cnf -out server.crt
}
(mkcerts >"$CERTS/openssl.log" 2>&1) || { cat "$CERTS/openssl.log"; bad "making the certificates"; cleanup_certs; finish; }

PW='tls-pw-5e3f9a'
PG_WHO=tests/pg/tls.sh
PG_FSYNC=off
PG_HBA_EXTRA="hostssl all batchdb_tls 127.0.0.1/32 scram-sha-256
hostnossl all batchdb_tls 127.0.0.1/32 reject"

# The server without TLS first: its variables are kept, then the TLS one is started.
PG_SSL_CERT= PG_SSL_KEY=
source tests/pg/cluster.sh
if ! pg_cluster_start; then
    bad "no server without TLS: $PG_ERROR"
    cleanup_certs
    finish
fi
PLAIN_PORT=$PG_PORT PLAIN_BIN=$PG_BIN PLAIN_DATA=$PG_DATA PLAIN_TMP=$PG_TMP
PG_DATA= PG_TMP=
PG_PORT=$((PLAIN_PORT + 1))
PG_SSL_CERT="$CERTS/server.crt" PG_SSL_KEY="$CERTS/server.key"
stop_all() {
    pg_cluster_stop
    pg_as "$PLAIN_BIN/pg_ctl" -D "$PLAIN_DATA" -m immediate stop >/dev/null 2>&1
    rm -rf "$PLAIN_TMP"
    cleanup_certs
}
if ! pg_cluster_start; then
    bad "no server with TLS: $PG_ERROR"
    stop_all
    finish
fi
trap stop_all EXIT
TLS_PORT=$PG_PORT
chmod 644 "$CERTS"/*.crt

"$PG_PSQL" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$TLS_PORT" -U postgres -d postgres <<SQL >/dev/null || { bad "creating the TLS role"; finish; }
CREATE ROLE batchdb_tls LOGIN PASSWORD '$PW';
CREATE DATABASE batchdb_tls OWNER batchdb_tls;
SQL

url() { # host port database user-part query
    echo "postgres://$4@$1:$2/$3?schema=tls_case&$5"
}
TLS_USER="batchdb_tls:$PW"

# expect_ok NAME URL [ARGS…]: the CLI call works; its output never shows the password.
expect_ok() {
    local name=$1 u=$2
    shift 2
    local out
    if out=$("$B" --db "$u" "$@" 2>&1); then
        if [[ "$out" == *"$PW"* ]]; then bad "$name: the output shows the password"; else ok "$name"; fi
    else
        bad "$name: expected success, got: $out"
    fi
}
# expect_err NAME PATTERN URL: the CLI call fails, its message matches PATTERN (grep -E -i)
# and never shows the password.
expect_err() {
    local name=$1 pat=$2 u=$3
    local out
    if out=$("$B" --db "$u" stats 2>&1); then
        bad "$name: expected an error, it worked: $out"
    elif [[ "$out" == *"$PW"* ]]; then
        bad "$name: the error shows the password"
    elif ! grep -Eqi "$pat" <<<"$out"; then
        bad "$name: the error does not say why (wanted /$pat/): $out"
    else
        ok "$name ($(grep -Eio "refused: [^;]*|server does not support TLS|pg_hba[^)]*|sslrootcert [^:]* is not a readable file|sslmode \"[a-z]*\" is not" <<<"$out" | head -1))"
    fi
}

CA="sslrootcert=$CERTS/ca.crt"
OTHER="sslrootcert=$CERTS/other.crt"

# verify-full, the right CA and host name: a job added and run (the run's waits go through the
# listener's connection, which the TLS-only role also admits only over TLS).
U=$(url localhost "$TLS_PORT" batchdb_tls "$TLS_USER" "sslmode=verify-full&$CA")
expect_ok "verify-full, right CA and host name: add" "$U" add 'echo over tls'
if out=$(timeout 120 "$B" --db "$U" run --until-empty -- sh 2>&1); then
    got=$("$B" --db "$U" list result 2>&1 | head -1)
    if [[ "$got" == *'"hash"'* ]] && [[ "$out$got" != *"$PW"* ]]; then
        ok "verify-full: run completes the job"
    else
        bad "verify-full: run left no result: $out $got"
    fi
else
    bad "verify-full: run failed: $out"
fi
# The listener's connection is made over TLS too: with a waiting run open, the server lists
# every batchdb connection of the role as encrypted.
"$B" --db "$U" run -- sh >/dev/null 2>&1 &
RUN_PID=$!
listening=
for _ in $(seq 1 300); do
    n=$("$PG_PSQL" -tA -h 127.0.0.1 -p "$TLS_PORT" -U postgres -d postgres -c \
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.usename = 'batchdb_tls' AND a.query ILIKE 'LISTEN%' AND s.ssl" 2>/dev/null)
    if [ "${n:-0}" -ge 1 ]; then listening=1; break; fi
    sleep 0.2
done
kill "$RUN_PID" 2>/dev/null
wait "$RUN_PID" 2>/dev/null
if [ -n "$listening" ]; then ok "the listener's connection is encrypted"; else bad "no encrypted LISTEN connection seen"; fi

expect_err "verify-full via 127.0.0.1 (certificate says localhost)" "refused: .*(hostname|IP address) mismatch" \
    "$(url 127.0.0.1 "$TLS_PORT" batchdb_tls "$TLS_USER" "sslmode=verify-full&$CA")"
expect_err "verify-full with the wrong CA" "refused: unable to get local issuer" \
    "$(url localhost "$TLS_PORT" batchdb_tls "$TLS_USER" "sslmode=verify-full&$OTHER")"
expect_ok "verify-ca via 127.0.0.1 (chain only)" \
    "$(url 127.0.0.1 "$TLS_PORT" batchdb_tls "$TLS_USER" "sslmode=verify-ca&$CA")" stats
expect_err "verify-ca with the wrong CA" "refused: unable to get local issuer" \
    "$(url 127.0.0.1 "$TLS_PORT" batchdb_tls "$TLS_USER" "sslmode=verify-ca&$OTHER")"
expect_ok "require, no root certificate, TLS server" \
    "$(url 127.0.0.1 "$TLS_PORT" batchdb_tls "$TLS_USER" "sslmode=require")" stats
expect_err "require against a server without TLS" "tls|ssl" \
    "$(url 127.0.0.1 "$PLAIN_PORT" postgres postgres "sslmode=require")"
expect_ok "prefer against a server without TLS (falls back)" \
    "$(url 127.0.0.1 "$PLAIN_PORT" postgres postgres "sslmode=prefer")" stats
expect_ok "no sslmode (prefer) against the TLS server, TLS-only role" \
    "$(url 127.0.0.1 "$TLS_PORT" batchdb_tls "$TLS_USER" "")" stats
expect_err "disable, TLS-only role: the server refuses" "pg_hba|no encryption|rejects" \
    "$(url 127.0.0.1 "$TLS_PORT" batchdb_tls "$TLS_USER" "sslmode=disable")"
expect_err "verify-full, sslrootcert names a missing file" "sslrootcert .*/nope.crt" \
    "$(url localhost "$TLS_PORT" batchdb_tls "$TLS_USER" "sslmode=verify-full&sslrootcert=$CERTS/nope.crt")"
expect_err "an unknown sslmode" "sslmode \"verify\" is not one of" \
    "$(url localhost "$TLS_PORT" batchdb_tls "$TLS_USER" "sslmode=verify")"

finish
