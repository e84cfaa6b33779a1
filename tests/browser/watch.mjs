// Opens a liverelay player page in Debian's headless chromium and records what the page's
// window.liverelayStats says while it plays; tests/browser.rs runs it and judges the samples.
//
//   node watch.mjs URL OUT_DIR SECONDS
//
// Waits up to START_LIMIT for the video to play, then samples the stats every 250 ms for
// SECONDS (stopping early if the page reports an error). Writes OUT_DIR/samples.json (prints it too), OUT_DIR/console.log (the page's console,
// errors and failed requests) and OUT_DIR/screenshot.png (the page at the end).
//
// WATCH_CLOCK=1: the stream's picture carries its capture time (bench/latency/clock-source.mjs);
// every frame the video presents while watched is read back (canvas) and `clock.readings` gets
// { wallMs, latencyMs } = the browser's Date.now() when the frame was presented minus the time
// in the picture (same machine, same clock): glass-to-glass latency, for `make bench`.
import { writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const [url, outDir, seconds] = process.argv.slice(2);
const START_LIMIT_MS = 30000;
const consoleLog = join(outDir, 'console.log');
writeFileSync(consoleLog, '');
const note = (line) => appendFileSync(consoleLog, line + '\n');

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  userDataDir: join(outDir, 'profile'),
  // Without the background networking flags chromium's own connections (updates, sync,
  // field trials) are refused on a closed network and slow everything down.
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ],
});
const result = { url, started: false, startMs: null, samples: [], final: null, error: null };
const CLOCK = process.env.WATCH_CLOCK === '1';
let watchedFrom = null; // Date.now() when the watch began (samples' wallMs 0)

// Runs in the page: reads the clock row of every presented frame into window.__clock.
// The layout is clock-source.mjs's: 40 blocks of 16x32 at y = 16 of a 640-wide picture.
function readClock() {
  const video = document.querySelector('video');
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const clock = (window.__clock = { readings: [], misread: 0, how: null });
  let last = null; // the clock of the last frame read: each frame counts once, when first seen
  const read = () => {
    const now = Date.now();
    const w = video.videoWidth;
    const h = video.videoHeight;
    if (!w || !h) return;
    if (canvas.width !== w || canvas.height !== h) [canvas.width, canvas.height] = [w, h];
    ctx.drawImage(video, 0, 0, w, h);
    const scale = w / 640; // in case a player scaled the picture
    const row = ctx.getImageData(0, 0, w, Math.ceil(48 * scale)).data;
    const bits = [];
    for (let i = 0; i < 40; i++) {
      // The mean brightness of the block's middle, away from its edges' ringing.
      let sum = 0;
      let count = 0;
      for (let y = Math.round(24 * scale); y < Math.round(40 * scale); y++) {
        for (let x = Math.round((i * 16 + 4) * scale); x < Math.round((i * 16 + 12) * scale); x++) {
          const p = (y * w + x) * 4;
          sum += row[p] + row[p + 1] + row[p + 2];
          count++;
        }
      }
      bits.push(sum / count / 3 >= 128 ? 1 : 0);
    }
    let value = 0;
    let ones = 0;
    for (let i = 2; i < 34; i++) {
      value = value * 2 + bits[i];
      ones += bits[i];
    }
    const check = bits.slice(34).reduce((a, b) => a * 2 + b, 0);
    if (bits[0] !== 1 || bits[1] !== 0 || check !== ones) {
      clock.misread++;
      return;
    }
    if (value === last) return;
    last = value;
    const latencyMs = (((now % 2 ** 32) - value) + 2 ** 32) % 2 ** 32;
    clock.readings.push({ at: now, latencyMs });
  };
  if (video.requestVideoFrameCallback) {
    // Called as each new frame is handed to the compositor: the moment it is shown.
    clock.how = 'requestVideoFrameCallback';
    const each = () => {
      read();
      video.requestVideoFrameCallback(each);
    };
    video.requestVideoFrameCallback(each);
  } else {
    clock.how = 'every 20 ms';
    setInterval(read, 20);
  }
}
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 960, height: 720 });
  page.on('console', (m) => note(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => note(`page error: ${e.message}`));
  page.on('requestfailed', (r) => note(`request failed: ${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) note(`HTTP ${r.status()}: ${r.url()}`);
  });
  const opened = Date.now();
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  const stats = () => page.evaluate(() => ({ ...window.liverelayStats }));
  while (Date.now() - opened < START_LIMIT_MS) {
    const s = await stats();
    if (s.playing && s.currentTime > 0) {
      result.started = true;
      break;
    }
    if (s.error) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  result.startMs = Date.now() - opened;
  if (result.started) {
    if (CLOCK) await page.evaluate(readClock);
    const first = (watchedFrom = Date.now());
    while (Date.now() - first < seconds * 1000) {
      result.samples.push({ wallMs: Date.now() - first, ...(await stats()) });
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  result.final = await stats();
  if (CLOCK && result.started) {
    const clock = await page.evaluate(() => window.__clock);
    result.clock = {
      how: clock.how,
      misread: clock.misread,
      readings: clock.readings.map((r) => ({ wallMs: r.at - watchedFrom, latencyMs: r.latencyMs })),
    };
  }
  await page.screenshot({ path: join(outDir, 'screenshot.png'), fullPage: true });
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
const json = JSON.stringify(result);
writeFileSync(join(outDir, 'samples.json'), json);
console.log(json);
