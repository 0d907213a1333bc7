#!/usr/bin/env bash
# The dashboard's browser test: installs what it needs (Debian's chromium, playwright-core
# from package-lock.json), builds the CLI, and runs browser.test.mjs with node's test runner.
# Screenshots land in tests/ui/artifacts/. Run from anywhere; as root for apt-get.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ ! -x /usr/bin/chromium ]; then
    echo "run.sh: installing chromium" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

cd "$here"
# npm ci: exactly the locked versions, and no browser download (playwright-core has none).
if [ ! -d node_modules/playwright-core ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi

if [ -z "${BATCHDB_BIN:-}" ]; then
    (cd "$root" && cargo build --quiet --bin batchdb)
    export BATCHDB_BIN="$root/target/debug/batchdb"
fi
node --test browser.test.mjs
