#!/usr/bin/env bash
# Benchmark: loadgen against our `pyile auth` and against the reference Python
# authenticator (pyile-protocol 0.1.1), on this machine, loopback only.
#
#   scripts/bench-auth.sh                 # the README table: 100, 500, 2000 peers, both sides
#   PEERS="100 500" SIDES=ours scripts/bench-auth.sh
#   MAX_SEARCH=1 scripts/bench-auth.sh    # also: the largest --peers with join p99 < 100 ms
#   SIDES=ours PEERS=9000 RATE=1000 SHARDS=2 PROTOCOL=2 scripts/bench-auth.sh
#                                         # two loadgen shards on one timetable, merged
#
# PROTOCOL (default 2) is loadgen's --protocol: 2 loads the delta path, 1 the v1 path (what a
# reference joiner does); PROTOCOL_MIX=0.5 gives loadgen --protocol-mix instead. AUTH_ARGS
# adds flags to `pyile auth`, LOADGEN_ARGS to every loadgen (e.g. --one-connection). The last columns are the authenticator's peak RSS (VmHWM) and
# the CPU (user + system) the authenticator and loadgen used per successful join, for the
# whole run (joins, heartbeats and lists while holding): what a run costs, independent of
# what else the machine was doing; then the share of each side's CPU spent in the kernel
# (system time: on loopback, a write also runs the receiver's TCP input). Last, the list
# values (deltas, snapshots, whole lists) ours wrote to members over the run (the
# `distributed writes=` line it prints when stopped), and each side's whole-run CPU divided
# by them: at thousands of members the writes are most of the work, and
# `loadgen floor` measures what the same writes cost
# with no protocol at all.
#
# Every run starts a fresh authenticator, runs
#   loadgen --peers N --rate $RATE --hold $HOLD --target ... --out reports/bench/<side>-<N>.csv
# and prints one Markdown row per run. Results land in reports/bench/ (not committed).
# Needs: a release build (done here) and, for the reference, a venv with
# pyile-protocol==0.1.1 (made here in ./.venv, as .ci/run does).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

PEERS="${PEERS:-100 500 2000}"
SIDES="${SIDES:-ours reference}"
RATE="${RATE:-100}"          # joins per second
HOLD="${HOLD:-10s}"          # every joiner alive and heartbeating this long
MAX_SEARCH="${MAX_SEARCH:-0}"
MAX_RATE="${MAX_RATE:-$RATE}"
SHARDS="${SHARDS:-1}"
PROTOCOL="${PROTOCOL:-2}"
PROTOCOL_MIX="${PROTOCOL_MIX:-}"
AUTH_ARGS="${AUTH_ARGS:-}"
LOADGEN_ARGS="${LOADGEN_ARGS:-}"
OUT="$ROOT/reports/bench"
PW_FILE="$OUT/password"
mkdir -p "$OUT"
printf 'bench-secret\n' >"$PW_FILE"

PORT=4702
LOG_PREFIX=""
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"

# CPU seconds this shell's finished children (loadgen's shards) have used, user and system:
# "USER SYS". (`times` runs in this shell, not in a command substitution's subshell, which
# has no children.)
children_cpu() {
    times >"$OUT/.times"
    awk 'NR==2 { n = split($0, f, " "); u = 0; s = 0
        for (i = 1; i <= n; i++) { split(f[i], ms, "m"); sub("s", "", ms[2]); if (i == 1) u = ms[1] * 60 + ms[2]; else s += ms[1] * 60 + ms[2] }
        printf "%.2f %.2f", u, s }' "$OUT/.times"
}

# kernel_share USER SYS: the system share of USER + SYS CPU seconds, in percent.
kernel_share() {
    awk -v u="$1" -v s="$2" 'BEGIN{ if (u == "-" || u + s == 0) print "-"; else printf "%.0f", s * 100 / (u + s) }'
}

# per_join CPU_SECONDS JOINED: milliseconds of CPU per join ("-" when unknown).
per_join() {
    awk -v c="$1" -v n="$2" 'BEGIN{ if (c == "-" || c == "" || n == "-" || n + 0 == 0) print "-"; else printf "%.2f", c * 1000 / n }'
}

# per_write CPU_SECONDS WRITES: microseconds of CPU per list write ("-" when unknown).
per_write() {
    awk -v c="$1" -v n="$2" 'BEGIN{ if (c == "-" || c == "" || n == "" || n + 0 == 0) print "-"; else printf "%.1f", c * 1e6 / n }'
}

