// The dashboard in a real browser: Debian's chromium driven by playwright-core.
//
// A database gets finished, failed, pending and running work through the CLI; `batchdb ui`
// serves it on an ephemeral port; the page must show the counts, and a click on Retry must
// make the failed instance pending again, on the page and in `batchdb list pending`.
// Screenshots go to tests/ui/artifacts/.
//
// BATCHDB_BIN names the binary (default: the debug build of this checkout); CHROMIUM the
// browser (default /usr/bin/chromium).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.BATCHDB_BIN || join(here, '..', '..', 'target', 'debug', 'batchdb');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = join(here, 'artifacts');
const dir = mkdtempSync(join(tmpdir(), 'batchdb-ui-'));
const DB = join(dir, 'demo.db');

const cli = (...args) => execFileSync(BIN, ['--db', DB, ...args], { encoding: 'utf8', cwd: dir });
const stats = () => JSON.parse(cli('stats', '--json'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, f, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(100);
  }
}

let runner, ui, browser, base, failedKey, failedCreated;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  // Finished and failed work.
  cli('add', 'echo "hello from batchdb"');
  // The payload holds markup, which the job's page must show as text.
  cli('add', 'echo "<img src=x onerror=window.pwned=1>"; echo "error: disk quota exceeded" >&2; exit 3');
  cli('add', 'seq 1 20 | sha256sum');
  cli('run', '--until-empty', '--', 'sh');
  const fails = cli('list', 'fail').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(fails.length, 1);
  [failedKey, failedCreated] = fails[0].key;

  // One instance running (a worker holds it while the test runs) and reporting progress, then
  // two pending behind it; a second queue, limited, with work queued; a schedule.
  cli('add', 'echo "batchdb-progress: 0.4 rendering frame 40 of 100" >&2; sleep 600');
  runner = spawn(BIN, ['--db', DB, 'run', '--workers', '1', '--', 'sh'], { cwd: dir, stdio: 'ignore' });
  await until('the runner to claim', () => stats().running === 1);
  cli('add', 'echo later');
  cli('add', '--delay', '1h', 'echo much later');
  cli('add', '--queue', 'mail', 'send welcome mail');
  cli('limit', 'mail', '2');
  cli('schedule', 'add', 'nightly-report', '--cron', '0 3 * * *', 'make report');

  ui = spawn(BIN, ['--db', DB, 'ui', '--listen', '127.0.0.1:0'], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
  const first = await new Promise((resolve, reject) => {
    createInterface({ input: ui.stdout }).once('line', resolve);
    ui.once('exit', (code) => reject(new Error('batchdb ui exited with ' + code)));
  });
  base = first.match(/http:\/\/[^/\s]+/)[0];

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  ui?.kill('SIGTERM');
  // The runner puts its running instance back and stops its child.
  runner?.kill('SIGTERM');
  await Promise.all([ui, runner].filter(Boolean).map((p) => new Promise((r) => (p.exitCode !== null ? r() : p.once('exit', r)))));
  rmSync(dir, { recursive: true, force: true });
});

test('the overview shows the counts, and Retry makes a failure pending again', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(base + '/');

  const text = (sel) => page.locator(sel).textContent();
  await page.waitForFunction(() => document.getElementById('count-results').textContent !== '–');
  const s = stats();
  assert.equal(await text('#count-pending'), '2'); // one in default, one in mail
  assert.equal(await text('#count-waiting'), '1');
  assert.equal(await text('#count-running'), String(s.running));
  assert.equal(await text('#count-running'), '1');
  assert.equal(await text('#count-results'), '2');
  assert.equal(await text('#count-fails'), '1');
  assert.notEqual(await text('#oldest-pending'), '–');
  // The running instance, the failure with its message, the chart with this minute's work.
  assert.equal(await page.locator('#running tbody tr[data-key]').count(), 1);
  await page.waitForFunction(() => /rendering frame 40/.test(document.querySelector('#running tbody').textContent));
  assert.equal(await page.locator('#running progress').getAttribute('value'), '40');
  assert.match(await page.locator('#running tbody tr[data-key] td:nth-child(5)').textContent(), /^ends in \d/);
  assert.equal(await page.locator('#schedules tr[data-schedule="nightly-report"]').count(), 1);
  const mail = page.locator('#queues tr[data-queue="mail"]');
  assert.deepEqual(await mail.locator('td').allTextContents().then((t) => t.slice(0, 5)), ['mail', '1', '0', '0', '2']);
  const failure = page.locator(`#failures tr[data-key="${failedKey}"][data-created="${failedCreated}"]`);
  assert.match(await failure.locator('td.msg').textContent(), /disk quota exceeded/);
  assert.match(await page.locator('#chart svg').getAttribute('aria-label'), /3 in the last hour/);
  await page.screenshot({ path: join(ARTIFACTS, 'overview.png'), fullPage: true });

  // Pause the mail queue from the page; `stats --json` sees it.
  await mail.locator('button.pause').click();
  await until('the mail queue to be paused', () => stats().queues.mail.paused === true);
  await page.waitForFunction(() => document.querySelector('#queues tr[data-queue="mail"] button.resume') !== null);

  await failure.locator('button.retry').click();
  await page.waitForFunction(() => document.querySelector('#failures td.empty') !== null);
  await page.waitForFunction(() => document.getElementById('count-pending').textContent === '3');
  assert.equal(await text('#count-fails'), '0');
  const again = page.locator(`#pending tr[data-key="${failedKey}"]`);
  assert.equal(await again.count(), 1, 'the retried instance is listed as pending');
  const pending = cli('list', 'pending').trim().split('\n').map((l) => JSON.parse(l));
  const retried = pending.filter((p) => p.job === failedKey && !p.running);
  assert.equal(retried.length, 1, 'batchdb list pending shows the retried instance');
  assert.ok(retried[0].created > failedCreated);
  await page.screenshot({ path: join(ARTIFACTS, 'after-retry.png'), fullPage: true });

  // The job's page: its payload and its instance, with a working Cancel.
  await page.locator(`#pending tr[data-key="${failedKey}"] a`).click();
  await page.waitForFunction((k) => document.getElementById('job-key').textContent === k, failedKey);
  assert.match(await text('#job-preview'), /<img src=x onerror=window.pwned=1>/);
  assert.equal(await page.locator('#job img').count(), 0, 'the payload was rendered as HTML');
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  assert.equal(await page.locator('#job-instances tbody tr[data-created]').count(), 1);
  await page.screenshot({ path: join(ARTIFACTS, 'job.png'), fullPage: true });
  await page.locator('#job-instances button.cancel').click();
  await page.waitForFunction(() => document.querySelector('#job-instances td.empty') !== null);
  assert.ok(!cli('list', 'pending').includes(failedKey), 'Cancel removed the instance');

  assert.deepEqual(errors, [], 'the page logged errors');
  await page.close();
});
