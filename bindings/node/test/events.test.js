'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { Duplex, Transform } = require('node:stream');
const batchdb = require('..');
const { tmpdb, collect, readAll } = require('../test-helpers');

function record(compute) {
  const events = [];
  for (const name of ['create', 'push', 'start', 'result', 'fail']) {
    compute.on(name, (...args) => events.push([name, ...args]));
  }
  return events;
}

const upper = () =>
  new Transform({
    transform(chunk, _enc, cb) {
      cb(null, chunk.toString().toUpperCase());
    },
  });

test('every event with its arguments, for a result', async (t) => {
  const compute = batchdb(tmpdb(t), { run: upper });
  const events = record(compute);
  const ws = compute.add();
  ws.end('hello');
  const { key, created } = await ws.promise;
  assert.strictEqual(ws.key, key);
  assert.strictEqual(ws.created, created);
  await compute.run({ untilEmpty: true });
  const [name, rkey, hash, rcreated] = events[3];
  assert.deepStrictEqual(events.slice(0, 3), [
    ['create', key],
    ['push', key, created],
    ['start', key, created],
  ]);
  assert.deepStrictEqual([name, rkey, rcreated], ['result', key, created]);
  assert.strictEqual(events.length, 4);
  assert.strictEqual((await readAll(compute.get(hash))).toString(), 'HELLO');
  assert.strictEqual(hash, require('node:crypto').createHash('sha256').update('HELLO').digest('hex'));
  await compute.close();
});

test('a runner whose duplex emits error fails the instance: fail event and fail row', async (t) => {
  const compute = batchdb(tmpdb(t), {
    run: () => {
      const d = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
      setTimeout(() => d.destroy(new Error('exploded')), 10);
      return d;
    },
  });
  const events = record(compute);
  const { key, created } = await compute.add().end('x').promise;
  await compute.run({ untilEmpty: true });
  const fail = events.find((e) => e[0] === 'fail');
  assert.ok(fail, 'a fail event');
  assert.strictEqual(fail.length, 2);
  const err = fail[1];
  assert.ok(err instanceof Error);
  assert.strictEqual(err.message, 'exploded');
  assert.strictEqual(err.job, key);
  assert.strictEqual(err.created, created);
  assert.ok(!events.some((e) => e[0] === 'result'));
  const rows = await collect(compute.list('fail'));
  assert.strictEqual(rows.length, 1);
  assert.deepStrictEqual(rows[0].key, [key, created]);
  assert.strictEqual(rows[0].value.message, 'exploded');
  assert.strictEqual(rows[0].value.attempts, 1);
  assert.deepStrictEqual(await collect(compute.list('pending')), []);

  // retry re-queues it as a new instance and removes the fail row
  const again = await compute.retry(key, created);
  assert.ok(again > created);
  assert.deepStrictEqual(await collect(compute.list('fail')), []);
  assert.deepStrictEqual(await collect(compute.list('pending')), [{ job: key, created: again, running: false }]);
  await compute.close();
});

test('a runner that throws fails the instance; the loop goes on', async (t) => {
  let n = 0;
  const compute = batchdb(tmpdb(t), {
    order: 'oldest',
    run: () => {
      if (n++ === 0) throw new Error('no runner for you');
      return upper();
    },
  });
  const events = record(compute);
  const a = await compute.add().end('first').promise;
  const b = await compute.add().end('second').promise;
  await compute.run({ untilEmpty: true });
  const fails = events.filter((e) => e[0] === 'fail');
  const results = events.filter((e) => e[0] === 'result');
  assert.strictEqual(fails.length, 1);
  assert.strictEqual(fails[0][1].message, 'no runner for you');
  assert.strictEqual(fails[0][1].job, a.key);
  assert.strictEqual(fails[0][1].created, a.created);
  assert.strictEqual(results.length, 1);
  assert.strictEqual(results[0][1], b.key);
  assert.strictEqual(results[0][3], b.created);
  await compute.close();
});

test('several jobs in flight with opts.workers', async (t) => {
  let live = 0;
  let peak = 0;
  const compute = batchdb(tmpdb(t), {
    workers: 3,
    run: () => {
      live++;
      peak = Math.max(peak, live);
      // takes its input, answers 100 ms later
      const d = new Duplex({
        read() {},
        write: (_c, _e, cb) => cb(),
        final(cb) {
          setTimeout(() => {
            live--;
            this.push('ok');
            this.push(null);
            cb();
          }, 100);
        },
      });
      return d;
    },
  });
  for (let i = 0; i < 6; i++) await compute.add().end(`job ${i}`).promise;
  const results = [];
  compute.on('result', (k) => results.push(k));
  await compute.run({ untilEmpty: true });
  assert.strictEqual(results.length, 6);
  assert.strictEqual(peak, 3);
  await compute.close();
});
