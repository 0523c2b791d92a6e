#!/usr/bin/env bash
# Benchmark: each loadgen --attack kind, one at a time, against our `pyile auth` and against
# the reference Python authenticator (pyile-protocol 0.1.1), with honest joiners during each,
# on this machine, loopback only.
#
#   scripts/bench-hostile.sh                      # every attack, both sides (~7 minutes)
#   SIDES=ours ONLY="silent oversize" scripts/bench-hostile.sh
#
# Every run starts a fresh authenticator, runs
#   loadgen --peers $PEERS --rate $RATE --hold $HOLD --attack <the attack> --target ...
#           --out reports/bench/hostile-<attack>-<side>.csv
# reads the authenticator's peak RSS (VmHWM in /proc/PID/status) just before stopping it, and
# prints one Markdown row. Results land in reports/bench/ (not committed).
# Needs: a release build (done here; honours CARGO_TARGET_DIR) and, for the reference, a venv
# with pyile-protocol==0.1.1 (made here in ./.venv, as .ci/run does).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

SIDES="${SIDES:-ours reference}"
PEERS="${PEERS:-50}"         # honest joiners
RATE="${RATE:-10/s}"         # their join rate (the reference admits only ~10-20 joins/s)
HOLD="${HOLD:-8s}"           # then every honest joiner stays this long; the attack runs throughout
PORT="${PORT:-4712}"         # not 4702, so a concurrent bench-auth.sh does not collide
ONLY="${ONLY:-}"             # attack names to run (default: all)
OUT="$ROOT/reports/bench"
PW_FILE="$OUT/password"
mkdir -p "$OUT"
printf 'bench-secret\n' >"$PW_FILE"

# name|--attack value. Each runs for the whole run (5 s of arrivals + 8 s hold; dist-chatter joins
# after the honest arrivals, so the lists it gets back are only those of its own joins) from its own
# addresses (127.0.8.x and up, loadgen's default --attack-source-ips).
ATTACKS=(
    "none|"
    "silent|silent:3000,ips=30,ramp=5s"
    "slowloris|slowloris:300,ips=20,every=2s"
    "oversize|oversize:1500,ips=100,bytes=1MB,ramp=5s"
    "garbage|garbage:100/s,ips=10,bytes=4KiB"
    "half-handshake|half-handshake:300,ips=20"
    "no-dist|no-dist:300,ips=20"
    "dist-chatter|dist-chatter:20,ips=20,every=10ms,after=6s"
    "spoof-address|spoof-address:2/s,ips=10,after=3s"
    "reconnect-storm|reconnect-storm:8,ips=8"
    "wrong-password|wrong-password:50/s,ips=10"
)

LOG_PREFIX="hostile-"
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
secs() { awk -v us="$1" 'BEGIN{ if (us=="-"||us=="") print "-"; else printf "%.2f s", us/1e6 }'; }
# peak RSS of PID in MiB (VmHWM), '-' if gone.
peak_rss() { awk '/^VmHWM:/{printf "%.0f MiB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo -; }

# run NAME SPEC SIDE: one benchmark run; prints a Markdown row.
run() {
    local name="$1" spec="$2" side="$3" csv="$OUT/hostile-$1-$3.csv" status=0 rss attack_args=()
    local acsv="$OUT/hostile-$1-$3.attacks.csv"
    stop_auth
    rm -f "$csv" "$acsv"
    "start_$side"
    [ -n "$spec" ] && attack_args=(--attack "$spec")
    "$LOADGEN" --peers "$PEERS" --rate "$RATE" --hold "$HOLD" --target "$TARGET" \
        --password-file "$PW_FILE" --out "$csv" --quiet --fail-on none "${attack_args[@]}" \
        >"$OUT/hostile-$name-$side.log" 2>&1 || status=$?
    rss="$(peak_rss "$AUTH_PID")"
    if ! kill -0 "$AUTH_PID" 2>/dev/null; then rss="$rss (exited)"; fi
    stop_auth
    if [ ! -f "$csv" ]; then
        printf '| %s | %s | loadgen wrote no report (exit %s, see %s) |\n' "$name" "$side" "$status" \
            "reports/bench/hostile-$name-$side.log"
        return
    fi
    local attack="-"
    if [ -f "$acsv" ]; then
        # kind,attempted,connect_failed,skipped,closed_by_auth,closed_by_us,open_at_end,failed,p50,p99,max,...
        attack="$(awk -F, 'NR==2{
            printf "%s / %s / %s", $2, $3, $5;
            if ($9 != "") printf " (%.2f s, %.2f s)", $9/1e6, $11/1e6;
            printf " / %s", $7 }' "$acsv")"
        case "$name" in
            dist-chatter) attack="$attack; $(awk -F, 'NR==2{printf "%s values, %s lists back", $17, $18}' "$acsv")" ;;
            spoof-address) attack="$attack; $(awk -F, 'NR==2{printf "admitted %s, victims evicted %s", $14, $20}' "$acsv")" ;;
            wrong-password) attack="$attack; $(awk -F, 'NR==2{printf "rejected %s, banned %s", $15, $16}' "$acsv")" ;;
        esac
    fi
    printf '| %s | %s | %s/%s | %s | %s | %s | %s | %s |\n' \
        "$name" "$side" "$(stat joined count "$csv")" "$PEERS" "$(stat errors count "$csv")" \
        "$(ms "$(stat join_complete p50_us "$csv")")" "$(ms "$(stat join_complete p99_us "$csv")")" \
        "$attack" "$rss"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); honest: $PEERS joiners at $RATE, hold $HOLD"
echo
echo '| attack | authenticator | honest joined | honest errors | join p50 ms | join p99 ms | attack: attempted / connect failed / closed by auth (after p50, max) / open at end | auth peak RSS |'
echo '|---|---|---|---|---|---|---|---|'
for entry in "${ATTACKS[@]}"; do
    name="${entry%%|*}"
    spec="${entry#*|}"
    if [ -n "$ONLY" ] && ! [[ " $ONLY " == *" $name "* ]]; then continue; fi
    for side in $SIDES; do
        run "$name" "$spec" "$side"
    done
done
