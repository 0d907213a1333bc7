'use strict';
// R4 of RELIABILITY.md through the Node binding: the bad-input cases of
// r4_bad_input_through_the_rust_api (tests/reliability.rs), each a clear error (a BatchdbError
// with the right code and a message that says what is wrong, or a TypeError for a value
// JavaScript can already tell is wrong) that leaves the database's bytes unchanged.
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');
const batchdb = require('..');
const { tmpdb, collect, readAll } = require('../test-helpers');

const EMPTY_KEY = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

// The SHA-256 of the database file and of its WAL: what "the database is unchanged" means.
function fileSum(file) {
  const h = crypto.createHash('sha256');
  for (const p of [file, `${file}-wal`]) {
    h.update(p.endsWith('-wal') ? 'wal' : 'db');
    if (fs.existsSync(p)) h.update(fs.readFileSync(p));
  }
  return h.digest('hex');
}

// Every listing, as one comparable value.
async function listings(db) {
  const out = {};
  for (const kind of ['job', 'pending', 'result', 'fail']) out[kind] = await collect(db.list(kind));
  return out;
}

function addPayload(db, bytes) {
  const ws = db.add();
  ws.end(bytes);
  return ws.promise;
}

// Asserts that `promise` rejects with a BatchdbError of `code` whose message contains `want`.
async function rejectsWith(promise, code, want) {
  await assert.rejects(promise, (e) => {
    assert.strictEqual(e.name, 'BatchdbError', `${e}`);
    assert.strictEqual(e.code, code, `${e.message}`);
    assert.match(e.message.toLowerCase(), want);
    return true;
  });
}

// A SQLite file holding one table of someone else's (`CREATE TABLE t (x)`, page size 512), made
// with the sqlite3 shell and kept here compressed so that the test needs no SQLite of its own.
const FOREIGN_DB = zlib.inflateSync(
  Buffer.from(
    'eNoLDvTJLElVSMsvyk0sUTBmYGJgZGRwUFBgYGBgBGImBgQA8VnQ+IQAI4NeMiMviMF4jwGIRgFdgQIjmzg/P6NhSWJSTmpJCZNzkKtjiKtCiKOTj6tCiYJGhSYoblBieRSMKAAAV/gQYw==',
    'base64',
  ),
);

// A database holding one added job, closed and opened again: the background checkpointer runs
// shortly after a commit and copies the log into the file, so bytes summed right after the add
// could change under the test by themselves (seen under load). After a reopen nothing is
// committed until the test does, and the sum is stable.
async function oneJob(t) {
  const file = tmpdb(t);
  const first = batchdb(file);
  const added = await addPayload(first, 'some job');
  await first.close();
  const db = await batchdb.open(file);
  t.after(() => db.close());
  return { file, db, ...added };
}

test('malformed hashes are BATCHDB_ERR_INVALID in every call that takes one, and change nothing', async (t) => {
  const { file, db, key, created } = await oneJob(t);
  const before = await listings(db);
  const sum = fileSum(file);
  const malformed = ['', 'abc', EMPTY_KEY.slice(0, 63), `${EMPTY_KEY}0`, EMPTY_KEY.replace(/e/g, 'g'), ' x ', EMPTY_KEY.toUpperCase().replace(/^E/, 'É')];
  for (const m of malformed) {
    await rejectsWith(readAll(db.get(m)), 'BATCHDB_ERR_INVALID', /malformed hash/);
    await rejectsWith(db.push(m), 'BATCHDB_ERR_INVALID', /malformed hash/);
    await rejectsWith(db.retry(m, created), 'BATCHDB_ERR_INVALID', /malformed hash/);
    await rejectsWith(db.cancel(m, created), 'BATCHDB_ERR_INVALID', /malformed hash/);
  }
  // Not a string at all: JavaScript says so before the call.
  for (const v of [undefined, null, 42, Buffer.from(key)]) {
    await assert.rejects(db.push(v), TypeError);
    await assert.rejects(db.retry(v, created), TypeError);
    await assert.rejects(db.cancel(v, created), TypeError);
  }
  assert.strictEqual(fileSum(file), sum, 'a malformed hash changed the file');
  assert.deepStrictEqual(await listings(db), before);
});

test('unknown jobs, blobs and instances are BATCHDB_ERR_NOT_FOUND and change nothing', async (t) => {
  const { file, db, key, created } = await oneJob(t);
  const before = await listings(db);
  const sum = fileSum(file);
  const unknown = sha256('never stored');
  await rejectsWith(readAll(db.get(unknown)), 'BATCHDB_ERR_NOT_FOUND', /not found/);
  await rejectsWith(db.push(unknown), 'BATCHDB_ERR_NOT_FOUND', /not found/);
  await rejectsWith(db.retry(unknown, created), 'BATCHDB_ERR_NOT_FOUND', /no failed instance/);
  // The instance exists but is pending, not failed; and an instance that never existed.
  await rejectsWith(db.retry(key, created), 'BATCHDB_ERR_NOT_FOUND', /no failed instance/);
  await rejectsWith(db.retry(key, created + 1000), 'BATCHDB_ERR_NOT_FOUND', /no failed instance/);
  await rejectsWith(db.cancel(unknown, created), 'BATCHDB_ERR_NOT_FOUND', /no pending instance/);
  await rejectsWith(db.cancel(key, created + 1000), 'BATCHDB_ERR_NOT_FOUND', /no pending instance/);
  // A list type that does not exist.
  await rejectsWith(collect(db.list('nope')), 'BATCHDB_ERR_INVALID', /unknown list type/);
  assert.strictEqual(fileSum(file), sum, 'an unknown key changed the file');
  assert.deepStrictEqual(await listings(db), before);
});

