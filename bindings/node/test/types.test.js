'use strict';
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.join(__dirname, '..');

test('index.d.ts type-checks a typed example (tsc --noEmit)', () => {
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', path.join('test', 'tsconfig.json')], { cwd: root, stdio: 'pipe' });
});

test('ESM can import the package', () => {
  const out = execFileSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import batchdb from ${JSON.stringify(require('node:url').pathToFileURL(path.join(root, 'index.js')).href)};` +
        ' console.log(typeof batchdb, typeof batchdb.open)',
    ],
    { cwd: root, encoding: 'utf8' },
  );
  assert.strictEqual(out.trim(), 'function function');
});
