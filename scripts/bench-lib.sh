# Shared by the benchmark scripts (sourced, not run): build, start and stop one
# authenticator (ours or the reference) on loopback, and read loadgen's final CSV.
# The sourcing script sets ROOT, OUT, PW_FILE, PORT (the auth port) and LOG_PREFIX
# (prefix of the authenticator logs in $OUT) first.

log() { printf '==> %s\n' "$*" >&2; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -q -p pyile -p loadgen
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
PYILE="$BIN/pyile"
LOADGEN="$BIN/loadgen"

AUTH_PID=""
stop_auth() {
    if [ -n "$AUTH_PID" ]; then
        kill "$AUTH_PID" 2>/dev/null || true
        wait "$AUTH_PID" 2>/dev/null || true
        AUTH_PID=""
    fi
}
trap stop_auth EXIT

# Waits until something accepts on $1:$2 (at most 10 s).
wait_port() {
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# Our authenticator with its defaults on 127.0.0.1:$PORT; sets AUTH_PID and TARGET.
start_ours() {
    # shellcheck disable=SC2086
    "$PYILE" auth --listen "127.0.0.1:$PORT" --password-file "$PW_FILE" --log warn ${AUTH_ARGS:-} \
        >"$OUT/${LOG_PREFIX}ours-auth.log" 2>&1 &
    AUTH_PID=$!
    wait_port 127.0.0.1 "$PORT"
    TARGET="127.0.0.1:$PORT"
}

# The reference as it is (its distribution thread busy-loops), on its own IP, 127.0.0.2.
start_reference() {
    local py="$ROOT/.venv/bin/python"
    if ! "$py" -c 'import pyile_protocol' 2>/dev/null; then
        log "installing pyile-protocol==0.1.1 into .venv"
        python3 -m venv "$ROOT/.venv"
        "$ROOT/.venv/bin/pip" install -q --no-deps pyile-protocol==0.1.1
    fi
    "$py" "$ROOT/pyile/tests/interop/driver.py" auth --ip 127.0.0.2 --port "$PORT" \
        --password bench-secret --max-seconds 900 --no-stdin >"$OUT/${LOG_PREFIX}reference-auth.log" 2>&1 &
    AUTH_PID=$!
    wait_port 127.0.0.2 "$PORT"
    TARGET="127.0.0.2:$PORT"
}

# stat METRIC COLUMN FILE: a value of the final CSV (latencies in us, '-' when absent).
stat() { awk -F, -v m="$1" -v c="$2" 'NR==1{for(i=1;i<=NF;i++) col[$i]=i} $1==m{v=$col[c]; print (v==""?"-":v)}' "$3"; }
ms() { awk -v us="$1" 'BEGIN{ if (us=="-"||us=="") print "-"; else printf "%.1f", us/1000 }'; }
