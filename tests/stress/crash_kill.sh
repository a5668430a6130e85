#!/usr/bin/env bash
# crash_kill.sh - kill -9 a checkpoint writer at random moments, over and
# over, and after every kill check the store with a read-only opener: every
# checkpoint whole and byte-exact, every reported commit present, `ckpt
# verify` clean, SQLite's integrity check ok on both files.
#
# Env: STRESS_WRITER, STRESS_CHECK, CKPT (programs; set by ctest),
#      CKPT_KILLS (default 60), CKPT_KILLS_PER_STORE (default 12: a fresh store
#      after that many kills keeps the per-kill `ckpt verify` cheap),
#      CKPT_DURABILITY (full|normal|off; default: a mix, mostly full),
#      CKPT_TEST_TMP (where the stores go), CKPT_KEEP=1 keeps them.
set -u -o pipefail
: "${STRESS_WRITER:?}" "${STRESS_CHECK:?}" "${CKPT:?}"
KILLS=${CKPT_KILLS:-60}
PER_STORE=${CKPT_KILLS_PER_STORE:-12}
ROOT=${CKPT_TEST_TMP:-/tmp}
mkdir -p "$ROOT"
WORK=$(mktemp -d "$ROOT/crash_kill.XXXXXX")
RUN=crash
pid=
failed=0

cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null
        { wait "$pid"; } 2>/dev/null
    fi
    if [ "$failed" = 0 ] && [ "${CKPT_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "crash_kill: stores kept in $WORK"
    fi
}
trap cleanup EXIT

die() {
    failed=1
    echo "crash_kill: FAIL after $survived kill(s) survived (kill #$i, store ${CHK:-$DB}, durability" \
        "${dur:-?}, killed after ${how:-?} in phase '${phase:-?}'): $*"
    echo "--- writer stdout (last lines):"; tail -5 "$OUT" 2>/dev/null
    echo "--- writer stderr:"; head -c 2000 "$ERR" 2>/dev/null
    exit 1
}

now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
}

# The last event the writer printed says where the kill landed.
phase_of() {
    local last
    last=$(tail -n 1 "$1" 2>/dev/null | cut -d' ' -f1)
    case "$last" in
    "" | open) echo startup ;;
    start | committed) echo between ;;
    flush) echo flush ;;
    begin) echo puts ;;
    commit) echo commit ;;
    *) echo "$last" ;;
    esac
}

# Waits until the writer has printed a line matching $1 for the $2-th time
# (gives up if it died or after 20 s).
wait_for_line() {
    local re=$1 n=$2 deadline=$((SECONDS + 20))
    while [ "$(grep -c "$re" "$OUT" 2>/dev/null)" -lt "$n" ]; do
        kill -0 "$pid" 2>/dev/null || return 1
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.001
    done
}

