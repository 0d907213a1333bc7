'use strict';
// API.md section 9 in Node: named queues, global limits, pause and resume, unique pushes,
// recurring schedules and progress. Waits are for conditions with deadlines: the suite runs on
// loaded machines (and its files in parallel) and asserts no speed.
const test = require('node:test');
const assert = require('node:assert');
const { once } = require('node:events');
const { Duplex } = require('node:stream');
const batchdb = require('..');
const { tmpdb, collect } = require('../test-helpers');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `cond` (sync or async) every 20 ms until it is truthy; fails after `ms`.
async function waitFor(what, cond, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

// A runner stream that echoes the payload, upper-cased, after `hold` resolves.
function echo(hold = Promise.resolve()) {
  return Duplex.from(async function* (src) {
    const chunks = [];
    for await (const c of src) chunks.push(c);
    await hold;
    yield Buffer.concat(chunks).toString().toUpperCase();
  });
}

const byCreated = (rows) => Object.fromEntries(rows.map((r) => [r.created, r]));

test('queues: push and add name them, pending rows carry them, run serves opts.queues', async (t) => {
  const file = tmpdb(t);
  const ran = [];
  const compute = batchdb(file, {
    queues: ['gamma'],
    run: (key, created) => {
      ran.push(created);
      return echo();
    },
  });
  const a = await compute.add({ queue: 'alpha' }).end('in alpha').promise;
  const d = await compute.add().end('in default').promise;
  const g = await new Promise((resolve, reject) =>
    compute.add({ queue: 'gamma' }, (err, key, created) => (err ? reject(err) : resolve({ key, created }))).end('in gamma'),
  );
  const pushed = await compute.push(a.key, { queue: 'beta', priority: 2 });

  const rows = byCreated(await collect(compute.list('pending')));
  assert.deepStrictEqual(rows[a.created], { job: a.key, created: a.created, running: false, queue: 'alpha' });
  assert.deepStrictEqual(rows[d.created], { job: d.key, created: d.created, running: false }); // the original's shape
  assert.strictEqual(rows[pushed].queue, 'beta');
  assert.strictEqual(rows[pushed].priority, 2);

  await compute.run({ untilEmpty: true }); // the constructor's queues: gamma only
  assert.deepStrictEqual(ran, [g.created]);
  await compute.run({ untilEmpty: true, queues: ['beta'] }); // run's own option overrides
  assert.deepStrictEqual(ran, [g.created, pushed]);
  await compute.run({ untilEmpty: true, queues: [] }); // none named: every queue
  assert.strictEqual(ran.length, 4);
  assert.deepStrictEqual(await collect(compute.list('pending')), []);
  await compute.close();
});

test('limit holds across two handles and is removed by 0; callback forms', async (t) => {
  const file = tmpdb(t);
  let inFlight = 0;
  let most = 0;
  let done = 0;
  const run = () => {
    inFlight++;
    most = Math.max(most, inFlight);
    return Duplex.from(async function* (src) {
      for await (const c of src) void c;
      await sleep(40);
      inFlight--;
      done++;
      yield 'ok';
    });
  };
  const a = batchdb(file, { run, workers: 3, queues: ['lim'] });
  const b = batchdb(file, { run, workers: 3, queues: ['lim'] });
  await new Promise((resolve, reject) => a.limit('lim', 2, (err) => (err ? reject(err) : resolve())));
  for (let i = 0; i < 10; i++) await a.add({ queue: 'lim' }).end(`job ${i}`).promise;
  await Promise.all([a.run({ untilEmpty: true }), b.run({ untilEmpty: true })]);
  assert.strictEqual(done, 10);
  assert.ok(most <= 2, `${most} ran at once under a limit of 2`);
  assert.ok(most >= 1);

  await b.limit('lim', 0);
  most = 0;
  for (let i = 0; i < 6; i++) await a.add({ queue: 'lim' }).end(`more ${i}`).promise;
  await Promise.all([a.run({ untilEmpty: true }), b.run({ untilEmpty: true })]);
  assert.strictEqual(done, 16);
  await a.close();
  await b.close();
});

test('pause in one handle stops a waiting run in another; resume restarts it', async (t) => {
  const file = tmpdb(t);
  const started = [];
  const worker = batchdb(file, {
    keepAlive: true,
    workers: 2,
    run: (key, created) => {
      started.push(created);
      return echo();
    },
  });
  const admin = batchdb(file);
  await admin.pause('p');
  const running = worker.run();
  const p = await admin.add({ queue: 'p' }).end('paused one').promise;
  const o = await admin.add({ queue: 'o' }).end('other one').promise;
  await waitFor('the unpaused queue ran', () => started.includes(o.created));
  await sleep(300); // the paused one had its chances meanwhile
  assert.ok(!started.includes(p.created), 'an instance of a paused queue ran');

  // An until-empty run is not held by a paused queue.
  const other = batchdb(file, { run: () => assert.fail('must not run') });
  await other.run({ untilEmpty: true });
  await other.close();

  await new Promise((resolve, reject) => admin.resume('p', (err) => (err ? reject(err) : resolve())));
  await waitFor('the resumed queue ran', () => started.includes(p.created));
  await admin.resume('never-paused');
  await new Promise((resolve, reject) => admin.pause('q2', (err) => (err ? reject(err) : resolve())));
  await worker.stop();
  await running;
  await worker.close();
  await admin.close();
});

test('unique pushes return the live instance of the queue', async (t) => {
  const compute = batchdb(tmpdb(t));
  const first = await compute.add({ queue: 'uq', unique: true }).end('only once').promise;
  assert.strictEqual(await compute.push(first.key, { queue: 'uq', unique: true }), first.created);
  const again = await compute.add({ queue: 'uq', unique: true }).end('only once').promise;
  assert.deepStrictEqual(again, first);
  const elsewhere = await compute.push(first.key, { queue: 'other', unique: true });
  assert.notStrictEqual(elsewhere, first.created);
  const plain = await compute.push(first.key, { queue: 'uq' });
  assert.ok(plain > first.created);
  assert.strictEqual((await collect(compute.list('pending'))).length, 3);
  await assert.rejects(compute.push(first.key, { unique: 'yes' }), TypeError);
  await compute.close();
});

test('schedule every 1s fires into a waiting run; schedules lists; unschedule removes', async (t) => {
  const file = tmpdb(t);
  const compute = batchdb(file, { keepAlive: true, queues: ['sched'], run: () => echo() });
  const before = Date.now();
  const row = await compute.schedule('ticker', 'every 1s', 'tick', { queue: 'sched' });
  const key = await compute.create().end('tick').promise;
  assert.deepStrictEqual(Object.keys(row), ['name', 'spec', 'queue', 'job', 'next_run']);
  assert.strictEqual(row.job, key);
  assert.deepStrictEqual([row.name, row.spec, row.queue], ['ticker', 'every 1s', 'sched']);
  assert.ok(row.next_run % 1000 === 0 && row.next_run >= before - 1000 && row.next_run <= Date.now() + 1000);
  const nightly = await new Promise((resolve, reject) =>
    compute.schedule('nightly', ' 0 3 * * *\n', Buffer.from('nightly'), (err, r) => (err ? reject(err) : resolve(r))),
  );
  assert.strictEqual(nightly.queue, 'default');
  assert.strictEqual(nightly.next_run % 86400000, 3 * 3600000);

  const listed = await compute.schedules();
  assert.deepStrictEqual(listed, [nightly, row]);
  const viaCb = await new Promise((resolve, reject) => compute.schedules((err, rows) => (err ? reject(err) : resolve(rows))));
  assert.deepStrictEqual(viaCb, listed);

  const running = compute.run();
  const result = once(compute, 'result');
  const [rkey, hash] = await Promise.race([result, sleep(5000).then(() => assert.fail('no scheduled result within 5 s'))]);
  assert.strictEqual(rkey, key);
  assert.ok(hash);
  await compute.stop();
  await running;

  const replaced = await compute.schedule('ticker', '*/5 * * * *', 'tock');
  assert.strictEqual(replaced.next_run % 300000, 0);
  assert.strictEqual((await compute.schedules()).length, 2);
  await compute.unschedule('ticker');
  await new Promise((resolve, reject) => compute.unschedule('nightly', (err) => (err ? reject(err) : resolve())));
  await assert.rejects(compute.unschedule('ticker'), { code: 'BATCHDB_ERR_NOT_FOUND' });
  assert.deepStrictEqual(await compute.schedules(), []);
  await compute.close();
});

test('progress: the runner reports through its third argument; event and pending row', async (t) => {
  let release;
  const hold = new Promise((r) => (release = r));
  const reports = [];
  const compute = batchdb(tmpdb(t), {
    run: (key, created, job) => {
      assert.deepStrictEqual([job.key, job.created], [key, created]);
      reports.push(job.progress(0.5, 'half way'));
      reports.push(job.progress(2, 'too much').catch((e) => e)); // refused, without an unhandled rejection
      job.progress(0.75); // fire and forget: no message is ""
      return echo(hold);
    },
  });
  const events = [];
  compute.on('progress', (...args) => events.push(args));
  const { key, created } = await compute.add().end('long job').promise;
  const running = compute.run({ untilEmpty: true });
  await waitFor('two progress events', () => events.length === 2);
  assert.deepStrictEqual(events[0], [key, created, 0.5, 'half way']);
  assert.deepStrictEqual(events[1], [key, created, 0.75, '']);
  const err = await reports[1];
  assert.strictEqual(err.code, 'BATCHDB_ERR_INVALID');
  const [row] = await collect(compute.list('pending'));
  assert.deepStrictEqual(row, { job: key, created, running: true, progress: { done: 0.75, message: '' } });
  release();
  await running;
  assert.deepStrictEqual(await collect(compute.list('pending')), []);
  assert.strictEqual((await collect(compute.list('result'))).length, 1);

  // The callback form; after the job is done, progress is refused.
  let late;
  const c2 = batchdb(tmpdb(t), {
    run: (key, created, job) => {
      late = job;
      return Duplex.from(async function* (src) {
        for await (const c of src) void c;
        await new Promise((resolve, reject) => job.progress(1, 'done', (e) => (e ? reject(e) : resolve())));
        yield 'ok';
      });
    },
  });
  await c2.add().end('x').promise;
  await c2.run({ untilEmpty: true });
  assert.strictEqual((await collect(c2.list('fail'))).length, 0);
  await assert.rejects(late.progress(0.5, 'late'), { code: 'BATCHDB_ERR_MISUSE' });
  await assert.rejects(late.progress('half'), TypeError);
  await compute.close();
  await c2.close();
});

test('bad input: clear errors, nothing changed', async (t) => {
  const compute = batchdb(tmpdb(t));
  const { key } = await compute.add({ queue: 'q' }).end('job').promise;
  await compute.limit('q', 1);
  await compute.schedule('nightly', '0 3 * * *', 'job', { queue: 'q' });
  const snapshot = async () => JSON.stringify([await collect(compute.list('pending')), await compute.schedules(), await collect(compute.list('job'))]);
  const before = await snapshot();
  const invalid = { code: 'BATCHDB_ERR_INVALID' };

  for (const name of ['has space', 'a/b', 'été', 'a'.repeat(65), 'tab\there', 'nul\0byte', 'semi;colon']) {
    await assert.rejects(compute.push(key, { queue: name }), invalid, name);
    const [err] = await once(compute.add({ queue: name }).end('new'), 'error');
    assert.strictEqual(err.code, 'BATCHDB_ERR_INVALID');
    await assert.rejects(compute.limit(name, 1), invalid);
    await assert.rejects(compute.pause(name), invalid);
    await assert.rejects(compute.resume(name), invalid);
    await assert.rejects(compute.schedule(name, 'every 1s', 'new'), invalid);
    await assert.rejects(compute.schedule('fine', 'every 1s', 'new', { queue: name }), invalid);
    await assert.rejects(compute.unschedule(name), invalid);
  }
  await assert.rejects(compute.limit('', 1), invalid);
  await assert.rejects(compute.pause(''), invalid);
  await assert.rejects(compute.limit('q', -1), invalid);
  await assert.rejects(compute.limit('q', 2 ** 32), invalid);
  for (const spec of ['', 'every', 'every 0s', 'every -1s', 'every soon', '* * * *', '* * * * * *', '61 * * * *', '@daily', '0 0 30 2 *']) {
    await assert.rejects(compute.schedule('nightly', spec, 'new'), invalid, spec);
  }
  await assert.rejects(compute.unschedule('unknown'), { code: 'BATCHDB_ERR_NOT_FOUND' });
  await assert.rejects(compute.limit('q', 1.5), TypeError);
  await assert.rejects(compute.limit(7, 1), TypeError);
  await assert.rejects(compute.schedule('s', 'every 1s', 42), TypeError);
  await assert.rejects(compute.schedule('s', 'every 1s', 'x', { delay: -1 }), TypeError);
  await assert.rejects(compute.push(key, { queue: 5 }), TypeError);
  const errs = [];
  await new Promise((resolve) => compute.limit('bad name', 1, (err) => resolve(errs.push(err))));
  assert.strictEqual(errs[0].code, 'BATCHDB_ERR_INVALID');
  assert.throws(() => batchdb(tmpdb(t), { queues: 'q' }), TypeError);
  assert.throws(() => compute.run({ queues: [1] }), TypeError);
  const bad = batchdb(tmpdb(t), { run: () => echo(), queues: ['no good'] });
  await assert.rejects(bad.run({ untilEmpty: true }), invalid);
  await bad.close();

  assert.strictEqual(await snapshot(), before);
  await compute.close();
});

test('a run serving one queue does not spin on work queued for another', async (t) => {
  const compute = batchdb(tmpdb(t), { keepAlive: true, queues: ['mine'], run: () => echo() });
  await compute.add({ queue: 'theirs' }).end('not for this run').promise;
  const running = compute.run();
  await sleep(300);
  const before = process.cpuUsage();
  await sleep(3000);
  const used = process.cpuUsage(before);
  const ms = (used.user + used.system) / 1000;
  t.diagnostic(`a run of one queue, with another queue's work ready: ${ms.toFixed(1)} ms of CPU over 3 s`);
  // A spin costs most of the 3000 ms; the wait-and-pause loop measures 10-25 ms.
  assert.ok(ms < 150, `${ms} ms of CPU in 3 s`);
  const mine = await compute.add({ queue: 'mine' }).end('mine').promise;
  const [, , created] = await once(compute, 'result');
  assert.strictEqual(created, mine.created);
  await compute.stop();
  await running;
  const [row] = await collect(compute.list('pending'));
  assert.strictEqual(row.queue, 'theirs');
  await compute.close();
});

test('a run serving one queue starts its own work at once after a wake-up for another queue', async (t) => {
  // It waits with batchdb_wait_from: work in other queues does not satisfy the wait, so no
  // pause after a fruitless wake-up is needed (that pause was 200 ms). The best of 5 rounds
  // makes the bound robust to a loaded machine.
  const compute = batchdb(tmpdb(t), { keepAlive: true, queues: ['mine'], run: () => echo() });
  const running = compute.run();
  await sleep(200);
  const latencies = [];
  for (let i = 0; i < 5; i++) {
    await compute.add({ queue: 'theirs' }).end(`theirs ${i}`).promise;
    await sleep(20); // the run woke for it and found nothing to claim
    const started = once(compute, 'start');
    const t0 = Date.now();
    await compute.add({ queue: 'mine' }).end(`mine ${i}`).promise;
    await started;
    latencies.push(Date.now() - t0);
    await once(compute, 'result');
  }
  t.diagnostic(`own work started ${latencies.join(', ')} ms after its add`);
  assert.ok(Math.min(...latencies) < 120, `latencies ${latencies}`);
  await compute.stop();
  await running;
  await compute.close();
});
