'use strict';
// API.md section 10 in Node: memoized pushes, dependencies between instances (`after`), the
// runner's inputs, lineage (why), and run() waiting with batchdb_wait_from.
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { Duplex } = require('node:stream');
const batchdb = require('..');
const { tmpdb, collect, readAll } = require('../test-helpers');

// A runner stream that outputs `text` (after reading the payload).
function output(text) {
  return Duplex.from(async function* (src) {
    for await (const c of src) void c;
    yield text;
  });
}

const byCreated = (rows) => Object.fromEntries(rows.map((r) => [r.created, r]));

test('memo: a pending job is joined, a job with a result reuses it; push, submit and add say so', async (t) => {
  const compute = batchdb(tmpdb(t), { run: () => output('memo result') });
  t.after(() => compute.close());
  const pushes = [];
  compute.on('push', (key, created) => pushes.push(created));
  const first = await compute.add({ memo: true }).end('memo me').promise;
  assert.strictEqual(first.cached, null);
  // Pending: joined.
  assert.strictEqual(await compute.push(first.key, { memo: true }), first.created);
  assert.deepStrictEqual(await compute.submit(first.key, { memo: true }), { created: first.created, cached: null });
  assert.strictEqual((await collect(compute.list('pending'))).length, 1);
  await compute.run({ untilEmpty: true });
  const [result] = await collect(compute.list('result'));
  const hash = result.value.hash;

  // A result: reused, nothing queued, no push event.
  pushes.length = 0;
  assert.deepStrictEqual(await compute.submit(first.key, { memo: true }), { created: first.created, cached: hash });
  assert.strictEqual(await compute.push(first.key, { memo: true }), first.created);
  const viaCb = await new Promise((resolve, reject) =>
    compute.push(first.key, { memo: true }, (err, created, info) => (err ? reject(err) : resolve({ created, info }))),
  );
  assert.deepStrictEqual(viaCb, { created: first.created, info: { cached: hash } });
  const added = await compute.add({ memo: true }).end('memo me').promise;
  assert.deepStrictEqual(added, { key: first.key, created: first.created, cached: hash });
  const addCb = await new Promise((resolve, reject) =>
    compute.add({ memo: true }, (err, key, created, info) => (err ? reject(err) : resolve([key, created, info]))).end('memo me'),
  );
  assert.deepStrictEqual(addCb, [first.key, first.created, { cached: hash }]);
  assert.deepStrictEqual(pushes, []);
  assert.strictEqual((await collect(compute.list('pending'))).length, 0);
  assert.strictEqual((await readAll(compute.get(hash))).toString(), 'memo result');

  // Without memo: a new instance, cached null, and the old callback form still works.
  const plain = await new Promise((resolve, reject) =>
    compute.push(first.key, (err, created, info) => (err ? reject(err) : resolve({ created, info }))),
  );
  assert.ok(plain.created > first.created);
  assert.deepStrictEqual(plain.info, { cached: null });
  assert.deepStrictEqual(pushes, [plain.created]);
  await assert.rejects(compute.push(first.key, { memo: 'yes' }), TypeError);
});

test('after: the dependent waits, then runs with its inputs; a failed upstream fails it', async (t) => {
  const seen = [];
  const compute = batchdb(tmpdb(t), {
    run: (key, created, job) => {
      seen.push({ created, after: job.after });
      return Duplex.from(async function* (src) {
        const chunks = [];
        for await (const c of src) chunks.push(c);
        const text = Buffer.concat(chunks).toString();
        if (text === 'boom') throw new Error('boom');
        yield `out of ${text}`;
      });
    },
  });
  t.after(() => compute.close());
  const a = await compute.add().end('a').promise;
  const b = await compute.add().end('b').promise;
  const d = await compute.add({ after: [[a.key, a.created], { key: b.key, created: b.created }] }).end('d').promise;
  let rows = byCreated(await collect(compute.list('pending')));
  assert.deepStrictEqual(rows[d.created].after, [[a.key, a.created], [b.key, b.created]]);

  await compute.run({ untilEmpty: true });
  assert.deepStrictEqual(seen.map((s) => s.created).slice(-1), [d.created]); // last, after its inputs
  const results = Object.fromEntries((await collect(compute.list('result'))).map((r) => [r.key[1], r.value.hash]));
  const inputs = seen.find((s) => s.created === d.created).after;
  assert.deepStrictEqual(inputs, [
    { key: a.key, created: a.created, hash: results[a.created] },
    { key: b.key, created: b.created, hash: results[b.created] },
  ]);
  assert.ok(Object.isFrozen(inputs));
  assert.strictEqual((await readAll(compute.get(inputs[1].hash))).toString(), 'out of b');
  assert.deepStrictEqual(seen.find((s) => s.created === a.created).after, []);

  // A failing upstream fails its dependents, transitively.
  const fails = [];
  compute.on('fail', (err) => fails.push(err.created));
  const u = await compute.add().end('boom').promise;
  const e = await compute.push(d.key, { after: [[u.key, u.created]] });
  const f = await compute.push(d.key, { after: [[d.key, e]] });
  await compute.run({ untilEmpty: true });
  const failRows = byCreated((await collect(compute.list('fail'))).map((r) => ({ created: r.key[1], message: r.value.message })));
  assert.strictEqual(failRows[e].message, `upstream ${u.key} ${u.created} failed`);
  assert.strictEqual(failRows[f].message, `upstream ${d.key} ${e} failed`);
  // A push after a failed upstream succeeds; the instance is a fail row at once.
  const g = await compute.push(d.key, { after: [[u.key, u.created]] });
  rows = await collect(compute.list('pending'));
  assert.strictEqual(rows.length, 0);
  assert.ok((await collect(compute.list('fail'))).some((r) => r.key[1] === g));
});

