'use strict';
// P6: the P4 cycle through the Node binding, on a database the harness filled. The same
// protocol as benches/c/cycle.c:
//
//   node cycle.js DB full|normal SECONDS
//
// The Node binding keeps the original batchdb's public API, which has no claim/complete of
// its own: this measures run() with one worker and a trivial runner (it consumes the payload
// and ends with an empty output), counting `result` events, until the queue is empty or
// SECONDS pass (then stop(), which lets the job in flight finish). Prints
// {"jobs": N, "seconds": S}. Needs `npm ci` in bindings/node (koffi) and
// target/release/libbatchdb.so (or BATCHDB_LIB).

const path = require('node:path');
const { Duplex } = require('node:stream');
const batchdb = require(path.join(__dirname, '..', '..', 'bindings', 'node'));

// Reads the whole payload, writes nothing: the result is the empty output.
function runner() {
  return new Duplex({
    read() {},
    write(_chunk, _enc, cb) {
      cb();
    },
    final(cb) {
      this.push(null);
      cb();
    },
  });
}

async function main() {
  const [file, durability, secs] = process.argv.slice(2);
  if (!file || !['full', 'normal'].includes(durability) || !(Number(secs) >= 0)) {
    process.stderr.write('usage: node cycle.js DB full|normal SECONDS\n');
    process.exit(2);
  }
  const compute = await batchdb.open(file, { run: runner, workers: 1, durability });
  let jobs = 0;
  compute.on('result', () => {
    jobs++;
  });
  let failure = null;
  compute.on('fail', (err) => {
    failure = failure || err;
  });
  const t0 = process.hrtime.bigint();
  const timer = setTimeout(() => compute.stop(), Number(secs) * 1000);
  await compute.run({ untilEmpty: true });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  clearTimeout(timer);
  await compute.close();
  if (failure) throw failure;
  process.stdout.write(JSON.stringify({ jobs, seconds }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`cycle: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
