'use strict';
// A waiting run() holds the process like the original's did: not at all. A script that adds
// jobs and runs them exits once they are done; a dedicated worker asks to stay with keepAlive.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const batchdb = require('..');
const { readmeExample, runNode } = require('../test-helpers');

const binding = path.resolve(__dirname, '..');

function tmpdir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'batchdb-idle-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // require('batchdb') from the scripts below is this binding; its devDependencies (duplexer)
  // come through NODE_PATH.
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(binding, path.join(dir, 'node_modules', 'batchdb'), 'dir');
  return dir;
}

const env = () => ({ ...process.env, NODE_PATH: path.join(binding, 'node_modules') });

test("the README's example runs its job and the process exits by itself", async (t) => {
  const dir = tmpdir(t);
  const db = path.join(dir, 'compute.db');
  fs.writeFileSync(path.join(dir, 'run.js'), readmeExample(db));
  const { code, signal, out, err } = await runNode('run.js', { cwd: dir, env: env() });
  assert.strictEqual(signal, null, err);
  assert.strictEqual(code, 0, err);
  // sha256('sleep 5; date'), then bash's output of `date`
  assert.match(out, /^RESULT ce6cc4e7fcb4a902f7c836cb93a32ae02cb47679c86e3d99c811233bf6f258c0 [0-9a-f]{64}\n.*\d\d:\d\d:\d\d.*\n$/);
  const compute = batchdb(db);
  const results = [];
  for await (const row of compute.list('result')) results.push(row);
  assert.strictEqual(results.length, 1);
  await compute.close();
});

test('an idle run() lets the process exit; with keepAlive it waits for jobs from other processes', async (t) => {
  const dir = tmpdir(t);
  fs.writeFileSync(
    path.join(dir, 'worker.js'),
    `'use strict';
const batchdb = require('batchdb');
const duplexer = require('duplexer');
const { spawn } = require('child_process');
const keepAlive = process.argv[2] === 'keep';
const compute = batchdb(process.argv[3], {
  keepAlive,
  run: () => { const ps = spawn('bash'); return duplexer(ps.stdin, ps.stdout); },
});
compute.on('result', (key) => console.log('RESULT', key));
compute.ready.then(() => {
  compute.run();
  console.log('RUNNING');
});
`,
  );
  // Both start with nothing to do. The idle one exits by itself; then a job is added to the
  // keepAlive one's file from this process, and it must still be there to run it.
  let added = null;
  let ranAdded = false;
  const keeper = runNode('worker.js', {
    args: ['keep', path.join(dir, 'keep.db')],
    cwd: dir,
    env: env(),
    onOut: (out, child) => {
      if (added && !ranAdded && out.includes(`RESULT ${added}`)) {
        ranAdded = true;
        child.kill('SIGTERM');
      }
    },
  });
  const idle = await runNode('worker.js', { args: ['idle', path.join(dir, 'idle.db')], cwd: dir, env: env() });
  assert.strictEqual(idle.signal, null, idle.err);
  assert.strictEqual(idle.code, 0, idle.err);
  assert.strictEqual(idle.out, 'RUNNING\n');

  const other = batchdb(path.join(dir, 'keep.db'));
  added = (await other.add().end('echo late').promise).key;
  await other.close();
  const kept = await keeper;
  assert.ok(ranAdded, `the keepAlive worker ran the job added later\n${kept.out}\n${kept.err}`);
  assert.strictEqual(kept.signal, 'SIGTERM', 'the keepAlive worker was still waiting, and had to be killed');
  assert.match(kept.out, /^RUNNING\nRESULT [0-9a-f]{64}\n$/);
});