test('after: bad input is refused and changes nothing', async (t) => {
  const compute = batchdb(tmpdb(t));
  t.after(() => compute.close());
  const a = await compute.add().end('a').promise;
  const before = await collect(compute.list('pending'));
  const unknown = '0'.repeat(64);
  await assert.rejects(compute.push(a.key, { after: [[a.key, a.created + 1]] }), { code: 'BATCHDB_ERR_NOT_FOUND' });
  await assert.rejects(compute.add({ after: [[unknown, a.created]] }).end('x').promise, { code: 'BATCHDB_ERR_NOT_FOUND' });
  await assert.rejects(compute.push(a.key, { after: [['abc', a.created]] }), { code: 'BATCHDB_ERR_INVALID' });
  // Longer than a key: refused, not cut to 64 characters.
  await assert.rejects(compute.push(a.key, { after: [[a.key + '00', a.created]] }), { code: 'BATCHDB_ERR_INVALID' });
  await assert.rejects(compute.push(a.key, { after: [[a.key, a.created], [a.key, a.created]] }), { code: 'BATCHDB_ERR_INVALID' });
  await assert.rejects(compute.push(a.key, { after: [a.key] }), TypeError);
  await assert.rejects(compute.push(a.key, { after: 'x' }), TypeError);
  assert.deepStrictEqual(await collect(compute.list('pending')), before);
});

test('why: the job line and the result lines with their upstreams', async (t) => {
  const compute = batchdb(tmpdb(t), { run: (key) => output(key.startsWith('x') ? 'never' : 'same') });
  t.after(() => compute.close());
  const a = await compute.add().end('same').promise; // its output equals its payload
  await compute.run({ untilEmpty: true });
  const d = await compute.add({ after: [[a.key, a.created]] }).end('derived').promise;
  await compute.run({ untilEmpty: true });
  const lines = await compute.why(a.key);
  assert.deepStrictEqual(lines[0], { job: a.key });
  assert.deepStrictEqual(lines.slice(1).sort((x, y) => x.result[1] - y.result[1]), [
    { result: [a.key, a.created], after: [] },
    { result: [d.key, d.created], after: [[a.key, a.created]] },
  ]);
  assert.deepStrictEqual(
    await new Promise((resolve, reject) => compute.why(d.key, (err, lines) => (err ? reject(err) : resolve(lines)))),
    [{ job: d.key }],
  );
  await assert.rejects(compute.why('0'.repeat(64)), { code: 'BATCHDB_ERR_NOT_FOUND' });
  await assert.rejects(compute.why('nope'), { code: 'BATCHDB_ERR_INVALID' });
});

test('backup and copyTo: a consistent file, and everything into another handle, twice without resending', async (t) => {
  const compute = batchdb(tmpdb(t), { run: () => output('copied output') });
  t.after(() => compute.close());
  const { key } = await compute.add().end('echo copy me').promise;
  await compute.run({ untilEmpty: true });
  await compute.push(key);
  const dir = path.dirname(tmpdb(t));
  const dest = path.join(dir, 'backup.db');
  await compute.backup(dest);
  await assert.rejects(compute.backup(dest), (e) => e.code === 'BATCHDB_ERR_INVALID');
  const backup = batchdb(dest);
  t.after(() => backup.close());
  assert.strictEqual((await collect(backup.list('pending'))).length, 1);

  const target = batchdb(path.join(dir, 'copy.db'));
  t.after(() => target.close());
  const first = await compute.copyTo(target);
  assert.strictEqual(first.blobsSent, 2);
  assert.ok(first.rows > 0);
  const again = await new Promise((resolve, reject) => compute.copyTo(target, (err, r) => (err ? reject(err) : resolve(r))));
  assert.strictEqual(again.blobsSent, 0);
  for (const kind of ['job', 'pending', 'result', 'fail']) {
    assert.deepStrictEqual(await collect(target.list(kind)), await collect(compute.list(kind)), kind);
  }
  const [result] = await collect(target.list('result'));
  assert.strictEqual((await readAll(target.get(result.value.hash))).toString(), 'copied output');

  const stranger = batchdb(path.join(dir, 'stranger.db'));
  t.after(() => stranger.close());
  await stranger.add().end('mine').promise;
  await assert.rejects(compute.copyTo(stranger), (e) => e.code === 'BATCHDB_ERR_INVALID');
  await assert.rejects(compute.copyTo({}), TypeError);
});
