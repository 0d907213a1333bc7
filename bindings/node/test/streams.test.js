'use strict';
// Every kind of stream the original's runners returned, from the real old npm packages:
// classic (streams1) ones (duplexer@0.1, through@2, a bare Stream), streams2 ones
// (duplexer2@0.0.2, through2@0.6 over readable-stream 1.x) and Node's own. The payload goes in,
// the output comes out as the result; an 'error' on either side fails the instance; anything
// that is not a stream fails the instance with a clear message and the loop goes on.
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const Stream = require('node:stream');
const { spawn } = require('node:child_process');
const duplexer = require('duplexer');
const duplexer2 = require('duplexer2');
const through = require('through');
const through2 = require('through2');
const concat = require('concat-stream');
const split = require('split');
const batchdb = require('..');
const { tmpdb, collect, readAll } = require('../test-helpers');

const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

// Adds each payload, runs until empty, and returns {results: Map created -> output, fails}.
async function runAll(t, runner, payloads, opts = {}) {
  const compute = batchdb(tmpdb(t), { run: runner, ...opts });
  const fails = [];
  compute.on('fail', (err) => fails.push(err));
  const added = [];
  for (const p of payloads) added.push(await compute.add().end(p).promise);
  await compute.run({ untilEmpty: true });
  const outputs = new Map();
  for (const row of await collect(compute.list('result'))) {
    outputs.set(row.key[1], await readAll(compute.get(row.value.hash)));
  }
  const failRows = await collect(compute.list('fail'));
  assert.deepStrictEqual(await collect(compute.list('pending')), [], 'nothing left pending');
  await compute.close();
  return { added, outputs, fails, failRows };
}

test('duplexer@0.1 over spawn("bash"), as the README writes it', async (t) => {
  function run(key) {
    var ps = spawn('bash');
    return duplexer(ps.stdin, ps.stdout);
  }
  const { added, outputs, fails } = await runAll(t, run, ['echo one', 'echo two; echo three >&1']);
  assert.deepStrictEqual(fails, []);
  assert.strictEqual(outputs.get(added[0].created).toString(), 'one\n');
  assert.strictEqual(outputs.get(added[1].created).toString(), 'two\nthree\n');
});

test('duplexer@0.1 over split@0.3 piped into through2@0.6, as in the original test', async (t) => {
  const { added, outputs, fails } = await runAll(t, () => {
    const input = split();
    const output = through2(function (line, _enc, next) {
      this.push(String(line).split('').reverse().join('') + '\n');
      next();
    });
    input.pipe(output);
    return duplexer(input, output);
  }, ['abc\ndef']);
  assert.deepStrictEqual(fails, []);
  assert.strictEqual(outputs.get(added[0].created).toString(), 'cba\nfed\n');
});

test('duplexer@0.1 over spawn("cat"): 3 MiB each way, with backpressure on both sides', async (t) => {
  const big = crypto.randomBytes(3 * 1024 * 1024);
  const { added, outputs, fails } = await runAll(t, () => {
    const ps = spawn('cat');
    return duplexer(ps.stdin, ps.stdout);
  }, [big]);
  assert.deepStrictEqual(fails, []);
  assert.strictEqual(sha(outputs.get(added[0].created)), sha(big));
});

test('duplexer2@0.0.2 over spawn("bash"), and over concat/through2 as in the original test', async (t) => {
  {
    const { added, outputs, fails } = await runAll(t, () => {
      const ps = spawn('bash');
      return duplexer2(ps.stdin, ps.stdout);
    }, ['echo duplexer2']);
    assert.deepStrictEqual(fails, []);
    assert.strictEqual(outputs.get(added[0].created).toString(), 'duplexer2\n');
  }
  {
    const { added, outputs, fails } = await runAll(t, () => {
      const output = through2();
      const input = concat((body) => output.end(Buffer.from(body).reverse()));
      return duplexer2(input, output);
    }, ['\nfed\ncba']);
    assert.deepStrictEqual(fails, []);
    assert.strictEqual(outputs.get(added[0].created).toString(), 'abc\ndef\n');
  }
});

test('through2@0.6 (streams2) and through@2 (classic) transforms, 2 MiB through pause/resume', async (t) => {
  const big = crypto.randomBytes(2 * 1024 * 1024);
  const upper = (s) => s.toString('latin1').toUpperCase();
  {
    const { added, outputs, fails } = await runAll(t, () => through2(function (chunk, _enc, next) {
      next(null, Buffer.from(upper(chunk), 'latin1'));
    }), ['hello through2', big]);
    assert.deepStrictEqual(fails, []);
    assert.strictEqual(outputs.get(added[0].created).toString(), 'HELLO THROUGH2');
    assert.strictEqual(sha(outputs.get(added[1].created)), sha(Buffer.from(upper(big), 'latin1')));
  }
  {
    const { added, outputs, fails } = await runAll(t, () => through(function (chunk) {
      this.queue(Buffer.from(upper(chunk), 'latin1'));
    }), ['hello through', big]);
    assert.deepStrictEqual(fails, []);
    assert.strictEqual(outputs.get(added[0].created).toString(), 'HELLO THROUGH');
    assert.strictEqual(sha(outputs.get(added[1].created)), sha(Buffer.from(upper(big), 'latin1')));
  }
});

