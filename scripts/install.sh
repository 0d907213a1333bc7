#!/usr/bin/env bash
# Installs the C library: PREFIX/include/batchdb.h, PREFIX/lib/libbatchdb.{so,a} and
# PREFIX/lib/pkgconfig/batchdb.pc (from batchdb.pc.in).
#
#   scripts/install.sh /usr/local          # or any prefix, e.g. $HOME/.local
#   cc app.c $(pkg-config --cflags --libs batchdb)
#   cc app.c PREFIX/lib/libbatchdb.a $(pkg-config --cflags batchdb) -lpthread -ldl -lm   # static
#
# For a prefix outside the default search paths, set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig
# when compiling, and LD_LIBRARY_PATH=PREFIX/lib (or link with -Wl,-rpath,PREFIX/lib) to run.
# DESTDIR is honoured for staged installs.
set -euo pipefail

prefix="${1:?usage: scripts/install.sh PREFIX}"
case "$prefix" in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${DESTDIR:-}$prefix"

(cd "$root" && cargo build --release --lib)
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)"

install -d "$dest/include" "$dest/lib/pkgconfig"
install -m 644 "$root/include/batchdb.h" "$dest/include/batchdb.h"
install -m 755 "$root/target/release/libbatchdb.so" "$dest/lib/libbatchdb.so"
install -m 644 "$root/target/release/libbatchdb.a" "$dest/lib/libbatchdb.a"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" "$root/batchdb.pc.in" \
    >"$dest/lib/pkgconfig/batchdb.pc"
chmod 644 "$dest/lib/pkgconfig/batchdb.pc"
echo "installed batchdb $version into $dest"
