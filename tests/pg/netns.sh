#!/usr/bin/env bash
# Workers on three hosts against a server on a fourth, through real network faults (issue 23).
#
# The "hosts" are network namespaces made here (ip netns, from iproute2): the server in
# bd23srv, listening only on its private links; workers in bd23h1..3, each joined to the
# server by its own veth pair (10.23.N.2 <-> 10.23.N.1). Every worker host runs the CLI
# (`batchdb run --workers 2`) with a runner that appends "key created start_ms" to a shared
# log (the filesystem is shared). Scenarios, each checked the same way (every instance exactly
# one result, no fail row, and no instance started after its result was recorded):
#   1. link cut: host 1's link goes down while it holds jobs and comes back after its lease;
#      the other hosts take its jobs over, its late completes are fenced;
#   2. restarts: the server is restarted (pg_ctl restart -m fast) twice during the run;
#   3. stall: the server's end of host 1's link goes down, so host 1's packets vanish
#      without an error; its workers notice within the lease (the TCP user timeout follows it)
#      and never hang for minutes;
#   4. latency: 0, 50 and 200 ms added on every link (tc netem), throughput printed as a
#      table. Where the kernel has no sch_netem, a delay proxy (tests/pg/delay_proxy.py)
#      adds the same to each round trip.
# Needs root and iproute2 (installed with apt-get when missing, as root); otherwise it says so
# and skips. Every step has a timeout: it never hangs. Prints "pg-netns: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."

WHO=pg-netns
PASSED=0
FAILED=0
skip() {
    echo "$WHO: skipped: $*"
    echo "$WHO: 0 passed, 0 failed (skipped)"
    exit 0
}
ok() {
    echo "$WHO: ok: $*"
    PASSED=$((PASSED + 1))
}
bad() {
    echo "$WHO: FAILED: $*"
    FAILED=$((FAILED + 1))
}

[ "$(id -u)" = 0 ] || skip "network namespaces need root"
if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null 2>&1
fi
command -v ip >/dev/null || skip "no ip command (iproute2), and it could not be installed"
if ! ip netns add bd23probe 2>/dev/null; then skip "ip netns add does not work here"; fi
ip netns del bd23probe

B=$(realpath "${BATCHDB_BIN:-target/debug/batchdb}")
[ -x "$B" ] || { echo "$WHO: FAILED: no CLI at $B (build it with --features postgres)"; echo "$WHO: 0 passed, 1 failed"; exit 1; }
PG_WHO=$WHO
source tests/pg/cluster.sh
PG_BIN=$(pg_find_bin) || skip "no PostgreSQL server binaries"
PSQL=$(command -v psql || echo "$PG_BIN/psql")

