#!/usr/bin/env bash
# train_resume.sh - ckpt-train killed with SIGKILL at random moments (during
# training, metric flushes and checkpoint commits) and resumed ends with the
# same tensor hashes and metric values as an uninterrupted run; so do a
# rollback followed by --resume, and extending a finished run with --epochs.
# Env (set by ctest): CKPT, CKPT_BIN_DIR, CKPT_TEST_TMP. Optional:
# CKPT_FASHION_DIR (default /usr/share/datasets/fashion-mnist),
# TRAIN_KILLS (kills to deliver, default 15).
set -euo pipefail

: "${CKPT:?CKPT must name the ckpt CLI}"
: "${CKPT_BIN_DIR:?CKPT_BIN_DIR must name the build directory}"
: "${CKPT_TEST_TMP:?CKPT_TEST_TMP must name a scratch directory}"
TRAIN="$CKPT_BIN_DIR/ckpt-train"
DATA="${CKPT_FASHION_DIR:-/usr/share/datasets/fashion-mnist}"
KILLS="${TRAIN_KILLS:-15}"

fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$TRAIN" ] || fail "$TRAIN is not built"
[ -r "$DATA/train-images-idx3-ubyte.gz" ] ||
    fail "Fashion-MNIST not found in $DATA (install Debian's dataset-fashion-mnist)"

W="$CKPT_TEST_TMP/train_resume.$$"
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT

# Two hidden layers and a last batch of 16 (2000 = 62 * 32 + 16) exercise
# more of the network code than the default config would.
cat > "$W/small.yaml" <<YAML
model:
  hidden: [64, 32]
optimizer:
  lr: 0.002
  betas: [0.9, 0.99]
train:
  batch_size: 32
  epochs: 3
  seed: 11
  limit_train: 2000
  limit_test: 500
data:
  dir: $DATA
YAML

