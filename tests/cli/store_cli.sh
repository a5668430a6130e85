#!/usr/bin/env bash
# store_cli.sh - the ckpt CLI on real stores: import/restore round trip with
# an independent safetensors writer, malformed files refused with the store
# unchanged, rollback and lineage, exit codes, --help and --json.
set -u
: "${CKPT:?}" "${CKPT_BIN_DIR:?}" "${CKPT_SRC_DIR:?}"
T=$(mktemp -d "${CKPT_TEST_TMP:-/tmp}/cli.XXXXXX")
PY="python3 $CKPT_SRC_DIR/tests/cli/make_safetensors.py"
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
# expect CODE CMD...: runs CMD, checks its exit code
expect() {
    local want=$1; shift
    "$@" >"$T/out" 2>"$T/err"
    local got=$?
    if [ "$got" = "$want" ]; then ok "exit $got: $*"; else bad "exit $got (want $want): $* -- $(head -c 400 "$T/err")"; fi
}
db="$T/s.db"
export CKPT_DB="$db"

# Read-only commands on a missing store say so and create nothing.
expect 1 "$CKPT" list
grep -q "no ckpt store" "$T/err" && ok "missing store named" || bad "missing store message: $(cat "$T/err")"
[ ! -e "$db" ] && ok "list did not create a store" || bad "list created $db"
expect 0 "$CKPT" init
expect 0 "$CKPT" init

# Import an independent writer's file; export it back; tensors identical.
$PY good "$T/in.safetensors"
expect 0 "$CKPT" import "$T/in.safetensors" --run imp --epoch 1 --step 7
expect 0 "$CKPT" show imp --json
grep -q '"name": "encoder.weight", "kind": "model", "dtype": "f32", "shape": \[20, 30\], "nbytes": 2400' "$T/out" \
    && ok "show --json shape" || bad "show --json: $(cat "$T/out")"
expect 0 "$CKPT" restore imp@1 -o "$T/out.safetensors"
$PY compare "$T/in.safetensors" "$T/out.safetensors" && ok "round trip identical" || bad "round trip differs"
# Re-import the export: same content hashes.
expect 0 "$CKPT" import "$T/out.safetensors" --run imp2 --epoch 1
h1=$("$CKPT" show imp --json | grep -o '"hash": "[0-9a-f]*"' | sort)
h2=$("$CKPT" show imp2 --json | grep -o '"hash": "[0-9a-f]*"' | sort)
[ -n "$h1" ] && [ "$h1" = "$h2" ] && ok "re-import keeps hashes" || bad "hashes differ after re-import"

# Two checkpoints of one epoch, the later (the head) at the lower step:
# exporting the head writes the head, and import reports its own tensors.
$PY small "$T/s1.safetensors" 1
$PY small "$T/s2.safetensors" 2
expect 0 "$CKPT" import "$T/in.safetensors" --run twin --epoch 1 --step 200
grep -q "(step 200, 8 tensors)" "$T/out" && ok "import counts its tensors" || bad "import output: $(cat "$T/out")"
expect 0 "$CKPT" import "$T/s2.safetensors" --run twin --epoch 1 --step 100
grep -q "(step 100, 2 tensors)" "$T/out" && ok "import counts its own tensors, not the epoch's" || bad "import output: $(cat "$T/out")"
expect 0 "$CKPT" restore twin -o "$T/twin.safetensors"
$PY compare "$T/s2.safetensors" "$T/twin.safetensors" && ok "restore -o of the head writes the head" \
    || bad "restore -o wrote another checkpoint than the head"
grep -q "step 100, 2 tensors" "$T/out" && ok "restore -o reports the head" || bad "restore -o output: $(cat "$T/out")"
# The same epoch and step again on the run's line: refused, store unchanged.
n_before=$(sqlite3 "$db" "SELECT count(*) FROM checkpoints")
expect 1 "$CKPT" import "$T/s1.safetensors" --run twin --epoch 1 --step 100
grep -q "already has a checkpoint at epoch 1 step 100" "$T/err" && ok "duplicate import named" || bad "duplicate import message: $(cat "$T/err")"
[ "$(sqlite3 "$db" "SELECT count(*) FROM checkpoints")" = "$n_before" ] && ok "duplicate import stored nothing" || bad "duplicate import stored a checkpoint"
expect 2 "$CKPT" import "$T/s1.safetensors" --run "" --epoch 1