# run SIDE N RATE: one benchmark run; prints a Markdown row; returns loadgen's status.
run() {
    local side="$1" n="$2" rate="$3" csv="$OUT/$1-$2.csv" status=0 t0 t1 rss i start auth_cpu gen0 gen1
    local auth_user=- auth_sys=- gen_user gen_sys
    local proto=(--protocol "$PROTOCOL")
    [ -z "$PROTOCOL_MIX" ] || proto=(--protocol-mix "$PROTOCOL_MIX")
    stop_auth
    "start_$side"
    children_cpu >"$OUT/.cpu0"
    t0=$(date +%s.%N)
    if [ "$SHARDS" -le 1 ]; then
        "$LOADGEN" --peers "$n" --rate "$rate" --hold "$HOLD" --target "$TARGET" "${proto[@]}" ${LOADGEN_ARGS} \
            --password-file "$PW_FILE" --out "$csv" --quiet --fail-on none \
            --fail-on 'errors>0' --fail-on 'join_complete.p99>100ms' >/dev/null || status=$?
    else
        # Every shard on one timetable (--start-at), their histograms merged exactly.
        start=$(($(date +%s) + 3))
        local pids=() logs=()
        for i in $(seq 0 $((SHARDS - 1))); do
            "$LOADGEN" --peers "$n" --rate "$rate" --hold "$HOLD" --target "$TARGET" "${proto[@]}" ${LOADGEN_ARGS} \
                --password-file "$PW_FILE" --shard "$i/$SHARDS" --start-at "$start" --quiet --fail-on none \
                --hdr-log "$OUT/$side-$n.shard$i.hlog" --out "$OUT/$side-$n.shard$i.csv" \
                >"$OUT/$side-$n.shard$i.out" 2>&1 &
            pids+=($!)
            logs+=("$OUT/$side-$n.shard$i.hlog")
        done
        for i in "${pids[@]}"; do wait "$i" || true; done
        "$LOADGEN" merge "${logs[@]}" --out "$csv" --fail-on 'errors>0' --fail-on 'join_complete.p99>100ms' \
            >/dev/null || status=$?
    fi
    t1=$(date +%s.%N)
    children_cpu >"$OUT/.cpu1"
    read -r gen_user gen_sys < <(paste -d' ' "$OUT/.cpu0" "$OUT/.cpu1" | awk '{printf "%.2f %.2f", $3 - $1, $4 - $2}')
    gen0=0 gen1=$(echo "$gen_user + $gen_sys" | bc)
    rss=$(awk '/VmHWM/{printf "%.0f MiB", $2/1024}' "/proc/$AUTH_PID/status" 2>/dev/null || echo -)
    # CPU seconds the authenticator (and its threads) used so far, user and system.
    if [ -r "/proc/$AUTH_PID/stat" ]; then
        read -r auth_user auth_sys < <(awk -v t="$(getconf CLK_TCK)" '{printf "%.2f %.2f", $14 / t, $15 / t}' "/proc/$AUTH_PID/stat")
    fi
    auth_cpu=$(awk -v u="$auth_user" -v s="$auth_sys" 'BEGIN{ if (u == "-") print "-"; else printf "%.2f", u + s }')
    stop_auth
    # Ours prints what it distributed when stopped; the reference does not.
    local writes
    writes=$(sed -n 's/^distributed writes=\([0-9]*\) .*/\1/p' "$OUT/${LOG_PREFIX}$side-auth.log" 2>/dev/null | tail -1)
    if [ ! -f "$csv" ]; then
        printf '| %s | %s | %s/s | loadgen wrote no report (exit %s) |\n' "$side" "$n" "$rate" "$status"
        return 2
    fi
    local joined
    joined=$(stat joined count "$csv")
    printf '| %s | %s | %s/s | %s | %s | %s | %s | %s | %s | %s | %.0f s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$side" "$n" "$rate" \
        "$(stat joined count "$csv")" "$(stat errors count "$csv")" \
        "$(stat timed_out count "$csv")/$(stat protocol_error count "$csv")/$(stat refused count "$csv")" \
        "$(ms "$(stat join_complete p50_us "$csv")")" "$(ms "$(stat join_complete p99_us "$csv")")" \
        "$(ms "$(stat join_complete max_us "$csv")")" "$(ms "$(stat convergence p99_us "$csv")")" \
        "$(echo "$t1 - $t0" | bc)" "$rss" \
        "$(per_join "$auth_cpu" "$joined")" "$(per_join "$(echo "$gen1 - $gen0" | bc)" "$joined")" \
        "$(kernel_share "$auth_user" "$auth_sys")" "$(kernel_share "$gen_user" "$gen_sys")" \
        "${writes:--}" "$(per_write "$auth_cpu" "$writes")" "$(per_write "$(echo "$gen1 - $gen0" | bc)" "$writes")"
    return "$status"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); rate $RATE joins/s, hold $HOLD, $SHARDS loadgen shard(s), protocol ${PROTOCOL_MIX:+mix $PROTOCOL_MIX}${PROTOCOL_MIX:-$PROTOCOL}"
echo
echo '| authenticator | peers | join rate | joined | errors | timed out / protocol / refused | join p50 ms | join p99 ms | join max ms | convergence p99 ms | wall | auth peak RSS | auth CPU ms/join | loadgen CPU ms/join | auth CPU in kernel % | loadgen CPU in kernel % | list writes | auth CPU us/write | loadgen CPU us/write |'
echo '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|'
for side in $SIDES; do
    for n in $PEERS; do
        run "$side" "$n" "$RATE" || true
    done
done

if [ "$MAX_SEARCH" = 1 ]; then
    # Doubling, then bisection, on --peers at MAX_RATE until join p99 >= 100 ms or an error.
    echo
    echo "largest --peers for ours with join_complete p99 < 100 ms and no errors, at $MAX_RATE joins/s:"
    lo=0 hi=0 n=1000
    while :; do
        if run ours "$n" "$MAX_RATE" >/dev/null; then lo=$n; n=$((n * 2)); else hi=$n; break; fi
        [ "$n" -le 32000 ] || break
    done
    while [ "$hi" -gt 0 ] && [ $((hi - lo)) -gt $((lo / 10 + 1)) ]; do
        n=$(((lo + hi) / 2))
        if run ours "$n" "$MAX_RATE" >/dev/null; then lo=$n; else hi=$n; fi
    done
    echo "passes at $lo peers; fails at ${hi:-never (stopped at 32000)} peers"
fi
