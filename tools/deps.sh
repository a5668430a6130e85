#!/usr/bin/env bash
# deps.sh - installs the Debian packages ckpt needs, only those missing
# (quick when everything is present). Used by tools/demo.sh, tools/test.sh
# and .ci/run.
set -euo pipefail
pkgs="build-essential cmake pkg-config libsqlite3-dev libyaml-dev libcmocka-dev \
libzstd-dev zlib1g-dev libxxhash-dev sqlite3 python3 dataset-fashion-mnist ${CKPT_EXTRA_PKGS:-}"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends $missing || {
    $sudo apt-get update && $sudo apt-get install -y --no-install-recommends $missing
}
