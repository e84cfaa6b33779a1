// The latency scenario's table for bench/RESULTS.md (bench/run.sh):
//
//   node summary.mjs WARMUP_SECS LABEL=samples.json ...
//
// Each file is one run of tests/browser/watch.mjs with WATCH_CLOCK=1. Readings of the first
// WARMUP_SECS of the watch are left out (the players settle: catch up, fill their buffers).
// Each cell is min / **median** / max over the runs of a label, as in the other tables.
import { readFileSync } from 'node:fs';

const [warmup, ...inputs] = process.argv.slice(2);
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const runs = new Map(); // label → [figures of one run]
for (const input of inputs) {
  const at = input.indexOf('=');
  const [label, file] = [input.slice(0, at), input.slice(at + 1)];
  const r = JSON.parse(readFileSync(file, 'utf8'));
  const lat = (r.clock?.readings ?? [])
    .filter((x) => x.wallMs >= warmup * 1000)
    .map((x) => x.latencyMs)
    .sort((a, b) => a - b);
  const fin = r.final ?? {};
  const figures = {
    p50: lat.length ? quantile(lat, 0.5) : null,
    p95: lat.length ? quantile(lat, 0.95) : null,
    min: lat.length ? lat[0] : null,
    max: lat.length ? lat.at(-1) : null,
    frames: lat.length,
    misread: r.clock?.misread ?? null,
    page: Number.isFinite(fin.latency) ? fin.latency * 1000 : null,
    stalls: fin.stalls ?? null,
    startMs: r.startMs,
  };
  if (!runs.has(label)) runs.set(label, []);
  runs.get(label).push(figures);
}
const cell = (values, digits = 0) => {
  const v = values.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
  if (!v.length) return '–';
  const f = (x) => x.toFixed(digits);
  return `${f(v[0])} / **${f(v[Math.floor((v.length - 1) / 2)])}** / ${f(v.at(-1))}`;
};
const rows = [
  ['glass-to-glass p50 ms', 'p50'],
  ['glass-to-glass p95 ms', 'p95'],
  ['glass-to-glass min ms', 'min'],
  ['glass-to-glass max ms', 'max'],
  ['frames read (after warm-up)', 'frames'],
  ['frames misread (check bits)', 'misread'],
  ["the page's own latency figure at the end, ms", 'page'],
  ['stalls ≥ 500 ms (page)', 'stalls'],
  ['page open → playing, ms', 'startMs'],
];
const labels = [...runs.keys()];
const n = Math.max(...labels.map((l) => runs.get(l).length));
console.log(`| figure | ${labels.map((l) => `${l} (min / median / max of ${runs.get(l).length})`).join(' | ')} |`);
console.log(`|---|${labels.map(() => '---|').join('')}`);
for (const [name, key] of rows) {
  console.log(`| ${name} | ${labels.map((l) => cell(runs.get(l).map((f) => f[key]))).join(' | ')} |`);
}
if (n === 0) console.log('(no runs)');
