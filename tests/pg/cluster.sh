# A throwaway PostgreSQL cluster on 127.0.0.1, for tests/pg/run.sh and benches/run.sh.
# Source it, then call pg_cluster_start:
#
#   PG_PORT=54329 PG_FSYNC=off PG_WHO=tests/pg/run.sh source tests/pg/cluster.sh
#   pg_cluster_start || { echo "no server: $PG_ERROR"; exit 1; }
#   psql -h 127.0.0.1 -p "$PG_PORT" -U postgres ...      # or "$PG_URL"
#
# Settings (environment, read by pg_cluster_start):
#   PG_PORT        port on 127.0.0.1 (default: $BATCHDB_PG_PORT or 54329); when something
#                  already listens there, the next PG_PORT_TRIES - 1 ports are tried (the
#                  machine may be shared with other clusters); PG_PORT is set to the one used
#   PG_PORT_TRIES  how many ports to try (default 20; 1 for exactly PG_PORT)
#   PG_FSYNC       on|off (default off): the tests throw the cluster away and do not measure
#                  durability; benchmarks run it with fsync on, as a real server
#   PG_HBA_EXTRA   pg_hba.conf lines placed before the catch-all "trust" line for 127.0.0.1
#   PG_WHO         the name shown in messages (default: the sourcing script)
#   PG_SSL_CERT, PG_SSL_KEY
#                  a server certificate and its key (PEM): when both are set the server runs
#                  with ssl = on and them (copied into the cluster's folder, key mode 0600)
#
# Installs Debian's postgresql package when no server binaries are found (as root only).
# Runs the server as the `postgres` user when started as root (PostgreSQL refuses root),
# creating that user if needed. On success sets PG_BIN, PG_PSQL, PG_TMP, PG_DATA, PG_URL (the
# superuser `postgres` on database `postgres`), and installs an EXIT trap that stops the server
# and removes its folder (pg_cluster_stop; a script that sets its own EXIT trap calls it).
# On failure returns 1 with the reason in PG_ERROR, having cleaned up what it made.
# It never uses `exit`: the caller decides whether a missing server is fatal.

PG_PORT=${PG_PORT:-${BATCHDB_PG_PORT:-54329}}
PG_PORT_TRIES=${PG_PORT_TRIES:-20}
PG_FSYNC=${PG_FSYNC:-off}
PG_WHO=${PG_WHO:-$(basename "${0:-pg}")}
PG_ERROR=
PG_BIN=
PG_PSQL=
PG_URL=
PG_TMP=
PG_DATA=
PG_AS=()

pg_find_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin /usr/local/bin /usr/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" -o -x "$(dirname "$d")/bin/postgres" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

# Runs a command as the postgres user (when root), else as ourselves.
pg_as() {
    if [ ${#PG_AS[@]} -eq 0 ]; then
        "$@"
    elif [ "${PG_AS[0]}" = su ]; then
        "${PG_AS[@]}" "$(printf '%q ' "$@")"
    else
        "${PG_AS[@]}" "$@"
    fi
}

# The first port from PG_PORT on where nothing listens on 127.0.0.1.
pg_free_port() {
    local p
    for ((p = PG_PORT; p < PG_PORT + PG_PORT_TRIES; p++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

pg_cluster_stop() {
    if [ -n "$PG_DATA" ] && [ -n "$PG_BIN" ]; then
        pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate stop >/dev/null 2>&1
    fi
    [ -n "$PG_TMP" ] && rm -rf "$PG_TMP"
    PG_DATA=
    PG_TMP=
}

pg_cluster_start() {
    case "$PG_FSYNC" in
        on | off) ;;
        *)
            PG_ERROR="PG_FSYNC must be on or off, not '$PG_FSYNC'"
            return 1
            ;;
    esac
    PG_BIN=$(pg_find_bin)
    if [ -z "$PG_BIN" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "$PG_WHO: no PostgreSQL server found; installing Debian's postgresql package" >&2
        apt-get update -qq >/dev/null 2>&1
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1; then
            PG_ERROR="apt-get install postgresql did not work"
            return 1
        fi
        PG_BIN=$(pg_find_bin)
    fi
    if [ -z "$PG_BIN" ]; then
        PG_ERROR="no PostgreSQL server (initdb, pg_ctl) on this machine, and it could not be installed"
        return 1
    fi
    PG_PSQL=$(command -v psql || echo "$PG_BIN/psql")
    echo "$PG_WHO: PostgreSQL from $PG_BIN ($("$PG_BIN/pg_ctl" --version))" >&2

    PG_TMP=$(mktemp -d /tmp/batchdb-pg.XXXXXX) || {
        PG_ERROR="mktemp"
        return 1
    }
    chmod 755 "$PG_TMP"
    PG_AS=()
    if [ "$(id -u)" = 0 ]; then
        # PostgreSQL refuses to run as root.
        if ! id postgres >/dev/null 2>&1 && ! useradd --system --no-create-home --shell /bin/sh postgres; then
            PG_ERROR="cannot create the postgres user"
            pg_cluster_stop
            return 1
        fi
        chown postgres "$PG_TMP"
        if command -v runuser >/dev/null; then PG_AS=(runuser -u postgres --); else PG_AS=(su postgres -s /bin/sh -c); fi
    fi
    PG_DATA="$PG_TMP/data"
    trap pg_cluster_stop EXIT
    local port
    if ! port=$(pg_free_port); then
        PG_ERROR="ports $PG_PORT to $((PG_PORT + PG_PORT_TRIES - 1)) on 127.0.0.1 are all in use"
        pg_cluster_stop
        return 1
    fi
    PG_PORT=$port

    if ! pg_as "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --no-sync >"$PG_TMP/initdb.log" 2>&1; then
        cat "$PG_TMP/initdb.log" >&2
        PG_ERROR="initdb failed"
        pg_cluster_stop
        return 1
    fi
    local ssl_opts=""
    if [ -n "${PG_SSL_CERT:-}" ] && [ -n "${PG_SSL_KEY:-}" ]; then
        if ! cp "$PG_SSL_CERT" "$PG_TMP/server.crt" || ! cp "$PG_SSL_KEY" "$PG_TMP/server.key"; then
            PG_ERROR="cannot copy the server certificate"
            pg_cluster_stop
            return 1
        fi
        chmod 600 "$PG_TMP/server.key"
        [ ${#PG_AS[@]} -gt 0 ] && chown postgres "$PG_TMP/server.crt" "$PG_TMP/server.key"
        ssl_opts="-c ssl=on -c ssl_cert_file=$PG_TMP/server.crt -c ssl_key_file=$PG_TMP/server.key"
    fi
    # Loopback only.
    {
        echo "local all all trust"
        [ -n "${PG_HBA_EXTRA:-}" ] && printf '%s\n' "$PG_HBA_EXTRA"
        echo "host all all 127.0.0.1/32 trust"
    } >"$PG_DATA/pg_hba.conf"
    if ! pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_TMP/server.log" -w -t 60 start \
        -o "-p $PG_PORT -k $PG_TMP -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=$PG_FSYNC $ssl_opts" \
        >/dev/null; then
        cat "$PG_TMP/server.log" >&2
        PG_ERROR="the server did not start on 127.0.0.1:$PG_PORT ($(tail -1 "$PG_TMP/server.log" 2>/dev/null))"
        pg_cluster_stop
        return 1
    fi
    PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "$PG_WHO: server up on 127.0.0.1:$PG_PORT (fsync=$PG_FSYNC${ssl_opts:+, ssl=on})" >&2
    return 0
}
