'use strict';
// Reproducer of a soak finding (RELIABILITY.md, Soak): a reader whose blob prune + gc remove
// while it reads is told the blob "is corrupt", though the file is sound. Not a test: it
// prints what happens. After `cargo build --release` and `npm ci` in bindings/node:
//   node tests/soak/repro-gc-read-race.js
// Before the fix: "error: BATCHDB_ERR_CORRUPT blob … is corrupt: chunk 5 is missing (…)";
// now BATCHDB_ERR_NOT_FOUND "blob … was removed by gc while it was being read".
const batchdb = require('../../bindings/node');
const fs = require('fs'), os = require('os'), path = require('path');
const { Duplex, PassThrough } = require('stream');
(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gcrace-'));
  const out = Buffer.alloc(4 * 1024 * 1024, 7); // 16 chunks of the default 256 KiB; the stream buffers 1 MiB ahead
  const db = batchdb(path.join(dir, 'x.db'), {
    run: () => { const p = new PassThrough(); const d = Duplex.from({ writable: new PassThrough(), readable: p }); p.end(out); return d; },
  });
  const a = db.add(); a.end('job'); await a.promise;
  let hash; db.on('result', (k, h) => { hash = h; });
  await db.run({ untilEmpty: true });
  const s = db.get(hash);
  const first = await new Promise((res, rej) => { s.once('data', res); s.once('error', rej); });
  s.pause();
  console.log('first chunk', first.length);
  console.log('pruned', await db.prune(Date.now() + 1000), 'gc', await db.gc());
  s.resume();
  try { for await (const c of s) {} console.log('read to the end'); } catch (e) { console.log('error:', e.code, e.message); }
  await db.close();
})().catch((e) => { console.error('script error', e); process.exit(1); });
