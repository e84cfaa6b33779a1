// A camera whose picture is its own clock, for the glass-to-glass latency scenario of
// `make bench` (bench/run.sh):
//
//   node clock-publisher.mjs RTMP_URL
//
// publishes until it is killed (SIGTERM/SIGINT end ffmpeg too). It generates raw 640x360
// yuv420p frames at 30 fps and 48 kHz mono audio (a quiet tone) on one schedule and pipes both
// into ffmpeg (x264 `-tune zerolatency`, 1 s GOP, 1 Mbit/s; AAC 64 kbit/s; FLV over RTMP).
// One generator for both keeps their timestamps on the same clock: with ffmpeg's own audio
// source (lavfi) the two started a random 0.1–0.4 s apart and ffmpeg's muxer held every video
// frame back until audio of the same timestamp came.
//
// Each frame carries the wall-clock millisecond at which it was generated, as a row of 40
// black/white 16x32 blocks (macroblock-aligned, so the encoder keeps them sharp) at y = 16:
//
//   [1][0] marker, [32 bits] Date.now() mod 2^32, most significant first,
//   [6 bits] the number of ones among those 32 (a check against a misread frame).
//
// tests/browser/watch.mjs (WATCH_CLOCK=1) reads the row back from the playing <video> and
// compares it with the browser's Date.now() on the same machine. A square moving below the row
// makes playback visible in screenshots.
import { spawn } from 'node:child_process';

const WIDTH = 640;
const HEIGHT = 360;
const BLOCK_W = 16;
const BLOCK_H = 32;
const ROW_Y = 16;
const FPS = 30;
const RATE = 48000;

/** The 40 bits of one frame's clock row (see above). */
function clockBits(ms) {
  const value = ms % 2 ** 32;
  const bits = [1, 0];
  let ones = 0;
  for (let i = 31; i >= 0; i--) {
    const bit = Math.floor(value / 2 ** i) % 2;
    ones += bit;
    bits.push(bit);
  }
  for (let i = 5; i >= 0; i--) bits.push((ones >> i) & 1);
  return bits;
}

const url = process.argv[2];
if (!url) {
  console.error('usage: node clock-publisher.mjs RTMP_URL');
  process.exit(2);
}
// ffmpeg reads video on its stdin and audio on fd 3.
const ffmpeg = spawn('ffmpeg', [
  '-hide_banner', '-loglevel', 'warning', '-nostdin',
  // Raw inputs need no probing; with it ffmpeg waits for audio while this waits for it to
  // take the video.
  '-analyzeduration', '0', '-probesize', '32',
  '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${WIDTH}x${HEIGHT}`, '-framerate', `${FPS}`,
  '-thread_queue_size', '64', '-i', 'pipe:0',
  '-analyzeduration', '0', '-probesize', '32',
  '-f', 's16le', '-ar', `${RATE}`, '-ac', '1', '-thread_queue_size', '64', '-i', 'pipe:3',
  '-map', '0:v', '-map', '1:a',
  '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
  '-g', `${FPS}`, '-keyint_min', `${FPS}`, '-sc_threshold', '0',
  '-b:v', '1M', '-maxrate', '1M', '-bufsize', '500k',
  '-c:a', 'aac', '-b:a', '64k',
  '-f', 'flv', url,
], { stdio: ['pipe', 'inherit', 'inherit', 'pipe'] });
const [video, audio] = [ffmpeg.stdin, ffmpeg.stdio[3]];
const quit = () => {
  ffmpeg.kill('SIGTERM');
  process.exit(0);
};
process.on('SIGTERM', quit);
process.on('SIGINT', quit);
ffmpeg.on('exit', (code) => process.exit(code ?? 1));
video.on('error', quit);
audio.on('error', quit);

const ySize = WIDTH * HEIGHT;
const frame = Buffer.alloc((ySize * 3) / 2, 128); // grey, chroma neutral
const samplesPerFrame = RATE / FPS;
const started = Date.now();
let n = 0;
// Writes not yet taken by ffmpeg: up to a second of them may wait (its start), no more.
let pending = 0;
const MAX_PENDING = 2 * FPS;
const next = () => {
  frame.fill(128, 0, ySize);
  clockBits(Date.now()).forEach((bit, i) => {
    for (let y = ROW_Y; y < ROW_Y + BLOCK_H; y++) {
      frame.fill(bit ? 235 : 16, y * WIDTH + i * BLOCK_W, y * WIDTH + (i + 1) * BLOCK_W);
    }
  });
  const x = (n * 8) % (WIDTH - 64);
  for (let y = 200; y < 264; y++) frame.fill(235, y * WIDTH + x, y * WIDTH + x + 64);
  const pcm = Buffer.alloc(samplesPerFrame * 2);
  for (let i = 0; i < samplesPerFrame; i++) {
    const t = (n * samplesPerFrame + i) / RATE;
    pcm.writeInt16LE(Math.round(2000 * Math.sin(2 * Math.PI * 440 * t)), i * 2);
  }
  // Copies: a write that cannot complete at once keeps its buffer.
  pending += 2;
  const done = () => pending--;
  video.write(Buffer.from(frame), done);
  audio.write(pcm, done);
  n++;
  // Frame n is due at started + n / FPS: the pace does not drift with timer jitter. While
  // ffmpeg is a second behind (its start, a stall), frames are not generated: each carries the
  // time it was made, so a waiting frame shows its wait as latency, as a camera's would.
  const wait = () => {
    if (pending > MAX_PENDING) return setTimeout(wait, 5);
    setTimeout(next, Math.max(0, started + (n * 1000) / FPS - Date.now()));
  };
  wait();
};
next();
