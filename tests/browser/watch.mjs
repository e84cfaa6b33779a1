// Opens a liverelay player page in Debian's headless chromium and records what the page's
// window.liverelayStats says while it plays; tests/browser.rs runs it and judges the samples.
//
//   node watch.mjs URL OUT_DIR SECONDS
//
// Waits up to START_LIMIT for the video to play, then samples the stats every 250 ms for
// SECONDS (stopping early if the page reports an error). Writes OUT_DIR/samples.json (prints it too), OUT_DIR/console.log (the page's console,
// errors and failed requests) and OUT_DIR/screenshot.png (the page at the end).
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
    const first = Date.now();
    while (Date.now() - first < seconds * 1000) {
      result.samples.push({ wallMs: Date.now() - first, ...(await stats()) });
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  result.final = await stats();
  await page.screenshot({ path: join(outDir, 'screenshot.png'), fullPage: true });
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
const json = JSON.stringify(result);
writeFileSync(join(outDir, 'samples.json'), json);
console.log(json);
