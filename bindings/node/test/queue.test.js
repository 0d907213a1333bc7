'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { once } = require('node:events');
const { Duplex } = require('node:stream');
const batchdb = require('..');
const { tmpdb, bashRunner, collect, readAll } = require('../test-helpers');

test('close() while run is active: returns, and no instance stays running after reopen', async (t) => {
  const file = tmpdb(t);
  const compute = batchdb(file, { run: bashRunner, workers: 2, lease: 200 });
  for (let i = 0; i < 4; i++) await compute.add().end(`sleep 0.3; echo ${i}`).promise;
  const started = [];
  compute.on('start', (k, c) => started.push(c));
  const running = compute.run();
  await once(compute, 'start');
  await compute.close();
  await running; // the loop ended
  assert.ok(started.length >= 1);
  await assert.rejects(compute.push('a'.repeat(64)), { code: 'BATCHDB_ERR_MISUSE' });
  const [err] = await once(compute.add().end('x'), 'error');
  assert.strictEqual(err.code, 'BATCHDB_ERR_MISUSE');

  await new Promise((r) => setTimeout(r, 300)); // past the lease
  const again = batchdb(file, { run: bashRunner, lease: 200 });
  const pending = await collect(again.list('pending'));
  const results = await collect(again.list('result'));
  assert.strictEqual(pending.length + results.length, 4);
  for (const row of pending) assert.strictEqual(row.running, false);
  // and they still run to completion
  await again.run({ untilEmpty: true });
  assert.strictEqual((await collect(again.list('result'))).length, 4);
  assert.deepStrictEqual(await collect(again.list('pending')), []);
  await again.close();
  await again.close(); // twice is fine
});

test('run({ keepAlive: true }) picks up jobs added by another handle, until stop()', async (t) => {
  const file = tmpdb(t);
  const worker = batchdb(file, { run: bashRunner });
  const other = batchdb(file);
  // Nothing else holds this process's event loop while the worker waits: keepAlive says to.
  const running = worker.run({ keepAlive: true });
  await new Promise((r) => setTimeout(r, 100));
  const { key, created } = await other.add().end('echo from elsewhere').promise;
  const [rkey, hash, rcreated] = await once(worker, 'result');
  assert.deepStrictEqual([rkey, rcreated], [key, created]);
  assert.strictEqual((await readAll(other.get(hash))).toString(), 'from elsewhere\n');
  await worker.stop();
  await running;
  await worker.close();
  await other.close();
});

test('priority, delay, cancel and prune, promise and callback forms', async (t) => {
  const order = [];
  const compute = batchdb(tmpdb(t), {
    run: (key, created) => {
      order.push(created);
      return Duplex.from(async function* (src) {
        for await (const c of src) yield c.toString().toUpperCase();
      });
    },
  });
  const low = await compute.add().end('low').promise;
  const high = await compute.add({ priority: 5 }).end('high').promise;
  const key = await compute.create().end('shared').promise;
  const delayed = await compute.push(key, { delay: 400 });
  const cancelled = await new Promise((resolve, reject) =>
    compute.push(key, { priority: 9 }, (err, c) => (err ? reject(err) : resolve(c))),
  );

  const pending = await collect(compute.list('pending'));
  const byCreated = Object.fromEntries(pending.map((r) => [r.created, r]));
  assert.deepStrictEqual(byCreated[low.created], { job: low.key, created: low.created, running: false });
  assert.strictEqual(byCreated[high.created].priority, 5);
  assert.ok(!('run_at' in byCreated[high.created]));
  assert.strictEqual(byCreated[delayed].run_at, delayed + 400);
  assert.strictEqual(byCreated[cancelled].priority, 9);

  await new Promise((resolve, reject) => compute.cancel(key, cancelled, (err) => (err ? reject(err) : resolve())));
  await assert.rejects(compute.cancel(key, cancelled), { code: 'BATCHDB_ERR_NOT_FOUND' });
  await assert.rejects(compute.push(key, { delay: -1 }), TypeError);

  const t0 = Date.now();
  await compute.run({ untilEmpty: true }); // waits for the delayed one too
  assert.ok(Date.now() - t0 >= 300, 'the delayed instance was waited for');
  assert.deepStrictEqual(order, [high.created, low.created, delayed]);
  const results = await collect(compute.list('result'));
  assert.strictEqual(results.length, 3);

  assert.strictEqual(await compute.prune(Date.now() - 60_000), 0);
  const removed = await new Promise((resolve, reject) =>
    compute.prune(Date.now() + 1, (err, n) => (err ? reject(err) : resolve(n))),
  );
  assert.strictEqual(removed, 3);
  assert.deepStrictEqual(await collect(compute.list('result')), []);
  assert.ok((await compute.gc()) >= 1, 'the outputs are reclaimed');
  await compute.close();
});

