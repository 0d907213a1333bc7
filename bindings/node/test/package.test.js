'use strict';
// The npm package installs and runs without Rust: `npm pack` here produces a tarball carrying
// the built C library for this platform in native/<platform>-<arch>/, with koffi as its only
// dependency; installed into an empty folder, with no cargo on the PATH, the README's example
// runs there.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { LIB_NAMES, platformDir } = require('../lib/platform');
const { readmeExample, runNode } = require('../test-helpers');

const binding = path.resolve(__dirname, '..');
const libName = LIB_NAMES[process.platform] || 'libbatchdb.so';

// PATH without any folder that holds a cargo (or rustc) executable.
function pathWithoutRust() {
  return (process.env.PATH || '')
    .split(path.delimiter)
    .filter((d) => d && !['cargo', 'rustc'].some((x) => fs.existsSync(path.join(d, x))))
    .join(path.delimiter);
}

test('npm pack carries the library; the tarball installs and runs the README example without cargo', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'batchdb-pack-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: binding, encoding: 'utf8' }),
  )[0];
  const tarball = path.join(dir, packed.filename);
  const files = packed.files.map((f) => f.path).sort();
  assert.ok(files.includes(`native/${platformDir()}/${libName}`), files.join('\n'));
  for (const f of ['index.js', 'index.d.ts', 'lib/ffi.js', 'lib/platform.js', 'package.json']) assert.ok(files.includes(f), f);
  assert.ok(!files.some((f) => f.startsWith('test/') || f.startsWith('node_modules/')), files.join('\n'));
  assert.ok(!fs.existsSync(path.join(binding, 'native')), 'postpack removed native/ from the checkout');

  const pkg = JSON.parse(execFileSync('tar', ['xzOf', tarball, 'package/package.json'], { encoding: 'utf8' }));
  assert.deepStrictEqual(Object.keys(pkg.dependencies), ['koffi']);

  // An empty project, a PATH on which cargo cannot be found, and no BATCHDB_LIB.
  const app = path.join(dir, 'app');
  fs.mkdirSync(app);
  const env = { ...process.env, PATH: pathWithoutRust() };
  delete env.BATCHDB_LIB;
  delete env.NODE_PATH;
  assert.throws(() => execFileSync('cargo', ['--version'], { env, stdio: 'ignore' }), 'cargo is not on the PATH');
  execFileSync('npm', ['init', '-y'], { cwd: app, env, stdio: 'ignore' });
  // duplexer@0.1: the README example's runner, as the original's users install it.
  execFileSync('npm', ['install', '--no-audit', '--no-fund', tarball, 'duplexer@0.1.2'], { cwd: app, env, stdio: 'ignore' });
  assert.ok(fs.existsSync(path.join(app, 'node_modules', 'batchdb', 'native', platformDir(), libName)));

  const db = path.join(app, 'compute.db');
  fs.writeFileSync(path.join(app, 'run.js'), readmeExample(db));
  const { code, signal, out, err } = await runNode('run.js', { cwd: app, env });
  assert.strictEqual(signal, null, err);
  assert.strictEqual(code, 0, err);
  assert.match(out, /^RESULT ce6cc4e7fcb4a902f7c836cb93a32ae02cb47679c86e3d99c811233bf6f258c0 [0-9a-f]{64}\n.*\d\d:\d\d:\d\d.*\n$/);

  // It loaded the packed library, not this repository's build (/proc: Linux only).
  if (!fs.existsSync('/proc/self/maps')) return;
  const loaded = execFileSync(
    process.execPath,
    ['-e', "require('batchdb'); const m = require('fs').readFileSync('/proc/self/maps', 'utf8'); console.log(m.split('\\n').filter((l) => l.includes('batchdb')).map((l) => l.split(' ').pop()).find((p) => p.endsWith(process.argv[1])))", libName],
    { cwd: app, env, encoding: 'utf8' },
  ).trim();
  assert.strictEqual(fs.realpathSync(loaded), fs.realpathSync(path.join(app, 'node_modules', 'batchdb', 'native', platformDir(), libName)));
});
