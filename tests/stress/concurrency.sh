#!/usr/bin/env bash
# concurrency.sh - readers and writers on one store at the same time.
# Part 1: one writer commits checkpoints and metrics for CKPT_STRESS_SECONDS
# while readers loop over `ckpt list`, `ckpt metrics`, `ckpt show --json`,
# a plain sqlite3 shell (no busy timeout) on the documented views, and an
# API reader that re-reads the whole head byte for byte. Part 2: two writers
# save two runs into the same store at once, with readers still running.
# Zero errors allowed: any failing command, any "database is locked", any
# partial checkpoint seen by a reader fails the test.
#
# Env: STRESS_WRITER, STRESS_CHECK, CKPT (programs; set by ctest),
#      CKPT_STRESS_SECONDS (default 20), CKPT_TEST_TMP, CKPT_KEEP=1 keeps files.
set -u -o pipefail
: "${STRESS_WRITER:?}" "${STRESS_CHECK:?}" "${CKPT:?}"
SECS=${CKPT_STRESS_SECONDS:-20}
NTENSORS=8 # tensors per checkpoint of stress_writer (ST_NTENSORS)
ROOT=${CKPT_TEST_TMP:-/tmp}
mkdir -p "$ROOT"
WORK=$(mktemp -d "$ROOT/concurrency.XXXXXX")
ERRORS=$WORK/errors
: >"$ERRORS"
failed=0
pids=()

