#!/usr/bin/env bash
# demo.sh - installs what is missing, builds, trains the default
# Fashion-MNIST MLP for 5 epochs into demo.db and shows its checkpoints and
# metrics. Rerunning it resumes the same run (nothing is retrained).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs" >/dev/null
db=${CKPT_DEMO_DB:-demo.db}
build/ckpt-train --db "$db" --run fashion --config tools/configs/fashion-mlp.yaml --resume
echo
echo "\$ ckpt --db $db list"
build/ckpt --db "$db" list
echo
echo "\$ ckpt --db $db metrics fashion"
build/ckpt --db "$db" metrics fashion
