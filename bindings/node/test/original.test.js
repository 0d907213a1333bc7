'use strict';
// The original batchdb's own test suite, run against this binding. `npm pack` fetches
// batchdb@2.1.1 from the npm registry; its test/api.js and test/run.js run unmodified, each in
// its own process, through an adapter that only maps batchdb(levelDb, opts) onto
// batchdb(path, opts): a stub `level` module returns the path it is given. run.js also gets
// order: 'oldest' (the original's code runs oldest first, although its README says newest
// first, which stays this binding's default). Nothing of the original is kept in this
// repository; its test dependencies (tape, duplexer, through2, ...) are devDependencies.
//
// Every assertion must pass, in each of several runs, and each process must exit by itself
// (the original's tests never close the database nor stop run()).
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync, spawn } = require('node:child_process');

const PKG = 'batchdb@2.1.1';
const RUNS = 3;
const EXIT_DEADLINE_MS = 60000; // each file needs about 4 s; the rest is room for a loaded machine
const binding = path.resolve(__dirname, '..');

function fetchOriginal(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'batchdb-original-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = execFileSync('npm', ['pack', PKG, '--pack-destination', dir, '--silent'], {
    cwd: dir,
    encoding: 'utf8',
  });
  const tarball = path.join(dir, out.trim().split('\n').pop());
  execFileSync('tar', ['xzf', tarball, '-C', dir, 'package/test/api.js', 'package/test/run.js']);
  const pkg = path.join(dir, 'package');

  // require('../') in the test files: the adapter.
  fs.writeFileSync(
    path.join(pkg, 'index.js'),
    `'use strict';
const batchdb = require(${JSON.stringify(binding)});
const extra = process.env.BATCHDB_ADAPTER_ORDER ? { order: process.env.BATCHDB_ADAPTER_ORDER } : {};
module.exports = function (db, opts) {
  return batchdb(db, Object.assign({}, opts, extra));
};
`,
  );
  // require('level'): a path stands in for the level handle.
  fs.mkdirSync(path.join(pkg, 'node_modules', 'level'), { recursive: true });
  fs.writeFileSync(
    path.join(pkg, 'node_modules', 'level', 'index.js'),
    `'use strict';\nmodule.exports = function (location) { return location; };\n`,
  );
  return pkg;
}

// Runs one test file; resolves to its TAP output once the process has exited by itself.
function runFile(pkg, file, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join('test', file)], {
      cwd: pkg,
      env: { ...process.env, ...env, NODE_PATH: path.join(binding, 'node_modules') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${file} did not exit by itself within ${EXIT_DEADLINE_MS} ms\n${out}\n${err}`));
    }, EXIT_DEADLINE_MS);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ out, err, code, signal });
    });
  });
}

function checkTap(file, plan, { out, err, code, signal }) {
  const ok = out.split('\n').filter((l) => /^ok \d+/.test(l));
  const notOk = out.split('\n').filter((l) => /^not ok \d+/.test(l));
  const detail = `${file} output:\n${out}\nstderr:\n${err}`;
  assert.deepStrictEqual(notOk, [], detail);
  assert.strictEqual(ok.length, plan, detail);
  assert.match(out, new RegExp(`^1\\.\\.${plan}$`, 'm'), detail);
  assert.match(out, new RegExp(`^# pass +${plan}$`, 'm'), detail);
  assert.strictEqual(signal, null, detail);
  assert.strictEqual(code, 0, detail);
}

test(`the original's test/api.js (8 assertions) and test/run.js (15), ${RUNS} runs each`, async (t) => {
  const pkg = fetchOriginal(t);
  // The files are the original's, byte for byte: what they assert is what is checked here.
  assert.match(fs.readFileSync(path.join(pkg, 'test', 'api.js'), 'utf8'), /t\.plan\(8\)/);
  assert.match(fs.readFileSync(path.join(pkg, 'test', 'run.js'), 'utf8'), /t\.plan\(expected\.length\)/);
  for (let i = 0; i < RUNS; i++) {
    checkTap('api.js', 8, await runFile(pkg, 'api.js', {}));
    checkTap('run.js', 15, await runFile(pkg, 'run.js', { BATCHDB_ADAPTER_ORDER: 'oldest' }));
  }
});
