// The dashboard's page: polls /api/overview, draws it, and sends the actions of the JSON API.
// Every value from the database is set as text (never as HTML), so that a fail message or a
// payload cannot inject markup.
'use strict';

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const READ_ONLY = document.querySelector('meta[name="batchdb-read-only"]').content === 'true';
const POLL_MS = 2000;
let last = null;
let timer = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function age(ms) {
  if (ms === null || ms === undefined) return '–';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
}

function bytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

const time = (ms) => new Date(ms).toLocaleString();
const short = (key) => key.slice(0, 12) + '…';
const jobLink = (key) => el('a', { href: '#/job/' + key, class: 'key', title: key }, short(key));

function toast(text, err) {
  const t = $('toast');
  t.textContent = text;
  t.className = 'toast' + (err ? ' err' : '');
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

async function post(path, body) {
  const r = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': CSRF },
    body: JSON.stringify(body),
  });
  const j = await r.json().catch(() => ({ error: 'HTTP ' + r.status }));
  if (!r.ok) throw new Error(j.error || 'HTTP ' + r.status);
  return j;
}

function actionButton(label, cls, path, body, done) {
  return el('button', {
    class: cls, disabled: READ_ONLY, title: READ_ONLY ? 'read-only dashboard' : undefined,
    onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        const j = await post(path, body);
        toast(done(j));
        refresh();
      } catch (e) {
        toast(e.message, true);
        ev.target.disabled = false;
      }
    },
  }, label);
}

const retryButton = (key, created) => actionButton('Retry', 'retry', '/api/retry', { key, created },
  (j) => 'retried: new instance ' + j.created);
const cancelButton = (key, created) => actionButton('Cancel', 'cancel', '/api/cancel', { key, created },
  () => 'cancelled ' + created);

function fill(id, rows, cols, empty) {
  const body = document.querySelector('#' + id + ' tbody');
  body.replaceChildren(...(rows.length ? rows.map((r) => {
    const tr = el('tr', r.attrs || {});
    for (const c of r.cells) tr.append(c instanceof Node && c.tagName === 'TD' ? c : el('td', {}, c));
    return tr;
  }) : [el('tr', {}, el('td', { class: 'empty', colspan: cols }, empty))]));
}

function progress(p) {
  if (!p) return '';
  const pct = Math.round(Math.min(1, Math.max(0, p.done)) * 100);
  return el('span', { class: 'progress' },
    el('progress', { max: 100, value: pct }), ' ' + pct + '% ', el('span', { class: 'note' }, p.message || ''));
}

function chart(minutes) {
  const W = 720, H = 150, pad = 24;
  const max = Math.max(1, ...minutes.map((m) => m.results + m.fails));
  const bw = (W - pad) / minutes.length;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H + 14}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  const total = minutes.reduce((a, m) => a + m.results + m.fails, 0);
  svg.setAttribute('aria-label', `completions per minute, ${total} in the last hour`);
  const add = (tag, a, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(a)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  add('line', { x1: pad, y1: H, x2: W, y2: H, class: 'axis' });
  add('text', { x: 0, y: 10 }, String(max));
  add('text', { x: 0, y: H }, '0');
  minutes.forEach((m, i) => {
    const x = pad + i * bw + 1, w = Math.max(1, bw - 2);
    const hr = (m.results / max) * (H - 4), hf = (m.fails / max) * (H - 4);
    const g = add('g', {});
    const title = document.createElementNS(ns, 'title');
    title.textContent = `${new Date(m.minute).toLocaleTimeString()}: ${m.results} results, ${m.fails} fails`;
    g.append(title);
    if (hr) { const r = document.createElementNS(ns, 'rect'); Object.entries({ x, y: H - hr, width: w, height: hr, class: 'r' }).forEach(([k, v]) => r.setAttribute(k, v)); g.append(r); }
    if (hf) { const r = document.createElementNS(ns, 'rect'); Object.entries({ x, y: H - hr - hf, width: w, height: hf, class: 'f' }).forEach(([k, v]) => r.setAttribute(k, v)); g.append(r); }
  });
  add('text', { x: pad, y: H + 12 }, '-60 min');
  add('text', { x: W - 30, y: H + 12 }, 'now');
  $('chart').replaceChildren(svg);
}