# Full check of the last store: every checkpoint byte for byte, ckpt_verify.
final_check() {
    local out
    out=$("$STRESS_CHECK" --db "$DB" --run "$RUN" --committed "$COMMITTED" 2>&1) ||
        die "final full check of $DB failed:
$out"
    echo "crash_kill: store $store done: $(echo "$out" | grep "checkpoints (" | sed 's/^stress_check: //')"
}

declare -A phases=([startup]=0 [flush]=0 [puts]=0 [commit]=0 [between]=0)
survived=0
journals=0
hot=0
uncreated=0
left=0
ms_writer=0
ms_check=0
wals=0
store=0
started=0
checkpoints_total=0
# Five entries against the three kill modes below: every pairing comes up.
durs=(full full normal full off)
t_start=$SECONDS
DB=
OUT=$WORK/writer.out
ERR=$WORK/writer.err
for ((i = 1; i <= KILLS; i++)); do
    if (((i - 1) % PER_STORE == 0)); then
        if [ -n "$DB" ]; then
            # The check after its last kill covered this store; only the last
            # store gets the full byte-for-byte pass again (time).
            echo "crash_kill: store $store done: $last_count checkpoints"
            checkpoints_total=$((checkpoints_total + last_count))
            [ "${CKPT_KEEP:-0}" = 1 ] || rm -rf "$(dirname "$DB")"
        fi
        store=$((store + 1))
        mkdir -p "$WORK/store$store"
        DB=$WORK/store$store/s.db
        COMMITTED=$WORK/store$store/committed
        : >"$COMMITTED"
        last_count=0
        started=0
    fi
    dur=${CKPT_DURABILITY:-${durs[i % ${#durs[@]}]}}
    t0=$(now_ms)
    # Emptied here, not only by the child's redirection: a kill aimed at an
    # event must never be triggered by the previous writer's lines.
    : >"$OUT"
    : >"$ERR"
    "$STRESS_WRITER" --db "$DB" --run "$RUN" --durability "$dur" >"$OUT" 2>"$ERR" &
    pid=$!
    # A third of the kills at a random time in 0-300 ms from the start (so
    # also during opening and resuming); a third aimed inside
    # ckpt_writer_commit; a third either at a metrics flush or 0-300 ms after
    # the first or second commit returned (any phase of a later epoch). Aiming at
    # events rather than only at times keeps every phase covered when the
    # machine is slow.
    case $((i % 3)) in
    0)
        n=$((1 + RANDOM % 2))
        ms=$((RANDOM % 25))
        how="commit #$n + $ms ms"
        wait_for_line '^commit ' "$n" && sleep "$(printf '0.%03d' "$ms")"
        ;;
    1)
        ms=$((RANDOM % 301))
        how="$ms ms"
        sleep "$(printf '0.%03d' "$ms")"
        ;;
    2)
        n=$((1 + RANDOM % 2))
        if ((RANDOM % 2)); then
            # Right away at the metrics flush of a later epoch (a few ms).
            how="flush #$((n + 1))"
            wait_for_line '^flush ' $((n + 1))
        else
            ms=$((RANDOM % 301))
            how="committed #$n + $ms ms"
            wait_for_line '^committed ' "$n" && sleep "$(printf '0.%03d' "$ms")"
        fi
        ;;
    esac
    kill -9 "$pid" 2>/dev/null
    { wait "$pid"; } 2>/dev/null # no "Killed" line from bash
    st=$?
    pid=
    [ "$st" = 137 ] || die "the writer was not killed: it exited with status $st on its own"
    t1=$(now_ms)
    ms_writer=$((ms_writer + t1 - t0))
    phase=$(phase_of "$OUT")
    phases[$phase]=$((${phases[$phase]:-0} + 1))
    grep '^committed ' "$OUT" >>"$COMMITTED"
    grep -q '^start ' "$OUT" && started=1
    # A journal whose header is not zeroed is hot: the chunk commit was cut
    # between syncing the journal and deleting it.
    if [ -s "$DB-chunks-journal" ]; then
        journals=$((journals + 1))
        [ "$(head -c 8 "$DB-chunks-journal" | od -An -tx1 | tr -d ' \n')" != 0000000000000000 ] &&
            hot=$((hot + 1))
    fi
    [ -s "$DB-wal" ] && wals=$((wals + 1))

    # Every other kill is checked on a copy of the files (taken while no
    # process has them open, so the crash state is kept whole), which leaves
    # the hot journal or WAL to the next writer to recover itself.
    CHK=$DB
    if ((i % 2 == 0)); then
        rm -rf "$WORK/copy"
        mkdir "$WORK/copy"
        cp -p "$DB"* "$WORK/copy/" || die "cannot copy the store"
        CHK=$WORK/copy/$(basename "$DB")
        left=$((left + 1))
    fi
    # 1. The checker, read-only, on the store exactly as the kill left it:
    #    structure of every checkpoint, bytes of the ones new since the last
    #    kill, every reported commit present, and the run shown interrupted.
    status_arg=()
    [ "$started" = 1 ] && status_arg=(--status interrupted)
    if out=$("$STRESS_CHECK" --db "$CHK" --run "$RUN" --committed "$COMMITTED" --no-verify \
        --full-from "$last_count" --min-checkpoints "$(wc -l <"$COMMITTED")" \
        "${status_arg[@]}" 2>&1); then
        last_count=$(echo "$out" | sed -n "s/^stress_check: run '$RUN': \([0-9]*\) checkpoints.*/\1/p")
        [ -n "$last_count" ] || die "checker printed no checkpoint count:
$out"
        # 2. ckpt verify: integrity of both files, every chunk against its hash.
        out=$("$CKPT" --db "$CHK" verify 2>&1) || die "ckpt verify:
$out"
    elif [ "$started" = 0 ] && [ "$last_count" = 0 ] && echo "$out" | grep -q 'FAIL cannot open store'; then
        # No writer of this store got past ckpt_open yet: the kill cut the
        # store's creation, and a read-only opener may refuse the half-made
        # store. The next writer must complete it (its status is checked).
        uncreated=$((uncreated + 1))
        echo "crash_kill: kill #$i cut the creation of $CHK; read-only open said: $(echo "$out" | head -n 1)"
    else
        die "checker:
$out"
    fi
    # 3. SQLite's own integrity check of both files, with the sqlite3 shell
    #    (only of files that exist: the shell would create a missing one).
    for f in "$CHK" "$CHK-chunks"; do
        [ -e "$f" ] || continue
        out=$(sqlite3 "$f" 'PRAGMA integrity_check' 2>&1)
        [ "$out" = ok ] || die "sqlite3 $f 'PRAGMA integrity_check': $out"
    done
    ms_check=$((ms_check + $(now_ms) - t1))
    survived=$((survived + 1))
done
final_check
checkpoints_total=$((checkpoints_total + last_count))

i=self-test how=- phase=- dur=-
# The checks must be able to fail: damage copies of the last store in ways
# the library cannot see coming and expect the checker (and verify) to say so.
# expect_fail WHAT PATTERN SQL [ARGS...]: fresh copy, SQL on it, checker run.
expect_fail() {
    local what=$1 pattern=$2 sql=$3 out
    shift 3
    rm -rf "$WORK/damaged"
    mkdir "$WORK/damaged"
    cp -p "$DB"* "$WORK/damaged/"
    cp "$COMMITTED" "$WORK/damaged/committed"
    local d
    d=$WORK/damaged/$(basename "$DB")
    case $sql in
    chunks:*) sqlite3 "$d-chunks" "${sql#chunks:}" ;;
    committed:*) echo "${sql#committed:}" >>"$WORK/damaged/committed" ;;
    *) sqlite3 "$d" "$sql" ;;
    esac || die "self-test '$what': cannot damage the copy"
    if out=$("$STRESS_CHECK" --db "$d" --run "$RUN" --committed "$WORK/damaged/committed" "$@" 2>&1); then
        die "self-test: the checker passed a store with $what:
