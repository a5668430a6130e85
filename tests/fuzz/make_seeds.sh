#!/usr/bin/env bash
# make_seeds.sh BUILD_DIR OUTDIR - writes the hand-made seeds of every
# harness to OUTDIR/<harness>/ (make_seeds.c, plus the independent Python
# safetensors writer of the CLI tests: its valid file and malformed variants).
# The committed corpora under tests/fuzz/corpus/ started from these.
set -euo pipefail
build=${1:?usage: make_seeds.sh BUILD_DIR OUTDIR}
out=${2:?usage: make_seeds.sh BUILD_DIR OUTDIR}
src=$(cd "$(dirname "$0")/../.." && pwd)
cmake --build "$build" --target fuzz_make_seeds >/dev/null
mkdir -p "$out"
out=$(cd "$out" && pwd)
(cd "$src" && "$build/tests/fuzz/fuzz_make_seeds" "$out")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$src/tests/cli/make_safetensors.py" good "$tmp/good.safetensors"
python3 "$src/tests/cli/make_safetensors.py" bad "$tmp"
for h in safetensors st_import; do
  for f in "$tmp"/*.safetensors; do
    cp "$f" "$out/$h/seed-py-$(basename "$f" .safetensors)"
  done
done
for h in "$out"/*; do
  echo "$(basename "$h"): $(ls "$h" | wc -l) files, $(cat "$h"/* | wc -c) bytes"
done
