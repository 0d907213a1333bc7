// Draws the soak's samples as one SVG (four panels: the runner's RSS, open file descriptors
// and threads, and the WAL's size) and judges each series for an upward trend. No dependencies.
//
//   node tests/soak/plot.js samples.csv soak.svg
//
// The judgement leaves out the first fifth of the run (the page cache and the connection
// pool fill up there), splits the rest in two halves and compares their means: a series whose
// later half is higher by more than its allowance is growing, and the exit status is 1.
'use strict';
const fs = require('fs');

const [csvPath, svgPath] = process.argv.slice(2);
if (!csvPath || !svgPath) {
  console.error('usage: node plot.js samples.csv out.svg');
  process.exit(2);
}
const lines = fs.readFileSync(csvPath, 'utf8').trim().split('\n');
const head = lines[0].split(',');
const rows = lines.slice(1).map((l) => l.split(',').map(Number));
const col = (name) => rows.map((r) => r[head.indexOf(name)]);
const t = col('t_s');
const MiB = 1024 * 1024;

// Each series: its values, unit, and how much the later half's mean may exceed the earlier's.
const series = [
  { name: 'runner RSS', unit: 'MiB', v: col('rss_kib').map((k) => k / 1024), allow: (m) => Math.max(0.1 * m, 4) },
  { name: 'runner open fds', unit: '', v: col('fds'), allow: () => 2 },
  { name: 'runner threads', unit: '', v: col('threads'), allow: () => 1 },
  { name: 'WAL size', unit: 'MiB', v: col('wal_bytes').map((b) => b / MiB), allow: (m) => Math.max(0.5 * m, 8), max: 64 },
];

const mean = (a) => a.reduce((s, x) => s + x, 0) / a.length;
function slope(xs, ys) {
  const mx = mean(xs), my = mean(ys);
  let num = 0, den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den ? num / den : 0;
}

let failed = false;
const skip = Math.floor(rows.length / 5);
for (const s of series) {
  const rest = s.v.slice(skip);
  const half = Math.floor(rest.length / 2);
  const m1 = mean(rest.slice(0, half)), m2 = mean(rest.slice(half));
  const per10min = slope(t.slice(skip), rest) * 600;
  const grows = m2 - m1 > s.allow(m1);
  const over = s.max !== undefined && Math.max(...s.v) > s.max;
  s.verdict = grows || over ? 'GROWS' : 'flat';
  if (grows || over) failed = true;
  const f = (x) => x.toFixed(s.unit ? 1 : 1);
  console.log(
    `${s.name}: min ${f(Math.min(...s.v))} max ${f(Math.max(...s.v))} ${s.unit}; ` +
      `mean after warm-up ${f(m1)} then ${f(m2)} (allowance ${f(s.allow(m1))}); ` +
      `slope ${per10min.toFixed(2)} ${s.unit}/10 min: ${s.verdict}` +
      (over ? ` (above ${s.max} ${s.unit})` : ''),
  );
}

// The SVG: panels stacked, each with its own y axis from 0.
const W = 720, PH = 150, M = { l: 60, r: 20, t: 28, b: 24 };
const H = series.length * (PH + M.t + M.b) + 10;
const tMax = Math.max(...t, 1);
const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">\n`;
svg += `<rect width="100%" height="100%" fill="white"/>\n`;
series.forEach((s, i) => {
  const y0 = i * (PH + M.t + M.b) + M.t;
  const vMax = Math.max(...s.v, s.max ?? 0, 1) * 1.1;
  const x = (tt) => M.l + ((W - M.l - M.r) * tt) / tMax;
  const y = (v) => y0 + PH - (PH * v) / vMax;
  svg += `<text x="${M.l}" y="${y0 - 8}" font-weight="bold">${esc(s.name)}${s.unit ? ' (' + s.unit + ')' : ''}: ${s.verdict}</text>\n`;
  svg += `<rect x="${M.l}" y="${y0}" width="${W - M.l - M.r}" height="${PH}" fill="none" stroke="#999"/>\n`;
  for (const frac of [0, 0.5, 1]) {
    const v = vMax * frac;
    svg += `<text x="${M.l - 4}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(v < 10 ? 1 : 0)}</text>\n`;
  }
  for (let k = 0; k <= 5; k++) {
    const tt = (tMax * k) / 5;
    svg += `<text x="${x(tt)}" y="${y0 + PH + 14}" text-anchor="middle">${(tt / 60).toFixed(1)} min</text>\n`;
  }
  if (s.max !== undefined) {
    svg += `<line x1="${M.l}" x2="${W - M.r}" y1="${y(s.max)}" y2="${y(s.max)}" stroke="#c33" stroke-dasharray="4 3"/>\n`;
    svg += `<text x="${W - M.r - 4}" y="${y(s.max) - 4}" text-anchor="end" fill="#c33">limit ${s.max}</text>\n`;
  }
  const pts = s.v.map((v, j) => `${x(t[j]).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  svg += `<polyline fill="none" stroke="#2563eb" stroke-width="1.2" points="${pts}"/>\n`;
});
svg += '</svg>\n';
fs.writeFileSync(svgPath, svg);
process.exit(failed ? 1 : 0);
