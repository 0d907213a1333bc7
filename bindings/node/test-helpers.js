'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Duplex } = require('node:stream');

function tmpdb(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'batchdb-node-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'compute.db');
}

// The runner of the original's README: bash reads the payload, its stdout is the result.
function bashRunner() {
  const ps = spawn('bash');
  return Duplex.from({ writable: ps.stdin, readable: ps.stdout });
}

async function collect(stream) {
  const rows = [];
  for await (const r of stream) rows.push(r);
  return rows;
}

async function readAll(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

module.exports = { tmpdb, bashRunner, collect, readAll };
