'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const duplexer = require('duplexer');

function tmpdb(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'batchdb-node-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'compute.db');
}

// The runner of the original's README: bash reads the payload, its stdout is the result.
function bashRunner() {
  const ps = spawn('bash');
  return duplexer(ps.stdin, ps.stdout);
}

async function collect(stream) {
  const rows = [];
  for await (const r of stream) rows.push(r);
  return rows;
}

async function readAll(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}



// The Node example of the repository's README.md, with its database path replaced by `file`.
function readmeExample(file) {
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Node\n'));
  const m = /```js\n([\s\S]*?)```/.exec(section);
  if (!m || !m[1].includes("'/tmp/compute.db'")) throw new Error('README.md: no Node example opening /tmp/compute.db');
  return m[1].replace("'/tmp/compute.db'", JSON.stringify(file));
}

// Runs `node script ...args` in `cwd`; resolves to {code, signal, out, err} once it exits by itself,
// rejects when it has not after `deadlineMs`. `onOut(text, child)` sees stdout as it comes.
function runNode(script, { args = [], cwd, env, deadlineMs = 60000, onOut } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { cwd, env: env || process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => {
      out += c;
      if (onOut) onOut(out, child);
    });
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} did not exit by itself within ${deadlineMs} ms\nstdout:\n${out}\nstderr:\n${err}`));
    }, deadlineMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err });
    });
  });
}

module.exports = { tmpdb, bashRunner, collect, readAll, readmeExample, runNode };
