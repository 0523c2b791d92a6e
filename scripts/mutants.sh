#!/usr/bin/env bash
# The mutation suite: does CI catch the bugs it exists to catch?
#
# Each scripts/mutants/NAME.patch plants one bug in the protocol code (its first line says
# which). For each, in a scratch worktree of HEAD (your checkout is never touched), this
# applies the patch, builds, and runs exactly the simulation part of .ci/run: every CI
# scenario with --check-determinism, then `sim compare` against reports/baseline. A mutant
# is caught when that fails. A control run without any patch must pass first (else the
# numbers mean nothing). With --tests, `cargo test --release -p pyile -p sim` runs too and
# a failing test also counts.
#
# Usage: scripts/mutants.sh [--tests] [NAME...]     (default: every patch)
# Output: a Markdown table on stdout (also target/mutants/report.md) naming, per mutant, the
# checks and metrics that failed. Exit status 1 if any mutant survived or a patch no
# longer applies. Takes ~2-3 minutes per mutant on 2 cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
WORK="$ROOT/target/mutants"
TREE="$WORK/tree"
export CARGO_TARGET_DIR="$WORK/target"

log() { printf '==> %s\n' "$*" >&2; }

tests=0
names=()
for a in "$@"; do
    case "$a" in
        --tests) tests=1 ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) names+=("$a") ;;
    esac
done
if [ "${#names[@]}" -eq 0 ]; then
    for p in scripts/mutants/*.patch; do names+=("$(basename "$p" .patch)"); done
fi

mkdir -p "$WORK"
if [ ! -d "$TREE/.git" ] && [ ! -f "$TREE/.git" ]; then
    git worktree add --detach "$TREE" HEAD >/dev/null
fi
git -C "$TREE" checkout -q --detach HEAD 2>/dev/null || true
git -C "$TREE" reset -q --hard "$(git rev-parse HEAD)"
# Uncommitted scenario or baseline edits are part of what is being judged.
rm -rf "$TREE/scenarios" "$TREE/reports/baseline"
cp -a "$ROOT/scenarios" "$TREE/scenarios"
cp -a "$ROOT/reports/baseline" "$TREE/reports/baseline"
# A warm target directory makes each mutant an incremental build.
if [ ! -d "$CARGO_TARGET_DIR/release" ] && [ -d "$ROOT/target/release" ]; then
    log "seeding $CARGO_TARGET_DIR from target/release"
    mkdir -p "$CARGO_TARGET_DIR" && cp -r "$ROOT/target/release" "$CARGO_TARGET_DIR/"
fi

# Runs the CI simulation gate in $TREE; prints what failed, one item per line.
# Returns non-zero when the gate fails.
gate() {
    local out="$WORK/out" status=0
    rm -rf "$out" && mkdir -p "$out"
    (cd "$TREE" && cargo build --release -q -p sim --bins) || { echo "build failed"; return 2; }
    mapfile -t SC < <(cd "$TREE" && grep -L -E '^ci[[:space:]]*=[[:space:]]*false' scenarios/*.toml)
    (cd "$TREE" && "$CARGO_TARGET_DIR/release/sim" --quiet --check-determinism --out "$out/reports" "${SC[@]}") \
        >"$out/sim.log" 2>&1 || status=1
    (cd "$TREE" && "$CARGO_TARGET_DIR/release/sim" compare "$out/reports" reports/baseline) \
        >"$out/compare.log" 2>&1 || status=1
    if [ "$tests" = 1 ]; then
        (cd "$TREE" && cargo test --release -q -p pyile -p sim) >"$out/tests.log" 2>&1 || status=1
    fi
    python3 - "$out" <<'PY'
import re, sys, os, collections
out = sys.argv[1]
by = collections.OrderedDict()
def add(what, scenario):
    by.setdefault(what, set()).add(scenario)
scenario = None
for line in open(os.path.join(out, "sim.log")):
    m = re.match(r"^(\w+): \d+ run\(s\)", line)
    if m: scenario = m.group(1)
    m = re.match(r"^\s+- (safety|liveness) (\w+)", line)
    if m: add(m.group(2), scenario)
    m = re.match(r"^\s+- expect (\w+)", line)
    if m: add("expect " + m.group(1), scenario)
    m = re.search(r"determinism (\d+)/(\d+) ok", line)
    if m and m.group(1) != m.group(2):
        add("determinism", scenario)
for line in open(os.path.join(out, "compare.log")):
    m = re.match(r"^FAIL (\w+) seed \d+: (\w+) worse than baseline", line)
    if m: add("compare " + m.group(2), m.group(1))
    m = re.match(r"^FAIL (\w+) seed \d+: (\w+) has no value", line)
    if m: add("compare " + m.group(2) + " missing", m.group(1))
if os.path.exists(os.path.join(out, "tests.log")):
    for line in open(os.path.join(out, "tests.log")):
        m = re.match(r"^test (\S+) \.\.\. FAILED", line)
        if m: add("test " + m.group(1).split("::")[-1], "tests")
for what, scs in by.items():
    print(f"{what} ({', '.join(sorted(s for s in scs if s))})")
PY
    return "$status"
}

log "control: HEAD without a planted bug"
if ! control="$(gate)"; then
    log "the control run fails, so no mutant can be judged:"
    printf '%s\n' "$control" >&2
    exit 2
fi

report="$WORK/report.md"
{
    echo "| planted bug | caught? | by |"
    echo "|---|---|---|"
} >"$report"
survivors=0
for name in "${names[@]}"; do
    patch="$ROOT/scripts/mutants/$name.patch"
    what="$(head -1 "$patch" | sed 's/^Planted bug: //')"
    git -C "$TREE" checkout -q -- .
    if ! git -C "$TREE" apply "$patch" 2>"$WORK/apply.log"; then
        log "$name: the patch no longer applies ($(head -1 "$WORK/apply.log"))"
        echo "| \`$name\`: $what | **patch does not apply** | |" >>"$report"
        survivors=$((survivors + 1))
        continue
    fi
    log "$name: $what"
    if found="$(gate)"; then
        echo "| \`$name\`: $what | **missed** | |" >>"$report"
        survivors=$((survivors + 1))
        log "$name: MISSED"
    else
        by="$(printf '%s\n' "$found" | head -6 | paste -sd ';' | sed 's/;/; /g')"
        n="$(printf '%s\n' "$found" | wc -l)"
        [ "$n" -gt 6 ] && by="$by; … ($n in all)"
        echo "| \`$name\`: $what | yes | $by |" >>"$report"
        log "$name: caught by $by"
    fi
done
git -C "$TREE" checkout -q -- .
echo
cat "$report"
echo
echo "mutants: ${#names[@]}, caught: $((${#names[@]} - survivors)), missed: $survivors (HEAD $(git rev-parse --short HEAD))"
[ "$survivors" -eq 0 ]
