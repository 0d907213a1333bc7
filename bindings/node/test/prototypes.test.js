'use strict';
// The binding's koffi declarations against the C header (issue 18): every `lib.func`
// prototype in lib/ffi.js names a function of include/batchdb.h with the same return type,
// the same number of parameters and the same type for each (a `uint8_t *` buffer may stand
// for any pointer: the binding passes Buffers for error structs and int64 outputs), and every
// koffi struct has the header's fields at the offsets the C compiler gives them. A change to
// the header that the binding does not follow fails here, not as memory corruption.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.join(__dirname, '..', '..', '..');
const headerPath = path.join(root, 'include', 'batchdb.h');
const header = fs.readFileSync(headerPath, 'utf8');
const ffiSource = fs.readFileSync(path.join(__dirname, '..', 'lib', 'ffi.js'), 'utf8');

// "const struct batchdb_job *" -> "const batchdb_job *"; one space before each '*'.
function norm(t) {
  return t.replace(/_Out_/g, '').replace(/\bstruct\s+/g, '')
    .replace(/\s*(\*+)\s*/g, (m, stars) => ` ${stars}`).replace(/\s+/g, ' ').trim();
}

// One declaration "ret name(params)" -> { ret, name, params: [type, ...] }.
function parseDecl(decl) {
  const m = /^(.*?)\b(batchdb_\w+)\s*\((.*)\)$/s.exec(decl.replace(/\s+/g, ' ').trim());
  if (!m) return null;
  const params = m[3].trim() === '' || m[3].trim() === 'void' ? [] : m[3].split(',').map((p) => {
    const t = p.trim().replace(/\b\w+$/, ''); // drop the parameter's name
    return norm(t);
  });
  return { ret: norm(m[1]), name: m[2], params };
}

function headerFunctions() {
  const noComments = header.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  const out = new Map();
  for (const m of noComments.matchAll(/^[A-Za-z_][\w\s\*]*?\bbatchdb_\w+\([^;{]*\);/gm)) {
    if (/^\s*typedef\b/.test(m[0])) continue;
    const d = parseDecl(m[0].slice(0, -1));
    if (d) out.set(d.name, d);
  }
  return out;
}

function bindingFunctions() {
  return [...ffiSource.matchAll(/lib\.func\('([^']+)'\)/g)].map((m) => ({ text: m[1], ...parseDecl(m[1]) }));
}

const isPointer = (t) => t.endsWith('*');

test('every koffi prototype matches its declaration in include/batchdb.h', () => {
  const inHeader = headerFunctions();
  assert.ok(inHeader.size >= 40, `parsed ${inHeader.size} functions from the header`);
  assert.deepStrictEqual(inHeader.get('batchdb_job_created'),
    { ret: 'int64_t', name: 'batchdb_job_created', params: ['const batchdb_job *'] });
  const bound = bindingFunctions();
  assert.ok(bound.length >= 30, `parsed ${bound.length} prototypes from lib/ffi.js`);
  const problems = [];
  for (const b of bound) {
    const h = inHeader.get(b.name);
    if (!h) { problems.push(`${b.name}: not in the header`); continue; }
    if (b.ret !== h.ret) problems.push(`${b.name}: returns ${b.ret}, the header says ${h.ret}`);
    if (b.params.length !== h.params.length) {
      problems.push(`${b.name}: ${b.params.length} parameters, the header has ${h.params.length}`);
      continue;
    }
    b.params.forEach((bt, i) => {
      const ht = h.params[i];
      // A Buffer (uint8_t *) may stand for any pointer; everything else must be the same type.
      const ok = bt === ht || (isPointer(bt) && isPointer(ht) && /^(const )?uint8_t \*$/.test(bt));
      if (!ok) problems.push(`${b.name}: parameter ${i + 1} is ${bt}, the header says ${ht}`);
    });
  }
  assert.deepStrictEqual(problems, []);
});

test('every koffi struct has the header\'s fields at the C compiler\'s offsets', () => {
  const koffi = require('koffi');
  require('../lib/ffi.js'); // registers the structs
  const structs = [...ffiSource.matchAll(/koffi\.struct\('(\w+)'/g)].map((m) => m[1]);
  assert.ok(structs.length >= 3, `structs: ${structs}`);
  const fields = {};
  for (const s of structs) {
    const info = koffi.introspect(s);
    fields[s] = { size: info.size, members: Object.entries(info.members).map(([name, m]) => ({ name, offset: m.offset })) };
  }
  // What the C compiler says, for the same fields.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'batchdb-layout-'));
  const lines = ['#include <stdio.h>', '#include <stddef.h>', `#include "${headerPath}"`, 'int main(void) {'];
  for (const [s, f] of Object.entries(fields)) {
    lines.push(`  printf("${s} size %zu\\n", sizeof(struct ${s}));`);
    for (const m of f.members) lines.push(`  printf("${s} ${m.name} %zu\\n", offsetof(struct ${s}, ${m.name}));`);
  }
  lines.push('  return 0;', '}');
  fs.writeFileSync(path.join(dir, 'layout.c'), lines.join('\n'));
  execFileSync('cc', ['-o', path.join(dir, 'layout'), path.join(dir, 'layout.c')], { stdio: 'inherit' });
  const c = execFileSync(path.join(dir, 'layout'), { encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true, force: true });
  const expected = new Map(c.trim().split('\n').map((l) => { const p = l.split(' '); return [`${p[0]} ${p[1]}`, Number(p[2])]; }));
  const problems = [];
  for (const [s, f] of Object.entries(fields)) {
    if (expected.get(`${s} size`) !== f.size) problems.push(`${s}: koffi size ${f.size}, C ${expected.get(`${s} size`)}`);
    for (const m of f.members) {
      if (expected.get(`${s} ${m.name}`) !== m.offset) problems.push(`${s}.${m.name}: koffi offset ${m.offset}, C ${expected.get(`${s} ${m.name}`)}`);
    }
  }
  // The header's own field count per struct, so that a field added to C is not missed.
  for (const s of Object.keys(fields)) {
    const body = new RegExp(`typedef struct ${s} \\{([\\s\\S]*?)\\} ${s};`).exec(header);
    assert.ok(body, `${s} in the header`);
    const n = body[1].replace(/\/\*[\s\S]*?\*\//g, '').split(';').filter((x) => x.trim()).length;
    if (n !== fields[s].members.length) problems.push(`${s}: ${fields[s].members.length} fields in koffi, ${n} in the header`);
  }
  assert.deepStrictEqual(problems, []);
});