test('a waiting run idles cheaply and starts a delayed instance on time', async (t) => {
  const compute = batchdb(tmpdb(t), {
    keepAlive: true, // a dedicated worker: its waiting holds the event loop
    run: () =>
      Duplex.from(async function* (src) {
        for await (const c of src) yield c;
      }),
  });
  // Queued, but not due for an hour: the waiting run must sleep, not spin.
  await compute.add({ delay: 3600000 }).end('much later').promise;
  const running = compute.run();
  await new Promise((r) => setTimeout(r, 300));
  const before = process.resourceUsage();
  await new Promise((r) => setTimeout(r, 3000));
  const after = process.resourceUsage();
  const ms = (after.userCPUTime + after.systemCPUTime - before.userCPUTime - before.systemCPUTime) / 1000;
  const sleeps = after.voluntaryContextSwitches - before.voluntaryContextSwitches;
  t.diagnostic(`idle run with a delay an hour away: ${ms.toFixed(1)} ms of CPU and ${sleeps} sleeps over 3 s`);
  // Counts a loaded machine does not push past the bound (a 30 ms CPU bound failed the Rust
  // twin of this test at 32 ms once): a spinning run uses the whole core (3000 ms), and a
  // polling one wakes thousands of times.
  assert.ok(ms < 300, `an idle run used ${ms} ms of CPU in 3 s (10% of a core is 300 ms): it spins`);
  assert.ok(sleeps < 1000, `an idle run's process slept and woke ${sleeps} times in 3 s: it polls`);

  const { created } = await compute.add({ delay: 600 }).end('soon').promise;
  let start = 0;
  for (let i = 0; i < 250 && !start; i++) {
    for (const row of await collect(compute.list('result'))) {
      if (row.key[1] === created) start = row.value.start;
    }
    if (!start) await new Promise((r) => setTimeout(r, 20));
  }
  const late = start - (created + 600);
  t.diagnostic(`the delayed instance started ${late} ms after its run_at`);
  // Quiet runs measure 0-6 ms; the bound leaves a loaded machine (test files run in parallel)
  // a second, and still fails a run that polls every few seconds or never wakes for the delay.
  assert.ok(start && late >= 0 && late < 1000, `started ${late} ms after run_at`);
  await compute.stop();
  await running;
  await compute.close();
});

test('stop() runs the instances a worker already claimed: none is released, none costs an attempt', async (t) => {
  // maxAttempts 1: an instance given back unfinished would become a fail row.
  const compute = batchdb(tmpdb(t), {
    maxAttempts: 1,
    run: () =>
      Duplex.from(async function* (src) {
        for await (const c of src) yield c;
      }),
  });
  for (let i = 0; i < 40; i++) await compute.add().end(`job ${i}`).promise;
  let results = 0;
  compute.on('result', () => {
    if (++results === 3) compute.stop();
  });
  await compute.run({ untilEmpty: true });
  assert.deepStrictEqual(await collect(compute.list('fail')), []);
  const pending = await collect(compute.list('pending'));
  assert.ok(pending.every((row) => !row.running), 'no instance stays claimed');
  assert.strictEqual(results + pending.length, 40);
  assert.strictEqual((await collect(compute.list('result'))).length, results);
  await compute.run({ untilEmpty: true });
  assert.strictEqual(results, 40);
  assert.deepStrictEqual(await collect(compute.list('fail')), []);
  await compute.close();
});
