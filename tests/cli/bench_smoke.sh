#!/usr/bin/env bash
# bench_smoke.sh - ckpt-bench runs end to end in a tiny configuration (4 MiB
# state, small list store, few metrics, one run per measurement) and its
# last line is one JSON object with every documented key. No figure is
# checked against a target: this only proves the benchmark works.
# Env (set by ctest): CKPT_BIN_DIR, CKPT_SRC_DIR, CKPT_TEST_TMP.
set -euo pipefail

: "${CKPT_BIN_DIR:?CKPT_BIN_DIR must name the build directory}"
: "${CKPT_SRC_DIR:?CKPT_SRC_DIR must name the source directory}"
: "${CKPT_TEST_TMP:?CKPT_TEST_TMP must name a scratch directory}"
BENCH="$CKPT_BIN_DIR/ckpt-bench"

fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$BENCH" ] || fail "$BENCH is not built"

W="$CKPT_TEST_TMP/bench_smoke.$$"
rm -rf "$W"
mkdir -p "$W/d"
trap 'rm -rf "$W"' EXIT

# ckpt-train and torch/numpy are used when present; absent ones give null.
"$BENCH" --size-mib 4 --epochs 2 --reps 1 --metrics 20000 --list-checkpoints 150 \
    --trained-limit 200 --trained-epochs 1 --dir "$W/d" > "$W/out" 2> "$W/err" ||
    { cat "$W/out" "$W/err" >&2; fail "ckpt-bench exited with $?"; }

grep -q '^metric ' "$W/out" || { cat "$W/out" >&2; fail "no table printed"; }
[ -z "$(ls -A "$W/d")" ] || fail "ckpt-bench left files behind: $(ls -A "$W/d")"

# The last line: a JSON object with every key; the measurements that need
# nothing outside this build must be numbers.
tail -n 1 "$W/out" > "$W/last"
PY=python3
command -v "$PY" > /dev/null || PY=/usr/bin/python3
"$PY" - "$W/last" <<'PYEOF' || { cat "$W/out" "$W/err" >&2; fail "bad JSON line"; }
import json, sys
with open(sys.argv[1]) as f:
    d = json.loads(f.read())
keys = ["save_vs_raw_write", "restore_vs_raw_read", "epoch_stored_fraction",
        "compression_ratio_trained", "metrics_per_s", "list_ms_10k",
        "peak_rss_save_mib", "peak_rss_restore_mib", "save_vs_torch",
        "restore_vs_torch", "save_vs_numpy", "restore_vs_numpy",
        "save_write_amplification"]
missing = [k for k in keys if k not in d]
if missing:
    sys.exit("missing keys: %s" % missing)
for k in keys:
    if d[k] is not None and not (isinstance(d[k], (int, float)) and d[k] >= 0):
        sys.exit("%s is %r, not a number >= 0 or null" % (k, d[k]))
must = ["save_vs_raw_write", "restore_vs_raw_read", "epoch_stored_fraction",
        "metrics_per_s", "list_ms_10k", "peak_rss_save_mib", "peak_rss_restore_mib"]
for k in must:
    if not isinstance(d[k], (int, float)) or d[k] <= 0:
        sys.exit("%s is %r, expected a positive number" % (k, d[k]))
# Half the layers frozen: a later epoch cannot store more than it holds.
if not d["epoch_stored_fraction"] <= 1.05:
    sys.exit("epoch_stored_fraction %r above 1" % d["epoch_stored_fraction"])
PYEOF

# Bad command lines are refused with exit status 2 before any work.
rc=0; "$BENCH" --size-mib 0 > /dev/null 2> "$W/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q -- '--size-mib' "$W/err" || fail "--size-mib 0: exit $rc"
rc=0; "$BENCH" --frozen 1.5 > /dev/null 2> "$W/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q -- '--frozen' "$W/err" || fail "--frozen 1.5: exit $rc"
rc=0; "$BENCH" --codec zstd > /dev/null 2> "$W/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q -- '--codec' "$W/err" || fail "--codec zstd: exit $rc"
rc=0; "$BENCH" --bogus > /dev/null 2> "$W/err" || rc=$?
[ "$rc" -eq 2 ] || fail "--bogus: exit $rc"
"$BENCH" --help | grep -q -- '--size-mib' || fail "--help does not document --size-mib"

# --codec raw: the first checkpoint of random-like data is stored whole.
"$BENCH" --codec raw --size-mib 4 --epochs 2 --reps 1 --metrics 1000 --skip-torch --skip-trained \
    --skip-list --skip-rss --dir "$W/d" > "$W/out" 2> "$W/err" ||
    { cat "$W/out" "$W/err" >&2; fail "ckpt-bench --codec raw exited with $?"; }
grep -q 'codec raw' "$W/out" || fail "--codec raw not reported"
grep -q 'stored fraction per epoch: 1: 1.000' "$W/out" || fail "--codec raw stored a compressed epoch"
echo "bench_smoke: ok"