test('readables: a classic Stream, a streams3 Readable; and Duplex.from', async (t) => {
  const classic = () => {
    const s = new Stream();
    s.readable = true;
    setImmediate(() => {
      s.emit('data', 'classic ');
      s.emit('data', Buffer.from('readable'));
      s.emit('end');
    });
    return s;
  };
  const modern = (key) => Stream.Readable.from([`key ${key.slice(0, 8)}`]);
  const dfrom = () =>
    Stream.Duplex.from(async function* (src) {
      for await (const c of src) yield Buffer.from(c).reverse();
    });
  for (const [runner, check] of [
    [classic, (out) => assert.strictEqual(out, 'classic readable')],
    [modern, (out, key) => assert.strictEqual(out, `key ${key.slice(0, 8)}`)],
    [dfrom, (out) => assert.strictEqual(out, 'olleh')],
  ]) {
    const { added, outputs, fails } = await runAll(t, runner, ['hello']);
    assert.deepStrictEqual(fails, []);
    check(outputs.get(added[0].created).toString(), added[0].key);
  }
});

test("an 'error' on either side of a duplexer fails the instance; the loop goes on", async (t) => {
  // input side: a writable that refuses the payload
  const inputFails = () => {
    const w = through(function () {
      this.emit('error', new Error('input side broke'));
    });
    return duplexer(w, through());
  };
  // output side: the readable errors midway (duplexer2 bubbles it)
  const outputFails = () => {
    const input = through2();
    const output = through2();
    input.on('data', () => {
      output.push('partial');
      setImmediate(() => output.emit('error', new Error('output side broke')));
    });
    return duplexer2(input, output);
  };
  for (const [runner, message] of [
    [inputFails, 'input side broke'],
    [outputFails, 'output side broke'],
  ]) {
    let calls = 0;
    const { added, outputs, fails, failRows } = await runAll(
      t,
      (key) => (++calls === 1 ? runner(key) : through()),
      ['will fail', 'passes'],
      { order: 'oldest' },
    );
    assert.strictEqual(fails.length, 1);
    assert.strictEqual(fails[0].message, message);
    assert.strictEqual(fails[0].created, added[0].created);
    assert.deepStrictEqual(failRows.map((r) => [r.key, r.value]), [[[added[0].key, added[0].created], { message }]]);
    assert.strictEqual(outputs.get(added[1].created).toString(), 'passes');
  }
});

test('a runner returning nothing, a string, an object or a non-byte chunk, or throwing, fails that instance only', async (t) => {
  const cases = [
    [() => undefined, /opts\.run must return a stream \(a duplex, or a readable\), not undefined/],
    [() => 'echo hi', /opts\.run must return a stream .*not a string \("echo hi"\)/],
    [() => ({ write() {} }), /opts\.run must return a stream .*not an object without on\(\)/],
    [() => { throw new Error('no runner today'); }, /^no runner today$/],
    [() => { throw 'a thrown string'; }, /^a thrown string$/], // eslint-disable-line no-throw-literal
    [() => through2.obj(function (_c, _e, next) { next(null, { an: 'object' }); }), /emitted an object without on\(\), not bytes or a string/],
  ];
  for (const [bad, message] of cases) {
    let calls = 0;
    const { added, outputs, fails, failRows } = await runAll(
      t,
      (key) => (++calls === 1 ? bad(key) : through()),
      ['bad', 'good'],
      { order: 'oldest' },
    );
    assert.strictEqual(fails.length, 1, String(message));
    assert.match(fails[0].message, message);
    assert.strictEqual(failRows.length, 1);
    assert.strictEqual(failRows[0].value.message, fails[0].message);
    assert.strictEqual(outputs.get(added[1].created).toString(), 'good');
  }
});

test('fail rows have the original shape; start, end and attempts are there, not enumerable', async (t) => {
  const { added, failRows } = await runAll(t, () => through(function () {
    this.emit('error', new Error('yo'));
  }), ['x']);
  assert.strictEqual(failRows.length, 1);
  const row = failRows[0];
  assert.deepStrictEqual(row, { key: [added[0].key, added[0].created], value: { message: 'yo' } });
  assert.deepStrictEqual(Object.keys(row.value), ['message']);
  assert.strictEqual(JSON.stringify(row.value), '{"message":"yo"}');
  assert.ok(Number.isInteger(row.value.start) && row.value.start >= added[0].created);
  assert.ok(row.value.end >= row.value.start);
  assert.strictEqual(row.value.attempts, 1);
});

test('run() without a runner: a TypeError at once, or to the callback; no unhandled rejection', async (t) => {
  const compute = batchdb(tmpdb(t));
  assert.throws(() => compute.run(), { name: 'TypeError', message: /run\(\) needs a runner/ });
  const err = await new Promise((resolve) => compute.run((e) => resolve(e)));
  assert.ok(err instanceof TypeError);
  assert.match(err.message, /run\(\) needs a runner/);
  await assert.rejects(async () => compute.run({ untilEmpty: true }), TypeError);
  await compute.close();
});
