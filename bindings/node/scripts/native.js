'use strict';
// npm pack's hooks: `prepack` copies the built C library into native/<platform>-<arch>/, so the
// tarball carries it and installs without Rust; `postpack` removes it again, so that this
// checkout keeps loading target/release. The library comes from BATCHDB_LIB or, by default,
// the repository's `cargo build --release`.
const fs = require('node:fs');
const path = require('node:path');
const { LIB_NAMES, platformDir } = require('../lib/platform');

const pkg = path.join(__dirname, '..');
const native = path.join(pkg, 'native');
const name = LIB_NAMES[process.platform] || 'libbatchdb.so';

function copy() {
  const from = process.env.BATCHDB_LIB || path.join(pkg, '..', '..', 'target', 'release', name);
  if (!fs.existsSync(from)) {
    throw new Error(`batchdb: ${from} is missing: run \`cargo build --release\` (or set BATCHDB_LIB) before npm pack`);
  }
  const dir = path.join(native, platformDir());
  fs.rmSync(native, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(from, path.join(dir, name));
  console.error(`batchdb: packing ${from} as native/${platformDir()}/${name}`);
}

function clean() {
  fs.rmSync(native, { recursive: true, force: true });
}

const cmd = process.argv[2];
if (cmd === 'copy') copy();
else if (cmd === 'clean') clean();
else throw new Error('usage: node scripts/native.js copy|clean');
