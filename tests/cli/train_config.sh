#!/usr/bin/env bash
# train_config.sh - ckpt-train refuses bad configs (unknown key, wrong type,
# out-of-range value, YAML syntax) with exit 2 and a message naming the key,
# and a missing or damaged dataset file with exit 1 and a message naming the
# file, without creating the run.
# Env (set by ctest): CKPT, CKPT_BIN_DIR, CKPT_TEST_TMP. Optional:
# CKPT_FASHION_DIR (default /usr/share/datasets/fashion-mnist).
set -euo pipefail

: "${CKPT:?CKPT must name the ckpt CLI}"
: "${CKPT_BIN_DIR:?CKPT_BIN_DIR must name the build directory}"
: "${CKPT_TEST_TMP:?CKPT_TEST_TMP must name a scratch directory}"
TRAIN="$CKPT_BIN_DIR/ckpt-train"
DATA="${CKPT_FASHION_DIR:-/usr/share/datasets/fashion-mnist}"

fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$TRAIN" ] || fail "$TRAIN is not built"
[ -r "$DATA/train-images-idx3-ubyte.gz" ] ||
    fail "Fashion-MNIST not found in $DATA (install Debian's dataset-fashion-mnist)"

W="$CKPT_TEST_TMP/train_config.$$"
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
DB="$W/s.ckpt"
n=0

# write_config FILE DATADIR [EXTRA-YAML-LINES...]: a small valid config,
# with train: and optimizer: keys overridable by what follows.
base_config() { # datadir
    cat <<YAML
model:
  hidden: [8]
train:
  epochs: 1
  limit_train: 200
  limit_test: 100
data:
  dir: $1
YAML
}

# expect CODE PATTERN CONFIG-FILE: ckpt-train must exit CODE and print
# PATTERN (grep -E) on stderr, and leave no run behind.
expect() {
    local code="$1" pattern="$2" cfg="$3" rc=0
    n=$((n + 1))
    "$TRAIN" --db "$DB" --run "r$n" --config "$cfg" > "$W/out" 2> "$W/err" || rc=$?
    [ "$rc" -eq "$code" ] ||
        { cat "$W/out" "$W/err" >&2; fail "$cfg: exit status $rc, expected $code"; }
    grep -Eq -- "$pattern" "$W/err" ||
        fail "$cfg: message does not match '$pattern': $(cat "$W/err")"
    if [ -e "$DB" ]; then
        "$CKPT" --db "$DB" runs > "$W/runs" || fail "ckpt runs failed on $DB"
        ! grep -q "^r$n " "$W/runs" || fail "$cfg: run r$n was created anyway"
    fi
    echo "ok: $(basename "$cfg"): $(head -1 "$W/err")"
}

# conf NAME YAML: writes config NAME (the YAML replaces the whole file).
conf() { printf '%s\n' "$2" > "$W/$1.yaml"; echo "$W/$1.yaml"; }

# --- a good config trains (so the refusals below are about what they change)
base_config "$DATA" > "$W/good.yaml"
"$TRAIN" --db "$DB" --run good --config "$W/good.yaml" > "$W/out" ||
    fail "the valid config was refused: $(cat "$W/out")"

# --- configs
expect 2 'unknown key optimizer\.lrr' "$(conf unknown "$(base_config "$DATA")
optimizer:
  lrr: 0.1")"
expect 2 'unknown key train\.batch' "$(conf unknown2 "train:
  batch: 32")"
expect 2 'unknown key model\b' "$(conf unknown3 "model: 5")"
expect 2 'key optimizer\.lr: -0\.1 is out of range' "$(conf neg_lr "optimizer:
  lr: -0.1")"
expect 2 'key optimizer\.lr: 0 is out of range' "$(conf zero_lr "optimizer:
  lr: 0")"
expect 2 'key train\.batch_size: 0 is out of range' "$(conf zero_batch "train:
  batch_size: 0")"
expect 2 'key train\.batch_size: expected an integer' "$(conf str_batch "train:
  batch_size: thirty-two")"
expect 2 'key train\.batch_size: expected an integer' "$(conf float_batch "train:
  batch_size: 32.5")"
expect 2 'key optimizer\.lr: expected a number' "$(conf str_lr "optimizer:
  lr: fast")"
expect 2 'key optimizer\.lr: expected a number' "$(conf list_lr "optimizer:
  lr: [0.1]")"
expect 2 'key train\.epochs: -3 is out of range' "$(conf neg_epochs "train:
  epochs: -3")"
expect 2 'key model\.hidden: item 1 \("?x"?\) is not an integer' "$(conf hidden_str "model:
  hidden: [32, x]")"
expect 2 'key model\.hidden: item 0 \(0\) is out of range' "$(conf hidden_zero "model:
  hidden: [0]")"
expect 2 'key model\.hidden: expected a list' "$(conf hidden_bool "model:
  hidden: true")"
expect 2 'key optimizer\.beta1: 1 is out of range' "$(conf beta1 "optimizer:
  beta1: 1")"
expect 2 'key optimizer\.betas: (more than 2 items|expected exactly two numbers)' "$(conf betas3 "optimizer:
  betas: [0.9, 0.99, 0.5]")"
expect 2 'key optimizer\.eps: expected a number' "$(conf eps_null "optimizer:
  eps: '1e-7'")"
expect 2 'key train\.save_optimizer: expected true or false' "$(conf saveopt "train:
  save_optimizer: 1")"
expect 2 'key model\.activation: unsupported activation tanh' "$(conf act "model:
  activation: tanh")"
expect 2 'key optimizer\.name: unsupported optimizer sgd' "$(conf opt "optimizer:
  name: sgd")"