cleanup() {
    touch "$WORK/stop"
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    wait 2>/dev/null
    if [ "$failed" = 0 ] && [ "${CKPT_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "concurrency: files kept in $WORK"
    fi
}
trap cleanup EXIT

die() {
    failed=1
    echo "concurrency: FAIL: $*"
    exit 1
}

# record READER WHAT FILE...: notes one reader error with the output it gave.
record() {
    local who=$1 what=$2
    shift 2
    {
        echo "[$who] $what"
        for f in "$@"; do head -c 600 "$f"; done
        echo
    } >>"$ERRORS"
}

# reader NAME CHECK CMD...: runs CMD in a loop until $WORK/stop exists. An
# error is a non-zero exit, any "locked"/"busy" in its output, or CHECK (a
# function given the stdout file) failing. Counts runs in $WORK/NAME.count.
reader() {
    local name=$1 check=$2
    shift 2
    local n=0 out=$WORK/$name.out err=$WORK/$name.err
    while [ ! -e "$WORK/stop" ]; do
        "$@" >"$out" 2>"$err"
        local rc=$?
        if [ $rc != 0 ]; then
            record "$name" "exit $rc: $*" "$err" "$out"
        elif grep -qiE 'database is locked|locked|busy' "$out" "$err"; then
            record "$name" "'locked' in the output of: $*" "$err" "$out"
        elif [ "$check" != - ] && ! "$check" "$out"; then
            record "$name" "check $check failed on the output of: $*" "$out" "$err"
        fi
        n=$((n + 1))
        echo $n >"$WORK/$name.count"
    done
}

# A reader must only ever see whole checkpoints.
show_whole() {
    local t
    t=$(jq '.tensors | length' "$1" 2>/dev/null) || return 1
    [ "$t" = "$NTENSORS" ]
}
# The sqlite3 shell answers: checkpoints without all their manifest rows
# (must be 0), the number of checkpoints, then up to 5 metric rows.
sqlite_rows() {
    [ "$(sed -n 1p "$1")" = 0 ] && [[ "$(sed -n 2p "$1")" =~ ^[0-9]+$ ]]
}

start_readers() {
    local db=$1 run=$2
    rm -f "$WORK/stop"
    reader list - "$CKPT" --db "$db" list &
    pids+=($!)
    reader metrics - "$CKPT" --db "$db" metrics "$run" &
    pids+=($!)
    reader show show_whole "$CKPT" --db "$db" show --json "$run" &
    pids+=($!)
    # One plain sqlite3 shell (no busy timeout) at a time: two shells
    # interfere with each other (a closing read-write connection briefly
    # holds the PENDING lock), whatever ckpt does.
    reader sqlite sqlite_rows sqlite3 "$db" \
        "SELECT count(*) FROM checkpoints c WHERE c.ntensors != $NTENSORS OR
           (SELECT count(*) FROM tensors t WHERE t.checkpoint_id = c.id) != $NTENSORS;
         SELECT count(*) FROM v_checkpoints; SELECT * FROM v_metrics ORDER BY time DESC LIMIT 5" &
    pids+=($!)
}

stop_readers() {
    touch "$WORK/stop"
    for p in "${pids[@]}"; do
        wait "$p"
    done
    pids=()
}

# Waits for a line matching $2 in file $1 (the writer's stdout) for 60 s.
wait_line() {
    local deadline=$((SECONDS + 60))
    until grep -q "$2" "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.05
    done
}

check_writer() {
    local name=$1 st=$2
    [ "$st" = 0 ] || die "writer $name exited with status $st: $(head -c 2000 "$WORK/$name.err")"
    ! grep -qiE 'locked|busy' "$WORK/$name.err" "$WORK/$name.out" ||
        die "writer $name reported a lock: $(head -c 2000 "$WORK/$name.err")"
    grep -q '^done ' "$WORK/$name.out" || die "writer $name did not finish"
}

report_errors() {
    if [ -s "$ERRORS" ]; then
        echo "concurrency: reader errors ($(grep -c '^\[' "$ERRORS")):"
        head -c 6000 "$ERRORS"
        die "readers saw errors during $1"
    fi
}

counts() {
    local s=""
    for r in "$@"; do
        s="$s $r=$(cat "$WORK/$r.count" 2>/dev/null || echo 0)"
    done
    echo "$s"
}

# ------------------------------------------------------------ part 1
DB=$WORK/one.db
t0=$SECONDS
"$STRESS_WRITER" --db "$DB" --run conc --seconds "$SECS" >"$WORK/w1.out" 2>"$WORK/w1.err" &
wpid=$!
pids+=($wpid)
wait_line "$WORK/w1.out" '^committed ' || die "writer committed nothing in 60 s: $(cat "$WORK/w1.err")"
start_readers "$DB" conc
"$STRESS_CHECK" --db "$DB" --run conc --watch "$SECS" >"$WORK/watch.out" 2>&1 &
watchpid=$!
wait "$wpid"
wst=$?
stop_readers
wait "$watchpid" || record watch "stress_check --watch failed" "$WORK/watch.out"
check_writer w1 "$wst"
report_errors "part 1 (one writer)"
for r in list metrics show sqlite; do
    [ "$(cat "$WORK/$r.count" 2>/dev/null || echo 0)" -ge 3 ] || die "reader $r ran less than 3 times"
done
out=$("$STRESS_CHECK" --db "$DB" --run conc --committed "$WORK/w1.out" --status finished \
    --min-checkpoints 3 2>&1) || die "check after part 1:
$out"
echo "concurrency: part 1: $(grep -c '^committed ' "$WORK/w1.out") checkpoints in $((SECONDS - t0)) s;" \
    "reader runs:$(counts list metrics show sqlite);" \
    "$(grep 'whole heads' "$WORK/watch.out" | sed 's/^stress_check: //')"

# ------------------------------------------------------------ part 2
DB=$WORK/two.db
t0=$SECONDS
half=$(((SECS + 1) / 2))
"$STRESS_WRITER" --db "$DB" --run alpha --seconds "$half" >"$WORK/wa.out" 2>"$WORK/wa.err" &
apid=$!
"$STRESS_WRITER" --db "$DB" --run beta --seconds "$half" >"$WORK/wb.out" 2>"$WORK/wb.err" &
bpid=$!
pids+=($apid $bpid)
wait_line "$WORK/wa.out" '^committed ' && wait_line "$WORK/wb.out" '^committed '
start_readers "$DB" alpha
wait "$apid"
ast=$?
wait "$bpid"
bst=$?
stop_readers
check_writer wa "$ast"
check_writer wb "$bst"
report_errors "part 2 (two writers)"
cat "$WORK/wa.out" "$WORK/wb.out" >"$WORK/committed"
out=$("$STRESS_CHECK" --db "$DB" --run alpha --run beta --committed "$WORK/committed" \
    --status finished --min-checkpoints 2 2>&1) || die "check after part 2:
$out"
echo "concurrency: part 2: alpha $(grep -c '^committed ' "$WORK/wa.out"), beta" \
    "$(grep -c '^committed ' "$WORK/wb.out") checkpoints in $((SECONDS - t0)) s;" \
    "reader runs:$(counts list metrics show sqlite)"
echo "concurrency: ok"
