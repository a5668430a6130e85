#!/usr/bin/env bash
# concurrency.sh [PART...] - readers and writers on one store at the same time.
#   one:   a writer commits checkpoints and metrics for CKPT_STRESS_SECONDS while
#          readers loop over `ckpt list`, `ckpt metrics`, `ckpt show --json`,
#          a plain sqlite3 shell (no busy timeout) on the documented views and
#          an API reader re-reading the whole head byte for byte;
#   two:   two writers save two runs into the same store at once (readers on),
#          then rounds of two writers started together whose first new chunk
#          is the same one;
#   close: short-lived handles (read-write and read-only) open and close
#          beside a saving writer while the plain sqlite3 shell reads.
# Default: all three. Zero errors allowed: a failing command, "database is
# locked" anywhere, a partial checkpoint seen by a reader. Every part runs;
# the script fails at the end if any part failed.
#
# Env: STRESS_WRITER, STRESS_CHECK, CKPT (programs; set by ctest),
#      CKPT_STRESS_SECONDS (default 20; parts two and close run half of it),
#      CKPT_STRESS_ONE_SECONDS (part one's writer; default CKPT_STRESS_SECONDS),
#      CKPT_TEST_TMP, CKPT_KEEP=1 keeps files.
set -u -o pipefail
: "${STRESS_WRITER:?}" "${STRESS_CHECK:?}" "${CKPT:?}"
SECS=${CKPT_STRESS_SECONDS:-20}
ONE_SECS=${CKPT_STRESS_ONE_SECONDS:-$SECS}
NTENSORS=8 # tensors per checkpoint of stress_writer (ST_NTENSORS)
ROOT=${CKPT_TEST_TMP:-/tmp}
mkdir -p "$ROOT"
WORK=$(mktemp -d "$ROOT/concurrency.XXXXXX")
ERRORS=$WORK/errors
failed=0
pids=()
watchpid=
WATCH_RUNS=()

