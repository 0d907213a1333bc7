'use strict';
// The original README's examples, as written, with only the opening line changed.
const test = require('node:test');
const assert = require('node:assert');
const { once } = require('node:events');
const { spawn } = require('node:child_process');
const duplexer = require('duplexer'); // npm duplexer@0.1, as the original's README uses
const batchdb = require('..');
const { tmpdb, collect, readAll } = require('../test-helpers');

const KEY = '1555357b6bebdd35bcc2f68bfcfdccf81d2bc9df4a35e00bf4693d3c61d5c8e0'; // sha256('sleep 0.2; date')
const SEED_KEY = 'ce6cc4e7fcb4a902f7c836cb93a32ae02cb47679c86e3d99c811233bf6f258c0'; // sha256('sleep 5; date')

test('adding a job, twice: same key, two instances; then pending, run, results', async (t) => {
  const file = tmpdb(t);

  // add.js, run twice
  for (let i = 0; i < 2; i++) {
    const seen = [];
    var compute = batchdb(file, { path: '/tmp/compute.blobs' });
    compute.add().end('sleep 0.2; date');
    compute.on('create', function (key) {
      seen.push(['created', key]);
    });
    compute.on('push', function (key, created) {
      seen.push(['pushed', key, created]);
    });
    await once(compute, 'push');
    assert.deepStrictEqual(seen[0], ['created', KEY]);
    assert.strictEqual(seen[1][0], 'pushed');
    assert.strictEqual(seen[1][1], KEY);
    assert.ok(Number.isInteger(seen[1][2]) && seen[1][2] > 1.4e12);
    await compute.close();
  }

  // list.js
  {
    var compute = batchdb(file, { path: '/tmp/compute.blobs' });
    const rows = [];
    compute.list('pending').on('data', (row) => rows.push(row));
    await new Promise((r) => setTimeout(r, 200));
    assert.strictEqual(rows.length, 2);
    for (const row of rows) {
      assert.deepStrictEqual(Object.keys(row), ['job', 'created', 'running']);
      assert.strictEqual(row.job, KEY);
      assert.strictEqual(row.running, false);
    }
    assert.ok(rows[0].created < rows[1].created);
    assert.deepStrictEqual(await collect(compute.list('job')), [{ key: KEY, running: [] }]);
    await compute.close();
  }

  // run.js, as written
  {
    const results = [];
    const outputs = [];
    function run(key) {
      var ps = spawn('bash');
      return duplexer(ps.stdin, ps.stdout);
    }
    var compute = batchdb(file, { path: '/tmp/compute.blobs', run: run });
    compute.on('result', function (key, id, created) {
      results.push({ key, id, created });
      outputs.push(readAll(compute.getResult(id)));
    });
    await compute.run({ untilEmpty: true });
    assert.strictEqual(results.length, 2);
    // most recent first
    assert.ok(results[0].created > results[1].created);
    for (const r of results) {
      assert.strictEqual(r.key, KEY);
      assert.match(r.id, /^[0-9a-f]{64}$/);
    }
    for (const out of await Promise.all(outputs)) assert.match(out.toString(), /\d\d:\d\d:\d\d/);

    const rows = await collect(compute.list('result'));
    assert.strictEqual(rows.length, 2);
    for (const row of rows) {
      assert.strictEqual(row.key[0], KEY);
      assert.deepStrictEqual(Object.keys(row.value), ['hash', 'start', 'end', 'created']);
      assert.strictEqual(row.value.created, row.key[1]);
      assert.ok(row.value.start <= row.value.end);
      assert.ok(results.some((r) => r.id === row.value.hash && r.created === row.key[1]));
    }
    assert.deepStrictEqual(await collect(compute.list('pending')), []);
    await compute.close();
  }
});

test('the seed payload has the documented key; create(cb) and push(key, cb) work', async (t) => {
  const compute = batchdb(tmpdb(t));
  const key = await new Promise((resolve, reject) => {
    compute.create((err, key) => (err ? reject(err) : resolve(key))).end('sleep 5; date');
  });
  assert.strictEqual(key, SEED_KEY);
  assert.deepStrictEqual(await collect(compute.list('pending')), []);
  const created = await new Promise((resolve, reject) => {
    compute.push(key, (err, created) => (err ? reject(err) : resolve(created)));
  });
  const pending = await collect(compute.list('pending'));
  assert.deepStrictEqual(pending, [{ job: SEED_KEY, created, running: false }]);
  assert.strictEqual((await readAll(compute.getJob(key))).toString(), 'sleep 5; date');
  await compute.close();
});