$out"
    fi
    echo "$out" | grep -q "$pattern" || die "self-test '$what': the checker failed without
saying '$pattern':
$out"
}
expect_fail "a reported commit missing" "the writer reported it committed" \
    "committed:committed $RUN 100000 1"
expect_fail "a manifest row missing" "partial checkpoint" \
    "DELETE FROM tensors WHERE id = (SELECT max(id) FROM tensors)" --no-verify
expect_fail "damaged chunk bytes" "content does not match its hash" \
    "chunks:UPDATE chunks SET data = zeroblob(length(data)) WHERE codec = 1 AND length(data) > 8"
# (metric_values is keyed series_id * 2^40 + step; see schema/main)
expect_fail "a changed metric" "metric 'loss' step 3" \
    "UPDATE metric_values SET value = value + 1 WHERE key IN
       (SELECT id * 1099511627776 + 3 FROM metric_series WHERE name = 'loss')" --no-verify
sqlite3 "$WORK/damaged/$(basename "$DB")-chunks" \
    "UPDATE chunks SET data = zeroblob(length(data)) WHERE codec = 1 AND length(data) > 8" &&
    ! "$CKPT" --db "$WORK/damaged/$(basename "$DB")" verify >/dev/null 2>&1 ||
    die "self-test: ckpt verify passed a store with damaged chunk bytes"
echo "crash_kill: self-test ok: the checker and ckpt verify fail on a missing commit, a" \
    "partial manifest, damaged chunk bytes and a changed metric"

echo "crash_kill: survived $survived kills in $((SECONDS - t_start)) s over $store store(s);" \
    "$checkpoints_total checkpoints committed and checked (writers ran $((ms_writer / 1000)) s," \
    "checks after kills took $((ms_check / 1000)) s)"
echo "crash_kill: kills by phase: startup ${phases[startup]}, metrics flush ${phases[flush]}," \
    "puts ${phases[puts]}, inside ckpt_writer_commit ${phases[commit]}, between epochs" \
    "${phases[between]}"
echo "crash_kill: kills checked on a copy, leaving the recovery to the next writer: $left;" \
    "kills that cut the creation of a store: $uncreated"
echo "crash_kill: left a chunk journal $journals time(s) ($hot of them hot), a non-empty WAL" \
    "$wals time(s)"
