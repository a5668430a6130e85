#!/usr/bin/env bash
# install_pkgconfig.sh - `cmake --install` into a temporary prefix, then
# build tools/example/example.c against the installed library with
# `pkg-config --cflags --libs ckpt` (shared and static), run it: three
# checkpoints saved, listed by the installed `ckpt`, each restored identical.
set -eu
: "${CKPT_BIN_DIR:?}" "${CKPT_SRC_DIR:?}"
T=$(mktemp -d "${CKPT_TEST_TMP:-/tmp}/install.XXXXXX")
cmake --install "$CKPT_BIN_DIR" --prefix "$T/prefix" >/dev/null
export PKG_CONFIG_PATH="$T/prefix/lib/pkgconfig:$T/prefix/lib64/pkgconfig:$T/prefix/lib/x86_64-linux-gnu/pkgconfig"
pkg-config --exists ckpt
test -f "$T/prefix/include/ckpt.h"
test -x "$T/prefix/bin/ckpt"
# A sanitizer build installs an instrumented library: link like it.
san=""
case "${CKPT_SANITIZE:-OFF}" in ON|1|TRUE|YES|on) san="-fsanitize=address,undefined" ;; esac
cc $san -std=c11 -Wall -Wextra -Werror "$CKPT_SRC_DIR/tools/example/example.c" $(pkg-config --cflags --libs ckpt) -o "$T/ex-shared"
cc $san -std=c11 "$CKPT_SRC_DIR/tools/example/example.c" $(pkg-config --cflags ckpt) -static-libgcc \
   "$(pkg-config --variable=libdir ckpt)/libckpt.a" $(pkg-config --libs --static ckpt | sed 's/-lckpt//') -o "$T/ex-static"
libdir=$(pkg-config --variable=libdir ckpt)
LD_LIBRARY_PATH="$libdir" "$T/ex-shared" "$T/a.db" | tee "$T/out"
[ "$(grep -c "restored byte-identical" "$T/out")" = 3 ]
"$T/ex-static" "$T/b.db" >/dev/null
[ "$(LD_LIBRARY_PATH="$libdir" "$T/prefix/bin/ckpt" --db "$T/a.db" list example | grep -c '^example ')" = 3 ]
echo "installed library, header, ckpt.pc and CLI work"
rm -rf "$T"
