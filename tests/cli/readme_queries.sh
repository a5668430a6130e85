#!/usr/bin/env bash
# readme_queries.sh - every ```sql block of README.md runs, as printed, in the
# plain sqlite3 shell against a store the demo trainer made (a small subset,
# with a rollback so abandoned checkpoints exist).
set -u
: "${CKPT:?}" "${CKPT_BIN_DIR:?}" "${CKPT_SRC_DIR:?}"
T=$(mktemp -d "${CKPT_TEST_TMP:-/tmp}/readme.XXXXXX")
db="$T/demo.db"
cfg="$T/small.yaml"
cat > "$cfg" <<'YAML'
model: {hidden: [16]}
optimizer: {lr: 0.002}
train: {batch_size: 32, epochs: 3, seed: 7, limit_train: 2000, limit_test: 500}
YAML
[ -n "${CKPT_FASHION_DIR:-}" ] && printf 'data: {dir: %s}\n' "$CKPT_FASHION_DIR" >> "$cfg"
"$CKPT_BIN_DIR/ckpt-train" --db "$db" --run fashion --config "$cfg" >/dev/null || { echo "trainer failed"; exit 1; }
"$CKPT" --db "$db" restore fashion@1 >/dev/null || exit 1
"$CKPT_BIN_DIR/ckpt-train" --db "$db" --run fashion --config "$cfg" --resume >/dev/null || exit 1
fails=0 n=0
while IFS= read -r -d '' q; do
    n=$((n + 1))
    out=$(sqlite3 -bail "$db" "$q" 2>&1)
    if [ $? -ne 0 ] || [ -z "$out" ] || echo "$out" | grep -qi "error"; then
        echo "FAIL query $n: $q"; echo "  -> $out"; fails=$((fails + 1))
    else
        echo "ok   query $n ($(echo "$out" | wc -l) rows)"
    fi
done < <(awk '/^```sql$/{f=1; q=""; next} /^```$/{if(f){printf "%s%c", q, 0}; f=0; next} f{q=q $0 "\n"}' "$CKPT_SRC_DIR/README.md")
# After the rollback and resume, an abandoned checkpoint shares the head's
# epoch and step: joining on those counts its tensors twice, joining on
# checkpoint_id (as the README does) does not.
dup_sql() { echo "SELECT count(*) FROM (SELECT t.run, t.name FROM v_tensors t $1 GROUP BY 1, 2 HAVING count(*) > 1)"; }
by_epoch=$(sqlite3 "$db" "$(dup_sql "JOIN v_runs r ON r.run = t.run AND r.head_epoch = t.epoch AND r.head_step = t.step")")
by_id=$(sqlite3 "$db" "$(dup_sql "JOIN v_checkpoints c ON c.checkpoint_id = t.checkpoint_id WHERE c.is_head")")
if [ "$by_epoch" -gt 0 ] && [ "$by_id" = 0 ]; then
    echo "ok   head tensors: $by_id duplicates by checkpoint_id ($by_epoch by epoch and step)"
else
    echo "FAIL head tensors: $by_id duplicates by checkpoint_id, $by_epoch by epoch and step"; fails=$((fails + 1))
fi
[ "$n" -ge 5 ] || { echo "FAIL: only $n sql blocks in README"; fails=$((fails + 1)); }
rm -rf "$T"
exit $((fails > 0))