test('the empty payload is valid (key = sha256 of nothing) and reads back empty', async (t) => {
  const db = batchdb(tmpdb(t));
  t.after(() => db.close());
  const { key } = await addPayload(db, Buffer.alloc(0));
  assert.strictEqual(key, EMPTY_KEY);
  assert.strictEqual((await readAll(db.get(key))).length, 0);
});

test('options out of range are refused before anything is written', async (t) => {
  const file = tmpdb(t);
  const db = batchdb(file);
  const { key } = await addPayload(db, 'some job');
  const before = await listings(db);
  await db.close();
  const sum = fileSum(file);
  // Out of the library's range: the open fails with BATCHDB_ERR_INVALID, saying so.
  for (const opts of [
    { chunkSize: 1023 },
    { chunkSize: 16 * 1024 * 1024 + 1 },
    { maxAttempts: 1001 },
    { lease: 49 },
    { lease: 86_401_000 },
  ]) {
    await rejectsWith(batchdb.open(file, opts), 'BATCHDB_ERR_INVALID', /out of range/);
  }
  // Not representable at all: a TypeError from the constructor, before any call.
  for (const opts of [{ chunkSize: -1 }, { lease: 1.5 }, { maxAttempts: 'three' }, { order: 'random' }, { durability: 'maybe' }, { workers: 0 }]) {
    assert.throws(() => batchdb(file, opts), TypeError, JSON.stringify(opts));
  }
  assert.strictEqual(fileSum(file), sum, 'a refused open changed the file');
  // A push option out of range, on an open database.
  const again = await batchdb.open(file);
  t.after(() => again.close());
  const sum2 = fileSum(file);
  const twoCenturies = 200 * 365 * 86_400_000;
  await rejectsWith(again.push(key, { delay: twoCenturies }), 'BATCHDB_ERR_INVALID', /delay/);
  await assert.rejects(again.push(key, { priority: 2 ** 31 }), TypeError);
  await assert.rejects(again.push(key, { delay: -1 }), TypeError);
  assert.strictEqual(fileSum(file), sum2, 'a refused push changed the file');
  assert.deepStrictEqual(await listings(again), before);
});

test('files that are not batchdb databases are BATCHDB_ERR_INVALID and stay byte-for-byte the same', async (t) => {
  const dir = path.dirname(tmpdb(t));
  const garbage = path.join(dir, 'garbage.db');
  fs.writeFileSync(garbage, Buffer.alloc(8192, 0x42));
  const foreign = path.join(dir, 'foreign.db');
  fs.writeFileSync(foreign, FOREIGN_DB);
  // A batchdb file whose schema version (SQLite's user_version, at byte 60) is from the future.
  const newer = path.join(dir, 'newer.db');
  const n = await batchdb.open(newer);
  await addPayload(n, 'from the future');
  await n.close();
  assert.ok(!fs.existsSync(`${newer}-wal`), 'closing the last connection checkpoints the WAL away');
  const bytes = fs.readFileSync(newer);
  bytes.writeUInt32BE(77, 60);
  fs.writeFileSync(newer, bytes);
  for (const [p, want] of [
    [garbage, /not a batchdb database/],
    [foreign, /not a batchdb database/],
    [newer, /newer/],
  ]) {
    const before = fs.readFileSync(p);
    await rejectsWith(batchdb.open(p), 'BATCHDB_ERR_INVALID', want);
    assert.deepStrictEqual(fs.readFileSync(p), before, `${path.basename(p)} changed`);
    assert.ok(!fs.existsSync(`${p}-wal`) || fs.statSync(`${p}-wal`).size === 0, `${path.basename(p)}: a WAL with content was left`);
  }
});

test('paths that cannot be a database file are BATCHDB_ERR_IO naming the path, and create nothing', async (t) => {
  const dir = path.dirname(tmpdb(t));
  await rejectsWith(batchdb.open(dir), 'BATCHDB_ERR_IO', /directory/);
  const file = path.join(dir, 'plain-file');
  fs.writeFileSync(file, 'not a folder');
  // A path under a regular file fails even for root.
  await assert.rejects(batchdb.open(path.join(file, 'sub.db')), (e) => {
    assert.ok(['BATCHDB_ERR_IO', 'BATCHDB_ERR_INVALID'].includes(e.code), `${e.code}: ${e.message}`);
    assert.match(e.message, /plain-file/);
    return true;
  });
  await rejectsWith(batchdb.open(path.join(dir, 'missing-dir', 'x.db')), 'BATCHDB_ERR_IO', /./);
  assert.ok(!fs.existsSync(path.join(dir, 'missing-dir')));
  // Not a path at all.
  for (const p of ['', undefined, 42]) assert.throws(() => batchdb(p), TypeError);
});

test('an empty file is a new database, as in SQLite', async (t) => {
  const file = tmpdb(t);
  fs.writeFileSync(file, '');
  const db = await batchdb.open(file);
  t.after(() => db.close());
  const { key } = await addPayload(db, 'in an empty file');
  assert.strictEqual((await readAll(db.get(key))).toString(), 'in an empty file');
});