function render(o) {
  const sum = (f) => o.counts.queues.reduce((a, q) => a + f(q), 0);
  $('count-pending').textContent = sum((q) => q.pending);
  $('count-waiting').textContent = sum((q) => q.waiting);
  $('count-running').textContent = sum((q) => q.running);
  // Rows now; the counters (which prune and retry do not lower) beside them.
  $('count-results').textContent = o.counts.results;
  $('results-total').textContent = '(' + o.counts.results_total + ' ever)';
  $('count-fails').textContent = o.counts.fails;
  $('fails-total').textContent = '(' + o.counts.fails_total + ' ever)';
  $('count-jobs').textContent = o.counts.jobs;
  $('oldest-pending').textContent = o.oldest_pending === null ? '–' : age(o.now - o.oldest_pending);
  $('db-bytes').textContent = bytes(o.counts.database_bytes);
  $('partial').hidden = !o.partial;
  chart(o.completions);
  fill('queues', o.counts.queues.map((q) => ({
    attrs: { 'data-queue': q.name },
    cells: [q.name, q.pending, q.waiting, q.running, q.limit === null ? '–' : q.limit,
      q.oldest_pending === null ? '–' : age(o.now - q.oldest_pending), q.paused ? 'paused' : 'active',
      actionButton(q.paused ? 'Resume' : 'Pause', q.paused ? 'resume' : 'pause', q.paused ? '/api/resume' : '/api/pause',
        { queue: q.name }, () => (q.paused ? 'resumed ' : 'paused ') + q.name)],
  })), 8, 'no queues');
  const running = sum((q) => q.running);
  $('running-shown').textContent = o.running.length < running ? `(${o.running.length} of ${running} shown)` : '';
  fill('running', o.running.map((r) => ({
    attrs: { 'data-key': r.key, 'data-created': r.created },
    cells: [jobLink(r.key), r.created, r.queue, age(o.now - (r.start ?? r.created)),
      r.lease_until === null ? '–' : 'ends in ' + age(r.lease_until - o.now), progress(r.progress)],
  })), 6, 'nothing running');
  fill('schedules', o.schedules.map((x) => ({
    attrs: { 'data-schedule': x.name },
    cells: [x.name, el('code', {}, x.spec), x.queue, jobLink(x.job), time(x.next_run)],
  })), 5, 'no schedules');
  fill('failures', o.failures.map((f) => ({
    attrs: { 'data-key': f.key, 'data-created': f.created },
    cells: [jobLink(f.key), f.created, el('td', { class: 'msg' }, f.message), f.attempts, time(f.end), retryButton(f.key, f.created)],
  })), 6, 'no failures');
  fill('pending', o.pending.map((p) => ({
    attrs: { 'data-key': p.key, 'data-created': p.created },
    cells: [jobLink(p.key), p.created, p.queue, p.run_at ? time(p.run_at) : 'now', cancelButton(p.key, p.created)],
  })), 5, 'nothing pending');
}

// A list of instances `[key, created]` as links to their jobs.
function instances(list) {
  const span = el('span', {});
  (list || []).forEach(([k, c], i) => { if (i) span.append(', '); span.append(jobLink(k), ' ' + c); });
  return span;
}

async function showJob(key) {
  const r = await fetch('/api/job/' + encodeURIComponent(key), { credentials: 'same-origin' });
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || 'HTTP ' + r.status);
  $('job-key').textContent = j.key;
  $('job-size').textContent = bytes(j.size) + (j.preview_complete ? '' : ' (preview of the first bytes)');
  $('job-download').href = '/blob/' + j.key;
  $('job-preview').textContent = j.preview;
  fill('job-instances', j.instances.map((p) => {
    const running = j.running.includes(p.created);
    return {
      attrs: { 'data-created': p.created },
      cells: [p.created, running ? 'running' : (p.after || (p.run_at && p.run_at > Date.now()) ? 'waiting' : 'pending'),
        p.queue, p.run_at ? time(p.run_at) : 'now', instances(p.after), running ? '' : cancelButton(j.key, p.created)],
    };
  }), 6, 'none');
  fill('job-results', j.results.map((x) => ({
    cells: [x.created, el('a', { href: '/blob/' + x.hash, class: 'key', title: x.hash }, short(x.hash)),
      x.size === null ? '?' : bytes(x.size), age(x.end - x.start), time(x.end), instances(x.after)],
  })), 6, 'no results');
  fill('job-made-by', j.made_by.map((m) => ({
    cells: [jobLink(m.key), m.created, instances(m.after)],
  })), 3, 'not the output of any result');
  fill('job-failures', j.failures.map((f) => ({
    attrs: { 'data-created': f.created },
    cells: [f.created, el('td', { class: 'msg' }, f.message), f.attempts, time(f.end), retryButton(j.key, f.created)],
  })), 5, 'no failures');
}

async function refresh() {
  clearTimeout(timer);
  const m = location.hash.match(/^#\/job\/([0-9a-f]{64})$/);
  $('overview').hidden = !!m;
  $('job').hidden = !m;
  try {
    if (m) {
      await showJob(m[1]);
    } else {
      const r = await fetch('/api/overview', { credentials: 'same-origin' });
      const o = await r.json();
      if (!r.ok) throw new Error(o.error || 'HTTP ' + r.status);
      last = o;
      render(o);
    }
    $('status').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    $('status').textContent = 'error: ' + e.message;
  }
  timer = setTimeout(refresh, POLL_MS);
}

$('mode').hidden = !READ_ONLY;
window.addEventListener('hashchange', refresh);
refresh();
