#!/usr/bin/env bash
# Installs the C library: PREFIX/include/batchdb.h, PREFIX/lib/libbatchdb.{so,a} and
# PREFIX/lib/pkgconfig/batchdb.pc (from batchdb.pc.in).
#
#   scripts/install.sh /usr/local          # or any prefix, e.g. $HOME/.local
#   cc app.c $(pkg-config --cflags --libs batchdb)
#   cc app.c PREFIX/lib/libbatchdb.a $(pkg-config --cflags batchdb) -lpthread -ldl -lm   # static
#
#   scripts/install.sh --static PREFIX     # no libbatchdb.so: everything links the archive
#   cc app.c $(pkg-config --static --cflags --libs batchdb)
#
# For a prefix outside the default search paths, set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig
# when compiling. The flags from pkg-config link libbatchdb.so with an rpath to PREFIX/lib, so
# programs run without LD_LIBRARY_PATH. The Go binding (bindings/go) builds against this
# install by default: `go get github.com/batchdb/batchdb/bindings/go` needs only pkg-config;
# it links libbatchdb.so, or the archive after --static (a self-contained binary).
# DESTDIR is honoured for staged installs.
set -euo pipefail

shared=1
if [ "${1:-}" = --static ]; then
    shared=0
    shift
fi
prefix="${1:?usage: scripts/install.sh [--static] PREFIX}"
case "$prefix" in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${DESTDIR:-}$prefix"
if [ "$shared" = 0 ] && [ -e "$dest/lib/libbatchdb.so" ]; then
    # The linker would prefer it; removing it could break programs already linked to it.
    echo "scripts/install.sh --static: $dest/lib/libbatchdb.so exists; remove it first" >&2
    exit 1
fi

(cd "$root" && cargo build --release --lib)
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)"

install -d "$dest/include" "$dest/lib/pkgconfig"
install -m 644 "$root/include/batchdb.h" "$dest/include/batchdb.h"
if [ "$shared" = 1 ]; then
    install -m 755 "$root/target/release/libbatchdb.so" "$dest/lib/libbatchdb.so"
fi
install -m 644 "$root/target/release/libbatchdb.a" "$dest/lib/libbatchdb.a"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" "$root/batchdb.pc.in" \
    >"$dest/lib/pkgconfig/batchdb.pc"
chmod 644 "$dest/lib/pkgconfig/batchdb.pc"
echo "installed batchdb $version into $dest"