TMP=$(mktemp -d /tmp/batchdb-netns.XXXXXX)
chmod 755 "$TMP"
DATA="$TMP/data"
SRV=bd23srv
HOSTS="1 2 3"
cleanup() {
    for h in $HOSTS; do ip netns pids "bd23h$h" 2>/dev/null | xargs -r kill -9 2>/dev/null; done
    [ -d "$DATA" ] && ip netns exec $SRV runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1
    # What else runs in the server's namespace (a delay proxy left by an interrupted scenario 4).
    ip netns pids $SRV 2>/dev/null | xargs -r kill -9 2>/dev/null
    for n in $SRV bd23h1 bd23h2 bd23h3; do ip netns del $n 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
cleanup_ns() { for n in $SRV bd23h1 bd23h2 bd23h3; do ip netns del $n 2>/dev/null; done; }
cleanup_ns

# The links.
ip netns add $SRV && ip -n $SRV link set lo up || skip "cannot make namespaces"
for h in $HOSTS; do
    ip netns add "bd23h$h"
    ip -n "bd23h$h" link set lo up
    ip link add "bd23h${h}e" netns "bd23h$h" type veth peer name "bd23s${h}e" netns $SRV
    ip -n "bd23h$h" addr add "10.23.$h.2/24" dev "bd23h${h}e"
    ip -n $SRV addr add "10.23.$h.1/24" dev "bd23s${h}e"
    ip -n "bd23h$h" link set "bd23h${h}e" up
    ip -n $SRV link set "bd23s${h}e" up
done

# The server, in its namespace, on its link addresses only.
id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh postgres
chown postgres "$TMP"
runuser -u postgres -- "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust --no-sync >"$TMP/initdb.log" 2>&1 \
    || { cat "$TMP/initdb.log"; skip "initdb failed"; }
printf 'local all all trust\nhost all all 10.23.0.0/16 trust\n' >"$DATA/pg_hba.conf"
start_server() {
    ip netns exec $SRV runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DATA" -l "$TMP/server.log" -w -t 60 start \
        -o "-p 5432 -k $TMP -c listen_addresses=10.23.1.1,10.23.2.1,10.23.3.1 -c max_connections=200 -c fsync=off" >/dev/null
}
start_server || { tail -5 "$TMP/server.log"; echo "$WHO: FAILED: the server did not start"; echo "$WHO: 0 passed, 1 failed"; exit 1; }
"$PSQL" -q -h "$TMP" -p 5432 -U postgres -d postgres -c "CREATE ROLE bd LOGIN" -c "CREATE DATABASE bd OWNER bd" \
    || { echo "$WHO: FAILED: creating the role"; exit 1; }
echo "$WHO: server in namespace $SRV on 10.23.{1,2,3}.1:5432; worker hosts bd23h1..3"

LEASE_MS=3000
# The library ties the TCP user timeout to the lease (a third of it, at least 2 s): a connection
# that stops answering is given up within the lease. Reconnecting is bounded too.
# The hosts reach the server on NS_PORT: 5432, or a delay proxy's port (scenario 4).
NS_PORT=5432
url() { echo "postgres://bd@10.23.$1.1:$NS_PORT/bd?schema=$2&connect_timeout=2"; }

# add_jobs SCHEMA COUNT SECONDS: COUNT jobs that sleep SECONDS and echo their number.
add_jobs() {
    local i
    for ((i = 0; i < $2; i++)); do echo "sleep $3; echo $2-$i"; done >"$TMP/jobs.$1"
    ip netns exec bd23h1 timeout 60 sh -c "while read -r l; do '$B' --db '$(url 1 "$1")' add \"\$l\" >/dev/null || exit 1; done <'$TMP/jobs.$1'"
}

# start_hosts SCHEMA: a 2-worker until-empty run on every host; pids in HOST_PIDS.
start_hosts() {
    HOST_PIDS=()
    : >"$TMP/runs.$1"
    chmod 666 "$TMP/runs.$1"
    for h in $HOSTS; do
        ip netns exec "bd23h$h" timeout 150 "$B" --db "$(url "$h" "$1")" run --until-empty --workers 2 --lease-ms $LEASE_MS \
            -- sh -c "echo \"\$BATCHDB_KEY \$BATCHDB_CREATED \$(date +%s%3N)\" >>'$TMP/runs.$1'; sh" \
            >"$TMP/host$h.$1.out" 2>"$TMP/host$h.$1.err" &
        HOST_PIDS+=($!)
    done
}

# wait_hosts: waits for the hosts' runs; fails the scenario on a non-zero exit.
wait_hosts() {
    local p rc=0
    for p in "${HOST_PIDS[@]}"; do wait "$p" || rc=$?; done
    return $rc
}

results() { "$PSQL" -qAt -h "$TMP" -p 5432 -U postgres -d bd -c "$1"; }

# check SCHEMA COUNT NAME: every instance one result, no fail row, nothing pending, and no
# run of an instance started after its result's end.
check() {
    local s=$1 n=$2 name=$3
    local got fails pend dup late
    got=$(results "SELECT count(*) FROM $s.result") || got=x
    dup=$(results "SELECT count(*) - count(DISTINCT created) FROM $s.result")
    fails=$(results "SELECT count(*) FROM $s.fail")
    pend=$(results "SELECT count(*) FROM $s.instance")
    results "SELECT created, ended FROM $s.result" >"$TMP/ends.$s"
    # runs.$s lines: key created start_ms. A run that started after its instance's result
    # ended (or of an instance without a result) is an instance that ran again.
    late=$(awk 'NR == FNR { split($0, f, "|"); end[f[1]] = f[2]; next } { if (!($2 in end) || $3 > end[$2]) n++ } END { print n + 0 }' \
        "$TMP/ends.$s" "$TMP/runs.$s")
    local runs
    runs=$(wc -l <"$TMP/runs.$s")
    if [ "$got" = "$n" ] && [ "$dup" = 0 ] && [ "$fails" = 0 ] && [ "$pend" = 0 ] && [ "$late" = 0 ]; then
        ok "$name: $n instances, $n results, none twice, no fail row, $runs runs, none after its result"
    else
        bad "$name: results $got of $n, $dup twice, $fails fail rows, $pend pending, $late runs after their result or unknown ($runs runs)"
    fi
}

# --- 1. one host's link cut while it holds jobs, restored after its lease --------------------
scenario_cut() {
    local s=cut n=90
    add_jobs $s $n 0.2 || { bad "link cut: adding jobs"; return; }
    start_hosts $s
    sleep 2
    local held
    held=$(grep -c . "$TMP/runs.$s")
    ip -n bd23h1 link set bd23h1e down
    local t0=$SECONDS
    sleep $((LEASE_MS / 1000 + 3))
    ip -n bd23h1 link set bd23h1e up
    if wait_hosts; then :; else bad "link cut: a host's run failed: $(cat "$TMP"/host*.$s.err | tail -3)"; return; fi
    echo "$WHO: link cut: host 1 down for $((SECONDS - t0)) s after $held runs had started; host 1 said:"
    sed 's/^/    /' "$TMP/host1.$s.err"
    grep -q "lost the connection to the server" "$TMP/host1.$s.err" || bad "link cut: host 1 did not report the outage"
    check $s $n "link cut"
}

# --- 2. the server restarted twice during a 3-host run ---------------------------------------
scenario_restart() {
    local s=restart n=150
    add_jobs $s $n 0.05 || { bad "restarts: adding jobs"; return; }
    start_hosts $s
    local r took=""
    for r in 1 2; do
        sleep 1.5
        local t=$(date +%s%3N)
        ip netns exec $SRV runuser -u postgres -- timeout 60 "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 restart >/dev/null \
            || bad "restarts: pg_ctl restart $r failed"
        took="$took $(( $(date +%s%3N) - t )) ms"
    done
    if wait_hosts; then :; else bad "restarts: a host's run failed: $(cat "$TMP"/host*.$s.err | tail -3)"; return; fi
    echo "$WHO: restarts: pg_ctl restart took$took; the hosts said:"
    cat "$TMP"/host*.$s.err | grep -v '^run:' | sed 's/^/    /'
    local reported
    reported=$(cat "$TMP"/host*.$s.err | grep -c "is back")
    [ "$reported" -ge 2 ] || bad "restarts: only $reported outage ends reported"
    check $s $n "restarts"
}

# --- 3. a stalled connection: host 1's packets vanish ----------------------------------------
scenario_stall() {
    local s=stall n=60
    # Noticing takes the TCP user timeout (a third of the lease, rounded up by the kernel's
    # retransmission steps) and then a failed attempt to connect again (connect_timeout 2 s).
    local LEASE_MS=6000
    # 5 s of work on 6 workers: host 1 holds jobs when its path stalls.
    add_jobs $s $n 0.5 || { bad "stall: adding jobs"; return; }
    start_hosts $s
    sleep 1.5
    # The server's end goes down: host 1 sees no error, its packets are simply lost. A
    # permanent neighbour entry keeps address resolution from failing ("no route to host"),
    # which would be an error rather than a stall.
    local mac
    mac=$(ip -n $SRV -o link show bd23s1e | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
    ip -n bd23h1 neigh replace 10.23.1.1 lladdr "$mac" dev bd23h1e nud permanent
    ip -n $SRV link set bd23s1e down
    local t0=$SECONDS
    # Host 1 must notice within its lease: a "lost the connection" line on its stderr.
    local noticed=""
    while [ $((SECONDS - t0)) -lt 20 ]; do
        if grep -q "lost the connection to the server" "$TMP/host1.$s.err"; then noticed=$((SECONDS - t0)); break; fi
        [ -n "${NETNS_DEBUG:-}" ] && { echo "t=$((SECONDS - t0))"; ip netns exec bd23h1 ss -tnoi | grep -A1 5432 | head -20; }
        sleep 1
    done
    sleep 2
    ip -n $SRV link set bd23s1e up
    if wait_hosts; then :; else bad "stall: a host's run failed: $(cat "$TMP"/host*.$s.err | tail -3)"; return; fi
    echo "$WHO: stall: host 1 said:"
    sed 's/^/    /' "$TMP/host1.$s.err"
    if [ -n "$noticed" ] && [ "$noticed" -le $((LEASE_MS / 1000)) ]; then
        ok "stall: host 1 noticed the stalled connection after ${noticed} s (lease $((LEASE_MS / 1000)) s)"
    else
        bad "stall: host 1 did not notice within its lease of $((LEASE_MS / 1000)) s (after: ${noticed:-more than 20} s)"
    fi
    check $s $n "stall"
}

# --- 4. added latency on every link -----------------------------------------------------------
# With tc netem, D ms on both ends of every link. Where the kernel has no sch_netem (as on the
# machine this was written on), the hosts reach the server through tests/pg/delay_proxy.py in
# the server's namespace instead, which holds every byte D ms in each direction: the same
# 2 x D added to each round trip, without netem's packet-level effects. The table says which.
scenario_latency() {
    # The default lease (30 s): at 3 s, a job's ~17 round trips at 200 ms each way (6.8 s)
    # outlive it, and its instance is taken over and run again until its attempts run out
    # (seen: 12 fail rows of 30). A lease must cover a job's round trips.
    local LEASE_MS=30000
    local how=netem
    if ! ip netns exec bd23h1 tc qdisc add dev bd23h1e root netem delay 1ms 2>"$TMP/netem.err"; then
        how=proxy
        echo "$WHO: latency: tc netem does not work here ($(head -1 "$TMP/netem.err"); the kernel's sch_netem module is missing): the delay comes from tests/pg/delay_proxy.py"
        command -v python3 >/dev/null 2>&1 || { echo "$WHO: latency: no python3 for the proxy either: only 0 ms is measured"; how=none; }
    else
        ip netns exec bd23h1 tc qdisc del dev bd23h1e root
    fi
    local delays="0" d proxy
    [ $how != none ] && delays="0 50 200"
    printf '%s: %-14s %-8s %-8s %-8s %s\n' "$WHO" "delay each way" "by" "jobs" "seconds" "jobs/s (3 hosts x 2 workers)"
    for d in $delays; do
        local s=lat$d n=120
        [ "$d" = 50 ] && n=30
        [ "$d" = 200 ] && n=12
        # The jobs are added before the delay: only the runs are measured.
        add_jobs $s $n 0 || { bad "latency $d ms: adding jobs"; continue; }
        proxy=
        if [ "$d" != 0 ] && [ $how = netem ]; then
            for h in $HOSTS; do
                ip netns exec "bd23h$h" tc qdisc add dev "bd23h${h}e" root netem delay "${d}ms"
                ip netns exec $SRV tc qdisc add dev "bd23s${h}e" root netem delay "${d}ms"
            done
        elif [ "$d" != 0 ]; then
            ip netns exec $SRV python3 tests/pg/delay_proxy.py 0.0.0.0 5433 10.23.1.1 5432 "$d" >"$TMP/proxy.$d" 2>&1 &
            proxy=$!
            local w
            for w in $(seq 50); do grep -q listening "$TMP/proxy.$d" && break; sleep 0.1; done
            grep -q listening "$TMP/proxy.$d" || { bad "latency $d ms: the delay proxy did not start: $(cat "$TMP/proxy.$d")"; kill $proxy; continue; }
            NS_PORT=5433
        fi
        local t=$(date +%s%3N)
        start_hosts $s
        wait_hosts || bad "latency $d ms: a host's run failed"
        local ms=$(( $(date +%s%3N) - t ))
        NS_PORT=5432
        local by=-
        [ "$d" != 0 ] && by=$how
        printf '%s: %-14s %-8s %-8s %-8s %s\n' "$WHO" "$d ms" "$by" "$n" "$(awk "BEGIN { printf \"%.1f\", $ms / 1000 }")" \
            "$(awk "BEGIN { printf \"%.1f\", $n * 1000 / $ms }")"
        check $s $n "latency $d ms"
        if [ -n "$proxy" ]; then
            kill "$proxy" 2>/dev/null
            wait "$proxy" 2>/dev/null
        elif [ "$d" != 0 ]; then
            for h in $HOSTS; do
                ip netns exec "bd23h$h" tc qdisc del dev "bd23h${h}e" root
                ip netns exec $SRV tc qdisc del dev "bd23s${h}e" root
            done
        fi
    done
}

START=$SECONDS
for sc in ${BATCHDB_NETNS_SCENARIOS:-cut restart stall latency}; do
    "scenario_$sc"
done
echo "$WHO: took $((SECONDS - START)) s"
echo "$WHO: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