# Malformed files: refused, clear message, store unchanged.
mkdir "$T/bad"
$PY bad "$T/bad"
before=$(sqlite3 "$db" "SELECT count(*) FROM runs; SELECT count(*) FROM checkpoints; SELECT count(*) FROM tensors")
cbefore=$(sqlite3 "$db-chunks" "SELECT count(*) FROM chunks")
for f in "$T"/bad/*.safetensors; do
    expect 1 "$CKPT" import "$f" --run "bad$(basename "$f" .safetensors)" --epoch 1
    grep -q "$(basename "$f")" "$T/err" && ok "message names $(basename "$f"): $(head -c 160 "$T/err")" \
        || bad "message lacks file name: $(cat "$T/err")"
done
after=$(sqlite3 "$db" "SELECT count(*) FROM runs; SELECT count(*) FROM checkpoints; SELECT count(*) FROM tensors")
cafter=$(sqlite3 "$db-chunks" "SELECT count(*) FROM chunks")
[ "$before" = "$after" ] && [ "$cbefore" = "$cafter" ] && ok "bad imports changed nothing" || bad "store changed by bad imports"

# Three checkpoints and metrics from the example program; rollback; lineage.
"$CKPT_BIN_DIR/ckpt-example" "$db" >/dev/null || bad "example program"
expect 0 "$CKPT" list example
[ "$(grep -c '^example ' "$T/out")" = 3 ] && ok "list shows 3 checkpoints" || bad "list: $(cat "$T/out")"
# JSON keeps every digit of a metric value: list and runs agree with metrics.
full=$("$CKPT" metrics example --json | grep -o '"name": "loss", "epoch": 3, "step": [0-9]*, "value": [^,]*' | tail -1 | sed 's/.*"value": //')
expect 0 "$CKPT" list example --json
grep -q "\"loss\": $full" "$T/out" && [ "${#full}" -gt 8 ] && ok "list --json keeps full precision ($full)" \
    || bad "list --json loses precision of $full: $(grep -o '"loss": [^,}]*' "$T/out" | head -3)"

# Metric names are escaped in JSON: a copy of the store whose series name
# holds a quote, a backslash and a tab still gives JSON that parses.
cp "$db" "$T/esc.db" && cp "$db-chunks" "$T/esc.db-chunks"
[ -e "$db-wal" ] && cp "$db-wal" "$T/esc.db-wal"
sqlite3 "$T/esc.db" "UPDATE metric_series SET name = 'lo\"s' || char(92) || char(9) || 's' WHERE name = 'loss'"
for c in list runs; do
    "$CKPT" --db "$T/esc.db" "$c" --json > "$T/esc.json" 2>"$T/err"
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d = d if isinstance(d, list) else [d]
assert any("lo\"s\\\ts" in r.get("metrics", {}) for r in d), d' "$T/esc.json" \
        && ok "$c --json escapes metric names" || bad "$c --json with an odd metric name: $(head -c 300 "$T/esc.json")"
done
expect 0 "$CKPT" restore example@1
expect 0 "$CKPT" list example --json
[ "$(grep -o '"abandoned": true' "$T/out" | wc -l)" = 2 ] && ok "two abandoned after rollback" || bad "abandoned: $(cat "$T/out")"
expect 0 "$CKPT" log example
grep -q "abandoned" "$T/out" && grep -q "<- head" "$T/out" && ok "log draws the branch" || bad "log: $(cat "$T/out")"
expect 0 "$CKPT" metrics example --all
grep -q abandoned "$T/out" && ok "metrics --all shows abandoned values" || bad "metrics --all: $(cat "$T/out")"
expect 0 "$CKPT" runs --json
grep -q '"run": "example", "status": "new"' "$T/out" && ok "runs --json" || bad "runs --json: $(cat "$T/out")"
expect 0 "$CKPT" verify
expect 0 "$CKPT" verify example@2

# Prune: the head is refused; an abandoned checkpoint goes, the rest stays intact.
expect 1 "$CKPT" prune example@1
grep -q "head" "$T/err" && ok "prune refuses the head" || bad "prune head message: $(cat "$T/err")"
expect 0 "$CKPT" prune example@3 --json
grep -q '"deleted": 1' "$T/out" && ok "prune --json" || bad "prune output: $(cat "$T/out")"
[ "$("$CKPT" list example | grep -c '^example ')" = 2 ] && ok "two checkpoints left" || bad "list after prune"
expect 0 "$CKPT" verify
expect 0 "$CKPT" gc

# Usage errors exit 2; unknown objects exit 1 with a message naming them.
expect 2 "$CKPT" bogus
expect 2 "$CKPT" show
expect 2 "$CKPT" show "r@x"
expect 2 "$CKPT" show "r@-1"
expect 2 "$CKPT" list --frobnicate
expect 2 "$CKPT" runs --all
grep -q "unknown option '--all'" "$T/err" && ok "runs names the unknown option" || bad "runs --all: $(cat "$T/err")"
expect 2 "$CKPT" import "$T/in.safetensors" --run x
expect 2 "$CKPT" import "$T/in.safetensors" --run x --epoch 1e3
expect 1 "$CKPT" show nosuchrun
grep -q nosuchrun "$T/err" && ok "names the missing run" || bad "missing run message: $(cat "$T/err")"
expect 1 "$CKPT" show example@42
grep -q "epoch 42" "$T/err" && ok "names the missing epoch" || bad "missing epoch message: $(cat "$T/err")"
for c in init runs list show restore import metrics verify log prune gc; do
    expect 0 "$CKPT" "$c" --help
done
expect 0 "$CKPT" --help

# Not a store: refused and untouched.
echo "just text" > "$T/text.db"
expect 1 "$CKPT" --db "$T/text.db" init
[ "$(cat "$T/text.db")" = "just text" ] && [ ! -e "$T/text.db-chunks" ] && ok "text file untouched" || bad "text file changed"

# An export carries the run's config; importing it into a new run keeps it.
expect 0 "$CKPT" restore example@2 -o "$T/ex.safetensors"
expect 0 "$CKPT" import "$T/ex.safetensors" --run excopy --epoch 2
[ "$(sqlite3 "$db" "SELECT value FROM v_params WHERE run = 'excopy' AND key = 'optimizer.lr'")" = "0.001" ] \
    && ok "import keeps the exported config" || bad "config lost on export/import"

# Damage a chunk: verify names the tensor and exits 1; restore refuses.
id=$(sqlite3 "$db-chunks" "SELECT id FROM chunks WHERE raw_len = 2400")
sqlite3 "$db-chunks" "UPDATE chunks SET data = zeroblob(length(data)) WHERE id = $id" 2>/dev/null \
  || python3 - "$db-chunks" "$id" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("UPDATE chunks SET data = zeroblob(length(data)) WHERE id = ?", (int(sys.argv[2]),)); c.commit()
PY
expect 1 "$CKPT" verify
grep -q "tensor 'encoder.weight'" "$T/out" && ok "verify names the damaged tensor" || bad "verify output: $(cat "$T/out")"
expect 1 "$CKPT" restore imp@1 -o "$T/damaged.safetensors"
grep -qi "corrupt\|does not match" "$T/err" && ok "restore refuses damaged data" || bad "restore message: $(cat "$T/err")"
[ ! -e "$T/damaged.safetensors" ] && ok "no partial export left" || bad "partial export file exists"

rm -rf "$T"
[ $fails = 0 ] && echo "all CLI checks passed" || echo "$fails CLI check(s) failed"
exit $((fails > 0))