cleanup() {
    touch "$WORK/stop"
    for p in "${pids[@]}" $watchpid; do
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

# part_fail MSG: the current part failed; the next parts still run.
part_fail() {
    failed=1
    echo "concurrency: FAIL ($PART): $*"
    return 1
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
# error is a non-zero exit, "locked" or "busy" in its output, or CHECK (a
# function given the stdout file; - for none) failing. Counts runs.
reader() {
    local name=$1 check=$2
    shift 2
    local n=0 out=$WORK/$name.out err=$WORK/$name.err
    while [ ! -e "$WORK/stop" ]; do
        "$@" >"$out" 2>"$err"
        local rc=$?
        if [ $rc != 0 ]; then
            record "$name" "exit $rc: $*" "$err" "$out"
        elif grep -qiE 'locked|busy' "$out" "$err"; then
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

SQL="SELECT count(*) FROM checkpoints c WHERE c.ntensors != $NTENSORS OR
       (SELECT count(*) FROM tensors t WHERE t.checkpoint_id = c.id) != $NTENSORS;
     SELECT count(*) FROM v_checkpoints; SELECT * FROM v_metrics ORDER BY time DESC LIMIT 5"

# start_readers DB RUN [sqlite-only]: the readers of one part. First a
# long-lived handle (stress_check --watch on the runs in WATCH_RUNS, re-reading
# their heads byte for byte), open until stop_readers: like a monitoring
# process, and so that no moment of the part is without an open connection
# (the first connection to a WAL database after all closed must rebuild its
# index: a plain reader opening then is refused, whatever ckpt does). Then
# the loops; the CLI loops read RUN.
start_readers() {
    local db=$1 run=$2 r
    rm -f "$WORK/stop"
    : >"$ERRORS"
    rm -f "$WORK"/*.count
    local args=()
    for r in "${WATCH_RUNS[@]}"; do args+=(--run "$r"); done
    "$STRESS_CHECK" --db "$db" "${args[@]}" --watch 86400 --stop-file "$WORK/stop" \
        >"$WORK/watch.out" 2>&1 &
    watchpid=$!
    wait_line "$WORK/watch.out" '^stress_check: watching' "$watchpid" ||
        record watch "stress_check --watch did not start" "$WORK/watch.out"
    # One plain sqlite3 shell at a time: two shells interfere with each other
    # (a closing read-write connection briefly holds the PENDING lock of the
    # database file), whatever ckpt does.
    reader sqlite sqlite_rows sqlite3 "$db" "$SQL" &
    pids+=($!)
    [ "${3:-}" = sqlite-only ] && return
    reader list - "$CKPT" --db "$db" list &
    pids+=($!)
    reader metrics - "$CKPT" --db "$db" metrics "$run" &
    pids+=($!)
    reader show show_whole "$CKPT" --db "$db" show --json "$run" &
    pids+=($!)
}

stop_readers() {
    touch "$WORK/stop"
    for p in "${pids[@]}"; do
        wait "$p"
    done
    pids=()
    wait "$watchpid" || record watch "stress_check --watch failed" "$WORK/watch.out"
}

watched() {
    grep 'whole heads' "$WORK/watch.out" | sed 's/^stress_check: //'
}

# wait_line FILE RE PID: waits up to 60 s for a line matching RE in FILE (the
# stdout of writer PID); gives up early if the writer is gone.
wait_line() {
    local deadline=$((SECONDS + 60))
    until grep -q "$2" "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] && kill -0 "$3" 2>/dev/null || return 1
        sleep 0.05
    done
}

check_writer() {
    local name=$1 st=$2
    [ "$st" = 0 ] || part_fail "writer $name exited with status $st: $(head -c 2000 "$WORK/$name.err")" ||
        return 1
    ! grep -qiE 'locked|busy' "$WORK/$name.err" "$WORK/$name.out" ||
        part_fail "writer $name reported a lock: $(head -c 2000 "$WORK/$name.err")" || return 1
    grep -q '^done ' "$WORK/$name.out" || part_fail "writer $name did not finish"
}

reader_errors() {
    [ -s "$ERRORS" ] || return 0
    echo "concurrency: $PART: reader errors ($(grep -c '^\[' "$ERRORS")), the first ones:"
    head -c 4000 "$ERRORS"
    part_fail "readers saw errors"
}

counts() {
    local s=""
    for r in "$@"; do
        s="$s $r=$(cat "$WORK/$r.count" 2>/dev/null || echo 0)"
    done
    echo "$s"
}

# ------------------------------------------------------------ parts
part_one() {
    local db=$WORK/one.db t0=$SECONDS ok=1
    "$STRESS_WRITER" --db "$db" --run conc --seconds "$ONE_SECS" >"$WORK/w1.out" 2>"$WORK/w1.err" &
    local wpid=$!
    pids+=("$wpid")
    wait_line "$WORK/w1.out" '^committed ' "$wpid" ||
        part_fail "the writer committed nothing in 60 s: $(head -c 2000 "$WORK/w1.err")" || return 1
    WATCH_RUNS=(conc)
    start_readers "$db" conc
    wait "$wpid"
    local wst=$?
    stop_readers
    check_writer w1 "$wst" || ok=0
    reader_errors || ok=0
    for r in list metrics show sqlite; do
        [ "$(cat "$WORK/$r.count" 2>/dev/null || echo 0)" -ge 3 ] || {
            part_fail "reader $r ran less than 3 times"
            ok=0
        }
    done
    local out
    out=$("$STRESS_CHECK" --db "$db" --run conc --committed "$WORK/w1.out" --status finished \
        --min-checkpoints 3 2>&1) || {
        part_fail "check of the store afterwards:
$out"
        ok=0
    }
    echo "concurrency: $PART: $(grep -c '^committed ' "$WORK/w1.out") checkpoints in" \
        "$((SECONDS - t0)) s; reader runs:$(counts list metrics show sqlite);" \
        "$(watched)"
    [ $ok = 1 ]
}

part_two() {
    local db=$WORK/two.db t0=$SECONDS ok=1 half=$(((SECS + 1) / 2))
    "$STRESS_WRITER" --db "$db" --run alpha --seconds "$half" >"$WORK/wa.out" 2>"$WORK/wa.err" &
    local apid=$!
    "$STRESS_WRITER" --db "$db" --run beta --seconds "$half" >"$WORK/wb.out" 2>"$WORK/wb.err" &
    local bpid=$!
    pids+=("$apid" "$bpid")
    wait_line "$WORK/wa.out" '^committed ' "$apid" && wait_line "$WORK/wb.out" '^committed ' "$bpid"
    WATCH_RUNS=(alpha beta)
    start_readers "$db" alpha
    wait "$apid"
    local ast=$?
    wait "$bpid"
    local bst=$?
    stop_readers
    check_writer wa "$ast" || ok=0
    check_writer wb "$bst" || ok=0
    reader_errors || ok=0
    cat "$WORK/wa.out" "$WORK/wb.out" >"$WORK/committed"
    local out
    out=$("$STRESS_CHECK" --db "$db" --run alpha --run beta --committed "$WORK/committed" \
        --status finished --min-checkpoints 2 2>&1) || {
        part_fail "check of both runs afterwards:
$out"
        ok=0
    }
    echo "concurrency: $PART: alpha $(grep -c '^committed ' "$WORK/wa.out"), beta" \
        "$(grep -c '^committed ' "$WORK/wb.out") checkpoints in $((SECONDS - t0)) s;" \
        "reader runs:$(counts list metrics show sqlite); $(watched)"

    # Rounds of two writers started together on two new runs of one share
    # group: the first chunk each saves is the same new chunk, so they race
    # to insert it (see stress_common.c). Both must get it stored once.
    local k runs=() rounds=4
    : >"$WORK/committed"
    for ((k = 1; k <= rounds; k++)); do
        "$STRESS_WRITER" --db "$db" --run "x.g$k" --epochs 2 >"$WORK/rx.out" 2>"$WORK/rx.err" &
        apid=$!
        "$STRESS_WRITER" --db "$db" --run "y.g$k" --epochs 2 >"$WORK/ry.out" 2>"$WORK/ry.err" &
        bpid=$!
        wait "$apid"
        ast=$?
        wait "$bpid"
        bst=$?
        check_writer rx "$ast" || ok=0
        check_writer ry "$bst" || ok=0
        cat "$WORK/rx.out" "$WORK/ry.out" >>"$WORK/committed"
        runs+=(--run "x.g$k" --run "y.g$k")
    done
    out=$("$STRESS_CHECK" --db "$db" "${runs[@]}" --committed "$WORK/committed" \
        --status finished --min-checkpoints 2 2>&1) || {
        part_fail "check of the racing runs afterwards:
$out"
        ok=0
    }
    echo "concurrency: $PART: $rounds rounds of two writers racing on the same first chunk"
    [ $ok = 1 ]
}

# A trainer holds the store open and saves; meanwhile other processes open
# it for a moment (`ckpt list`, `ckpt restore`, a notebook logging metrics)
# and close it. The sqlite3 shell must not notice.
part_close() {
    local db=$WORK/close.db t0=$SECONDS ok=1 secs=$(((SECS + 1) / 2)) cycles=0
    "$STRESS_WRITER" --db "$db" --run trainer --seconds "$secs" >"$WORK/wc.out" 2>"$WORK/wc.err" &
    local wpid=$!
    pids+=("$wpid")
    wait_line "$WORK/wc.out" '^committed ' "$wpid" ||
        part_fail "the writer committed nothing in 60 s: $(head -c 2000 "$WORK/wc.err")" || return 1
    WATCH_RUNS=(trainer)
    start_readers "$db" trainer sqlite-only
    local ro=()
    while kill -0 "$wpid" 2>/dev/null; do
        # Alternately read-write and read-only handles (`ckpt list` is one).
        "$STRESS_WRITER" --db "$db" --run trainer --open-close 50 "${ro[@]}" >/dev/null \
            2>"$WORK/oc.err" || {
            part_fail "short-lived handle: $(head -c 1000 "$WORK/oc.err")"
            ok=0
            break
        }
        cycles=$((cycles + 50))
        if [ ${#ro[@]} = 0 ]; then ro=(--readonly); else ro=(); fi
    done
    wait "$wpid"
    local wst=$?
    stop_readers
    check_writer wc "$wst" || ok=0
    local locked
    locked=$(grep -c '^\[' "$ERRORS")
    reader_errors || ok=0
    echo "concurrency: $PART: $cycles open/close cycles (half read-only) beside a saving writer in" \
        "$((SECONDS - t0)) s; sqlite3 shell runs:$(counts sqlite), $locked failed"
    [ $ok = 1 ]
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(one two close)
for PART in "${parts[@]}"; do
    case $PART in
    one) part_one ;;
    two) part_two ;;
    close) part_close ;;
    *)
        echo "concurrency: unknown part '$PART' (one, two, close)"
        exit 2
        ;;
    esac
done
if [ $failed = 0 ]; then
    echo "concurrency: ok (${parts[*]})"
    exit 0
fi
exit 1
