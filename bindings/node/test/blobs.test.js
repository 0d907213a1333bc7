'use strict';
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const fs = require('node:fs');
const { once } = require('node:events');
const { Readable } = require('node:stream');
const { pipeline } = require('node:stream/promises');
const batchdb = require('..');
const { tmpdb, readAll } = require('../test-helpers');

const MiB = 1024 * 1024;

// 64 MiB of pseudo-random bytes, produced 1 MiB at a time.
function payload(mib) {
  let i = 0;
  const seed = crypto.randomBytes(MiB);
  return Readable.from(
    (function* () {
      for (; i < mib; i++) {
        const chunk = Buffer.from(seed);
        chunk.writeUInt32LE(i, 0);
        yield chunk;
      }
    })(),
  );
}

async function sha256(stream) {
  const h = crypto.createHash('sha256');
  let n = 0;
  for await (const chunk of stream) {
    h.update(chunk);
    n += chunk.length;
  }
  return { hex: h.digest('hex'), n };
}

test('64 MiB streamed in through create() and out through get(), same sha256; the event loop keeps ticking', async (t) => {
  const compute = batchdb(tmpdb(t), { durability: 'normal' });
  const expect = crypto.createHash('sha256');
  const src = payload(64);
  src.on('data', (c) => expect.update(c));
  const ws = compute.create();
  await pipeline(src, ws);
  const key = await ws.promise;
  assert.strictEqual(key, expect.digest('hex'));

  // a timer that must keep firing while the blob streams out
  let ticks = 0;
  let last = Date.now();
  let maxGap = 0;
  const timer = setInterval(() => {
    const now = Date.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 5);
  const ticksBefore = ticks;
  const began = Date.now();
  const out = await sha256(compute.get(key));
  const took = Date.now() - began;
  clearInterval(timer);
  assert.strictEqual(out.n, 64 * MiB);
  assert.strictEqual(out.hex, key);
  assert.ok(ticks - ticksBefore > 5, `timer ticked ${ticks - ticksBefore} times during the get`);
  // A get that blocked the loop would leave one gap as long as the whole read. A loaded
  // machine may stall the process now and then, so the bound is 200 ms or a quarter of the
  // read, whichever is larger: still far below a blocking read's single gap.
  assert.ok(maxGap < Math.max(200, took / 4), `largest gap between ticks: ${maxGap} ms of ${took} ms`);
  await compute.close();
});

test('malformed and unknown hashes: get emits error, push reports err; nothing changes', async (t) => {
  const compute = batchdb(tmpdb(t));
  const bad = compute.get('not-a-hash');
  const [err] = await once(bad, 'error');
  assert.strictEqual(err.code, 'BATCHDB_ERR_INVALID');
  assert.match(err.message, /malformed/);

  const missing = compute.getResult('0'.repeat(64));
  const [err2] = await once(missing, 'error');
  assert.strictEqual(err2.code, 'BATCHDB_ERR_NOT_FOUND');

  const perr = await new Promise((resolve) => compute.push('zz', (e) => resolve(e)));
  assert.strictEqual(perr.code, 'BATCHDB_ERR_INVALID');
  await assert.rejects(compute.push('a'.repeat(64)), { code: 'BATCHDB_ERR_NOT_FOUND' });
  await assert.rejects(readAll(compute.list('nope')), { code: 'BATCHDB_ERR_INVALID' });
  for await (const _ of compute.list('pending')) assert.fail('nothing was queued');
  await compute.close();
});

test('a file that is not a batchdb database: a clear error, bytes unchanged', async (t) => {
  const file = tmpdb(t);
  const garbage = crypto.randomBytes(8192);
  fs.writeFileSync(file, garbage);
  await assert.rejects(batchdb.open(file), (err) => {
    assert.strictEqual(err.code, 'BATCHDB_ERR_INVALID');
    assert.match(err.message, /not a batchdb database|not a database/i);
    return true;
  });
  const compute = batchdb(file);
  await assert.rejects(compute.ready, { code: 'BATCHDB_ERR_INVALID' });
  await assert.rejects(compute.push('a'.repeat(64)), { code: 'BATCHDB_ERR_INVALID' });
  const [err] = await once(compute.add().end('x'), 'error');
  assert.strictEqual(err.code, 'BATCHDB_ERR_INVALID');
  await compute.close();
  assert.ok(fs.readFileSync(file).equals(garbage));
});

test('bad options throw at once', (t) => {
  const file = tmpdb(t);
  assert.throws(() => batchdb(file, { order: 'sideways' }), TypeError);
  assert.throws(() => batchdb(file, { durability: 'maybe' }), TypeError);
  assert.throws(() => batchdb(file, { workers: 0 }), TypeError);
  assert.throws(() => batchdb(file, { run: 'bash' }), TypeError);
});

test('opts.path is accepted and ignored: no blob folder appears', async (t) => {
  const file = tmpdb(t);
  const blobs = file + '.blobs';
  const compute = batchdb(file, { path: blobs });
  const key = await compute.create().end('payload').promise;
  assert.strictEqual((await readAll(compute.get(key))).toString(), 'payload');
  await compute.close();
  assert.strictEqual(fs.existsSync(blobs), false);
});

test('an aborted create stores nothing', async (t) => {
  const compute = batchdb(tmpdb(t));
  const ws = compute.create();
  ws.write('half a payload');
  await new Promise((r) => setTimeout(r, 20));
  const errored = once(ws, 'error');
  ws.destroy(new Error('client went away'));
  assert.strictEqual((await errored)[0].message, 'client went away');
  if (!ws.closed) await once(ws, 'close');
  for await (const _ of compute.list('job')) assert.fail('no job');
  await compute.close();
});
