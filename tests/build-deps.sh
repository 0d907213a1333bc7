#!/usr/bin/env bash
# What a build with `--features postgres` needs from the system, installed when missing.
#
# The PostgreSQL backend's TLS (src/store/postgres/tls.rs) goes through OpenSSL, so openssl-sys
# needs pkg-config and the OpenSSL headers and libraries at build time (Debian: pkg-config,
# libssl-dev); tests/pg/tls.sh also makes its certificates with the openssl command. A fresh
# machine (CI's) may have none of them: as root with apt-get they are installed, as
# tests/pg/cluster.sh installs PostgreSQL; otherwise this says what is missing and fails.
#
# Run it before any `cargo … --features postgres`:
#
#   bash tests/build-deps.sh || exit 1
#
# Prints nothing when everything is there. Exits non-zero when something is still missing.
set -uo pipefail

have_openssl_dev() {
    command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl 2>/dev/null
}
missing=()
have_openssl_dev || missing+=(pkg-config libssl-dev)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests/build-deps.sh: installing ${missing[*]} (the postgres feature's TLS builds against OpenSSL)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; }
fi
if ! have_openssl_dev || ! command -v openssl >/dev/null 2>&1; then
    echo "tests/build-deps.sh: ${missing[*]} missing and not installed (needs root and apt-get);" \
        "building with --features postgres needs pkg-config and OpenSSL's headers (libssl-dev)" >&2
    exit 1
fi
