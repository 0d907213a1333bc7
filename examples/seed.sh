#!/usr/bin/env bash
# The original batchdb's example, end to end with the CLI, on ./batchdb.db in the current
# folder: add the same shell job twice (one job, two instances), run the queue with bash as
# the runner (the payload is the script, stdout is the result), list, and print a result.
#
#   bash examples/seed.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
(cd "$root" && cargo build --release --quiet)
batchdb="$root/target/release/batchdb"
export BATCHDB_PATH="${BATCHDB_PATH:-./batchdb.db}"

echo "# add (prints KEY CREATED)"
"$batchdb" add 'sleep 1; date'
"$batchdb" add 'sleep 1; date'
echo "# list pending"
"$batchdb" list pending
echo "# run -- bash"
"$batchdb" run --workers 2 --until-empty -- bash
echo "# list result"
"$batchdb" list result
hash="$("$batchdb" list result | tail -n 1 | sed 's/.*"hash":"\([0-9a-f]\{64\}\)".*/\1/')"
echo "# get $hash"
"$batchdb" get "$hash"