expect 2 'key train\.seed: -1 is out of range' "$(conf seed "train:
  seed: -1")"
expect 2 'key train\.checkpoint_every: 0 is out of range' "$(conf every "train:
  checkpoint_every: 0")"
expect 2 'optimizer\.beta1' "$(conf both_betas "optimizer:
  betas: [0.9, 0.99]
  beta1: 0.8")"
expect 2 'line [0-9]+' "$(conf syntax "train:
  epochs: [1, 2
")"

rc=0
"$TRAIN" --db "$DB" --run x --config "$W/nonexistent.yaml" > /dev/null 2> "$W/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q 'nonexistent.yaml' "$W/err" || fail "missing config file: rc $rc: $(cat "$W/err")"
rc=0
"$TRAIN" --db "$DB" --run x --config "$W/good.yaml" --bogus > /dev/null 2> "$W/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q -- '--bogus' "$W/err" || fail "unknown option: rc $rc: $(cat "$W/err")"
rc=0
"$TRAIN" --db "$DB" --config "$W/good.yaml" > /dev/null 2> "$W/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q -- '--run' "$W/err" || fail "missing --run: rc $rc: $(cat "$W/err")"
"$TRAIN" --help > "$W/help" || fail "--help exited non-zero"
grep -q 'usage: ckpt-train' "$W/help" || fail "--help prints no usage"

# --- datasets: a copy of the data directory with one file missing or damaged
F_TRAIN_IMG=train-images-idx3-ubyte.gz
F_TRAIN_LAB=train-labels-idx1-ubyte.gz
F_TEST_IMG=t10k-images-idx3-ubyte.gz
F_TEST_LAB=t10k-labels-idx1-ubyte.gz
# data_copy NAME: a directory of links to the real files; prints its path.
data_copy() {
    local d="$W/data.$1"
    mkdir -p "$d"
    for f in $F_TRAIN_IMG $F_TRAIN_LAB $F_TEST_IMG $F_TEST_LAB; do ln -sf "$DATA/$f" "$d/$f"; done
    echo "$d"
}
# data_case NAME DIR [YAML...]: a config reading DIR.
data_case() { base_config "$2" > "$W/$1.yaml"; echo "$W/$1.yaml"; }

d=$(data_copy missing); rm "$d/$F_TEST_LAB"
expect 1 "cannot open dataset file $d/$F_TEST_LAB: No such file" "$(data_case missing "$d")"

d=$(data_copy nodir)
expect 1 "cannot open dataset file $W/nowhere/$F_TRAIN_IMG" "$(data_case nodir "$W/nowhere")"

d=$(data_copy truncated); rm "$d/$F_TRAIN_IMG"
head -c 50000 "$DATA/$F_TRAIN_IMG" > "$d/$F_TRAIN_IMG"
expect 1 "$d/$F_TRAIN_IMG: (file is truncated|cannot read)" "$(data_case truncated "$d")"

d=$(data_copy empty); rm "$d/$F_TRAIN_LAB"; : > "$d/$F_TRAIN_LAB"
expect 1 "$d/$F_TRAIN_LAB: file is truncated" "$(data_case empty "$d")"

d=$(data_copy swapped); rm "$d/$F_TEST_LAB"; ln -s "$DATA/$F_TEST_IMG" "$d/$F_TEST_LAB"
expect 1 "$d/$F_TEST_LAB: not an IDX label file \(magic number 0x00000803, expected 0x00000801\)" \
    "$(data_case swapped "$d")"

d=$(data_copy badlabel); rm "$d/$F_TRAIN_LAB"
# Decompressed to files first: a head closing a pipe early would SIGPIPE
# the writer and, under pipefail, fail the script at random.
gzip -dc "$DATA/$F_TRAIN_LAB" > "$W/train-labels.raw"
{ head -c 13 "$W/train-labels.raw"; printf '\x0c'; tail -c +15 "$W/train-labels.raw"; } |
    gzip > "$d/$F_TRAIN_LAB"
expect 1 "$d/$F_TRAIN_LAB: label 12 of example 5" "$(data_case badlabel "$d")"

d=$(data_copy count); rm "$d/$F_TEST_LAB"
gzip -dc "$DATA/$F_TEST_LAB" > "$W/test-labels.raw"
tail -c +9 "$W/test-labels.raw" > "$W/test-labels.body"
{ printf '\x00\x00\x08\x01\x00\x00\x03\xe8'; head -c 1000 "$W/test-labels.body"; } |
    gzip > "$d/$F_TEST_LAB"
expect 1 "holds 10000 images but $d/$F_TEST_LAB holds 1000 labels" "$(data_case count "$d")"

d=$(data_copy dims); rm "$d/$F_TEST_IMG"
{ printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1d'; head -c 1624 /dev/zero; } |
    gzip > "$d/$F_TEST_IMG"
expect 1 "$d/$F_TEST_IMG: images are 28x29, expected 28x28" "$(data_case dims "$d")"

# Damage inside the compressed stream of a file that is read to its end:
# zlib reports bad data or a CRC mismatch.
d=$(data_copy crc); rm "$d/$F_TEST_LAB"
cp "$DATA/$F_TEST_LAB" "$d/$F_TEST_LAB"
printf '\xde\xad\xbe\xef\xde\xad\xbe\xef' | dd of="$d/$F_TEST_LAB" bs=1 seek=3000 conv=notrunc 2> /dev/null
base_config "$d" | sed 's/limit_test: 100/limit_test: 0/' > "$W/crc.yaml"
expect 1 "$d/$F_TEST_LAB: " "$W/crc.yaml"

echo "PASS ($n refusals)"
