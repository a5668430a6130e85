#!/usr/bin/env bash
# train_damaged_head.sh - a damaged head is detected on resume, which names
# the newest intact checkpoint; `ckpt restore` to it and resuming finish the
# run bit-identical to an undamaged one, and the re-save heals the chunk.
set -u
: "${CKPT:?}" "${CKPT_BIN_DIR:?}"
T=$(mktemp -d "${CKPT_TEST_TMP:-/tmp}/damaged.XXXXXX")
TRAIN="$CKPT_BIN_DIR/ckpt-train"
fail() { echo "FAIL: $*"; exit 1; }
cat > "$T/c.yaml" <<'YAML'
model: {hidden: [24]}
train: {batch_size: 32, epochs: 3, seed: 3, limit_train: 1500, limit_test: 300}
YAML
[ -n "${CKPT_FASHION_DIR:-}" ] && printf 'data: {dir: %s}\n' "$CKPT_FASHION_DIR" >> "$T/c.yaml"
"$TRAIN" --db "$T/ref.db" --run r --config "$T/c.yaml" >/dev/null || fail "reference run"
"$TRAIN" --db "$T/d.db" --run r --config "$T/c.yaml" >/dev/null || fail "second run"
ref=$("$CKPT" --db "$T/ref.db" show r --json | grep -o '"hash": "[0-9a-f]*"')

# Damage the first chunk of the head's dense_0.kernel (unique to epoch 3).
hex=$(sqlite3 "$T/d.db" "SELECT hex(substr(t.chunks, 1, 8)) FROM tensors t JOIN checkpoints c ON c.id = t.checkpoint_id WHERE c.epoch = 3 AND t.name = 'dense_0.kernel'")
[ -n "$hex" ] || fail "no head tensor found"
id=0
for i in 7 6 5 4 3 2 1 0; do id=$(( (id << 8) | 0x${hex:$((2 * i)):2} )); done
sqlite3 "$T/d.db-chunks" "UPDATE chunks SET data = zeroblob(length(data)) WHERE id = $id" || fail "damaging chunk $id"

"$TRAIN" --db "$T/d.db" --run r --config "$T/c.yaml" --resume >"$T/out" 2>"$T/err" && fail "resume on a damaged head succeeded"
grep -q "damaged" "$T/err" && grep -q "newest intact checkpoint is epoch 2" "$T/err" && grep -q "restore r@2" "$T/err" \
    || fail "resume message: $(cat "$T/err")"
echo "ok   resume refused: $(head -c 300 "$T/err")"
"$CKPT" --db "$T/d.db" verify >/dev/null && fail "verify passed on a damaged store"
"$CKPT" --db "$T/d.db" restore r@2 >/dev/null || fail "restore r@2"
"$TRAIN" --db "$T/d.db" --run r --config "$T/c.yaml" --resume >/dev/null 2>"$T/err" || fail "resume after restore: $(cat "$T/err")"
got=$("$CKPT" --db "$T/d.db" show r --json | grep -o '"hash": "[0-9a-f]*"')
[ "$got" = "$ref" ] || fail "final hashes differ from the undamaged run"
echo "ok   finished bit-identical to the undamaged run"
"$CKPT" --db "$T/d.db" verify >"$T/out" || fail "verify after the re-save: $(cat "$T/out")"
echo "ok   the re-save healed the damaged chunk: $(tail -1 "$T/out")"
rm -rf "$T"