# Tensor names and content hashes of a checkpoint, one per line.
hashes() { # db ref
    "$CKPT" --db "$1" show --json "$2" | grep -o '"name": "[^"]*".*"hash": "[^"]*"' |
        sed 's/"kind".*"hash"/"hash"/'
}
# Every metric of the run's lineage except the wall-clock one.
metrics() { # db run
    "$CKPT" --db "$1" metrics --json "$2" |
        grep -o '"name": "[^"]*", "epoch": [0-9]*, "step": [0-9]*, "value": [^,}]*' |
        grep -v '"epoch_seconds"' | sort
}
same_run() { # label db-a db-b run epochs
    local label="$1" a="$2" b="$3" run="$4" last="$5"
    for e in $(seq 0 "$last"); do
        hashes "$a" "$run@$e" > "$W/ha"
        hashes "$b" "$run@$e" > "$W/hb"
        [ -s "$W/ha" ] || fail "$label: no tensors in $a $run@$e"
        diff "$W/ha" "$W/hb" > "$W/diff" ||
            { cat "$W/diff" >&2; fail "$label: tensors of epoch $e differ"; }
    done
    metrics "$a" "$run" > "$W/ma"
    metrics "$b" "$run" > "$W/mb"
    [ "$(wc -l < "$W/ma")" -eq $((5 * last)) ] ||
        fail "$label: expected $((5 * last)) metric values in $a, got $(wc -l < "$W/ma")"
    diff "$W/ma" "$W/mb" > "$W/diff" || { cat "$W/diff" >&2; fail "$label: metrics differ"; }
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# --- the reference: one uninterrupted run
t0=$(now_ms)
"$TRAIN" --db "$W/ref.ckpt" --run r --config "$W/small.yaml" > "$W/ref.log" ||
    { cat "$W/ref.log" >&2; fail "reference run failed"; }
span=$(( $(now_ms) - t0 + 20 ))
grep -q 'epoch   3/3' "$W/ref.log" || fail "reference run did not reach epoch 3"

# --- killed at random moments, resumed until a resume finishes by itself;
# several rounds (each a fresh store) so kills land in every phase: start-up,
# the epoch-0 checkpoint, training, metric flushes, commits, run_finish.
killed=0
attempts=0
round=0
while [ "$killed" -lt "$KILLS" ]; do
    round=$((round + 1))
    db="$W/kill.$round.ckpt"
    while :; do
        attempts=$((attempts + 1))
        [ "$attempts" -le $((KILLS * 10)) ] || fail "only $killed kills in $attempts attempts"
        "$TRAIN" --db "$db" --run r --config "$W/small.yaml" --resume > "$W/kill.log" 2>&1 &
        pid=$!
        delay=$(( RANDOM % span ))
        sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
        kill -9 "$pid" 2>/dev/null || true
        rc=0
        { wait "$pid"; } 2>/dev/null || rc=$?
        if [ "$rc" -eq 137 ]; then
            killed=$((killed + 1))
            continue
        fi
        [ "$rc" -eq 0 ] ||
            { cat "$W/kill.log" >&2; fail "attempt $attempts exited with $rc instead of finishing or being killed"; }
        break
    done
    same_run "kill/resume round $round" "$W/ref.ckpt" "$db" r 3
    "$CKPT" --db "$db" verify > "$W/verify.log" 2>&1 ||
        { cat "$W/verify.log" >&2; fail "ckpt verify found damage after the kills of round $round"; }
    "$CKPT" --db "$db" runs > "$W/runs" || fail "ckpt runs failed on $db"
    grep -q 'finished' "$W/runs" || fail "run r is not shown as finished: $(cat "$W/runs")"
done
echo "killed $killed times in $attempts attempts over $round rounds: all bit-identical"

# --- rollback to epoch 1, then --resume redoes epochs 2 and 3 identically
cp "$W/ref.ckpt" "$W/roll.ckpt"
[ ! -e "$W/ref.ckpt-chunks" ] || cp "$W/ref.ckpt-chunks" "$W/roll.ckpt-chunks"
"$CKPT" --db "$W/roll.ckpt" restore r@1 > /dev/null || fail "ckpt restore r@1 failed"
"$TRAIN" --db "$W/roll.ckpt" --run r --resume > "$W/roll.log" ||
    { cat "$W/roll.log" >&2; fail "resume after rollback failed"; }
grep -q 'epoch 1, step 63' "$W/roll.log" || { cat "$W/roll.log" >&2; fail "did not resume from epoch 1"; }
grep -q 'epoch   2/3' "$W/roll.log" || fail "epoch 2 was not retrained after the rollback"
same_run "rollback" "$W/ref.ckpt" "$W/roll.ckpt" r 3

# --- --epochs extends a finished run exactly like a longer run from scratch
"$TRAIN" --db "$W/ref.ckpt" --run r --resume --epochs 4 > "$W/ext.log" ||
    { cat "$W/ext.log" >&2; fail "extending with --epochs 4 failed"; }
"$TRAIN" --db "$W/long.ckpt" --run r --config "$W/small.yaml" --epochs 4 > "$W/long.log" ||
    { cat "$W/long.log" >&2; fail "the 4-epoch run failed"; }
same_run "--epochs" "$W/long.ckpt" "$W/ref.ckpt" r 4

# --- the run's name and config are guarded
rc=0
"$TRAIN" --db "$W/ref.ckpt" --run r --config "$W/small.yaml" > /dev/null 2> "$W/err" || rc=$?
[ "$rc" -eq 1 ] || fail "starting an existing run without --resume exited $rc, expected 1"
grep -q 'already exists' "$W/err" || fail "no 'already exists' message: $(cat "$W/err")"
sed 's/lr: 0.002/lr: 0.003/' "$W/small.yaml" > "$W/other.yaml"
rc=0
"$TRAIN" --db "$W/ref.ckpt" --run r --config "$W/other.yaml" --resume > /dev/null 2> "$W/err" || rc=$?
[ "$rc" -eq 2 ] || fail "--resume with a different config exited $rc, expected 2"
grep -q 'optimizer.lr' "$W/err" || fail "the refusal does not name optimizer.lr: $(cat "$W/err")"
rc=0
"$TRAIN" --db "$W/ref.ckpt" --run nosuch --resume > /dev/null 2> "$W/err" || rc=$?
[ "$rc" -eq 2 ] || fail "--resume of a missing run without --config exited $rc, expected 2"
grep -q 'does not exist' "$W/err" || fail "no 'does not exist' message: $(cat "$W/err")"

echo "PASS"
