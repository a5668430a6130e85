#!/usr/bin/env bash
# run.sh [HARNESS...] - builds the libFuzzer harnesses with clang (ASan +
# UBSan, -DCKPT_FUZZ=ON) and runs each (default: all) for
# $CKPT_FUZZ_SECONDS (default 600; 0: merge only), $CKPT_FUZZ_JOBS at a time
# (default 2).
# Each run reads the committed corpus tests/fuzz/corpus/<name>/ and writes
# what it finds to a scratch corpus and crash files to $OUT/<name>/, its log
# to $OUT/<name>/fuzz.log; a summary line per harness gives executions and
# coverage. With CKPT_FUZZ_MERGE=1 the committed corpus is then rebuilt
# from its seed-*/finding-* files plus the inputs (old or new) that add the
# most coverage, within 200 files (store harnesses: 40 and 60) and 2 MB
# (corpus_select.py).
#   CKPT_FUZZ_BUILD  build directory (default /tmp/ckpt-fuzz-build)
#   CKPT_FUZZ_OUT    output directory (default $CKPT_FUZZ_BUILD/fuzz-out)
#   CKPT_FUZZ_TMP    scratch for the store files of the harnesses (default /dev/shm)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${CKPT_FUZZ_BUILD:-/tmp/ckpt-fuzz-build}
out=${CKPT_FUZZ_OUT:-$build/fuzz-out}
secs=${CKPT_FUZZ_SECONDS:-600}
jobs=${CKPT_FUZZ_JOBS:-2}
all=(config safetensors st_import store_open store_sql ref codec)
if [ $# -gt 0 ]; then harnesses=("$@"); else harnesses=("${all[@]}"); fi

# Longest input per harness: big enough for its seeds' structure (store
# files are tens of KiB), small enough for mutations to stay fast.
declare -A max_len=([config]=16384 [safetensors]=8192 [st_import]=8192 [store_open]=65536
                    [store_sql]=512 [ref]=512 [codec]=65536)
# Committed corpus size per harness (files): the store harnesses replay
# slowly (a store per input), so they keep fewer.
declare -A keep_files=([store_open]=40 [store_sql]=60)
declare -A extra=([config]="-dict=$src/tests/fuzz/dict/yaml.dict"
                  [safetensors]="-dict=$src/tests/fuzz/dict/json.dict"
                  [st_import]="-dict=$src/tests/fuzz/dict/json.dict"
                  [store_sql]="-len_control=0")

CC=clang cmake -S "$src" -B "$build" -DCKPT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=()
for h in "${harnesses[@]}"; do targets+=(--target "fuzz_$h"); done
cmake --build "$build" -j "$jobs" "${targets[@]}" >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one() {
  local h=$1 dir=$out/$1
  mkdir -p "$dir/corpus"
  local bin
  bin=$(find "$build" -name "fuzz_$h" -type f -perm -u+x | head -n1)
  # CKPT_FUZZ_SECONDS=0: no fuzzing, only the merge below
  [ "$secs" = 0 ] || \
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="${max_len[$h]}" \
    -print_final_stats=1 -artifact_prefix="$dir/" ${extra[$h]:-} \
    "$dir/corpus" "$src/tests/fuzz/corpus/$h" >"$dir/fuzz.log" 2>&1 || true
  local done_line execs crashes
  done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$dir/fuzz.log" | tail -n1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz.log")
  crashes=$(ls "$dir" | grep -cE '^(crash|leak|timeout|oom)-' || true)
  echo "$h: executions ${execs:-?}; ${done_line:-no status line}; findings: $crashes (see $dir)"
  if [ "${CKPT_FUZZ_MERGE:-0}" = 1 ]; then
    # Features of every input, then a greedy pick under the size budget.
    local m
    m=$(mktemp -d)
    rm -f "$dir/merge.control"
    "$bin" -merge=1 -merge_control_file="$dir/merge.control" -max_len=2097152 \
      "$m" "$src/tests/fuzz/corpus/$h" "$dir/corpus" >"$dir/merge.log" 2>&1 || true
    python3 "$src/tests/fuzz/corpus_select.py" "$dir/merge.control" "$src/tests/fuzz/corpus/$h" \
      "${keep_files[$h]:-200}" 2000000
    rm -rf "$m"
  fi
}

running=0
for h in "${harnesses[@]}"; do
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
  run_one "$h" &
  running=$((running + 1))
done
wait
