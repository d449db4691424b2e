// Drives the skybridge softphone page in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core, which never downloads a browser), like a person would: sign in, dial (or wait
// for an incoming call and answer it), stay in the call, record what was played, hang up.
//
//   node tests/browser/softphone.mjs --url=http://127.0.0.1:8080/ [--token=T] --target=echo \
//        [--seconds=5] [--wav=out/received.wav] [--png=out/call.png] [--json=out/summary.json]
//        [--mode=dial|answer] [--capture=in.wav | --tone=1000] [--expect-tone=1000]
//        [--dtmf=123] [--timeout=20] [--chromium=/usr/bin/chromium]
//
// Every option can also come from the environment as SOFTPHONE_<NAME> (upper case, '-' → '_'),
// e.g. SOFTPHONE_URL, SOFTPHONE_TOKEN, SOFTPHONE_EXPECT_TONE; the command line wins.
//
// The microphone is Chromium's fake capture device playing --capture (a WAV file, looped), or,
// without it, a generated 48 kHz 16-bit sine of --tone Hz (default 1000) at -12 dBFS.
// --expect-tone=F fails the run unless the received audio is mostly a tone of F Hz (Goertzel).
// Prints one JSON summary line on stdout and exits 0 on success, 1 on failure, 2 on bad usage.

import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const DEFAULTS = {
  url: "",
  token: "",
  target: "",
  mode: "dial",
  seconds: "5",
  wav: "",
  png: "",
  json: "",
  capture: "",
  tone: "1000",
  "expect-tone": "",
  "min-tone-ratio": "0.5",
  dtmf: "",
  timeout: "20",
  chromium: "/usr/bin/chromium",
};

function options() {
  const o = {};
  for (const k of Object.keys(DEFAULTS)) {
    const env = process.env[`SOFTPHONE_${k.toUpperCase().replace(/-/g, "_")}`];
    o[k] = env ?? DEFAULTS[k];
  }
  for (const a of process.argv.slice(2)) {
    const m = /^--([a-z-]+)=(.*)$/s.exec(a);
    if (!m || !(m[1] in DEFAULTS)) usage(`unknown argument ${a}`);
    o[m[1]] = m[2];
  }
  if (!o.url) usage("--url is required");
  if (o.mode !== "dial" && o.mode !== "answer") usage("--mode must be dial or answer");
  if (o.mode === "dial" && !o.target) usage("--target is required in dial mode");
  for (const k of ["seconds", "tone", "timeout", "min-tone-ratio"]) {
    if (!(Number(o[k]) >= 0)) usage(`--${k} must be a number`);
  }
  return o;
}

function usage(msg) {
  console.error(`softphone.mjs: ${msg}\nsee the header of tests/browser/softphone.mjs for the options`);
  process.exit(2);
}

/** A mono 16-bit PCM WAV file. */
function wav(samples, rate) {
  const data = Buffer.alloc(samples.length * 2);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.max(-1, Math.min(1, samples[i]));
    data.writeInt16LE(Math.round(v * 32767), i * 2);
  }
  const h = Buffer.alloc(44);
  h.write("RIFF", 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write("WAVE", 8);
  h.write("fmt ", 12);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write("data", 36);
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}

function sine(freq, rate, seconds, amplitude) {
  const n = Math.round(rate * seconds);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = amplitude * Math.sin((2 * Math.PI * freq * i) / rate);
  return out;
}

/**
 * Share of the signal's power at `freq` (0..1, ≈1 for a clean tone), by Goertzel over 200 ms
 * blocks; only blocks that are not silent count.
 */
function toneRatio(samples, rate, freq) {
  const block = Math.round(rate * 0.2);
  let tonePower = 0;
  let totalPower = 0;
  const coeff = 2 * Math.cos((2 * Math.PI * freq) / rate);
  for (let start = 0; start + block <= samples.length; start += block) {
    let s1 = 0;
    let s2 = 0;
    let energy = 0;
    for (let i = start; i < start + block; i++) {
      const s0 = samples[i] + coeff * s1 - s2;
      s2 = s1;
      s1 = s0;
      energy += samples[i] * samples[i];
    }
    const meanSquare = energy / block;
    if (meanSquare < 1e-6) continue; // below -60 dBFS: silence
    const mag2 = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    tonePower += (2 * mag2) / (block * block);
    totalPower += meanSquare;
  }
  return totalPower > 0 ? tonePower / totalPower : 0;
}

function rmsDbfs(samples) {
  let sum = 0;
  for (const s of samples) sum += s * s;
  const rms = samples.length ? Math.sqrt(sum / samples.length) : 0;
  return rms > 0 ? Math.round(20 * Math.log10(rms) * 10) / 10 : null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const o = options();
  const timeoutMs = Number(o.timeout) * 1000;
  const summary = { ok: false, mode: o.mode, url: o.url, target: o.target || undefined, failure: null };
  const scratch = mkdtempSync(path.join(tmpdir(), "skybridge-softphone-"));
  let capture = o.capture;
  if (!capture) {
    capture = path.join(scratch, "capture.wav");
    writeFileSync(capture, wav(sine(Number(o.tone), 48000, 5, 0.25), 48000));
  }
  const url = new URL(o.url);
  const args = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${capture}`,
    "--autoplay-policy=no-user-gesture-required",
  ];
  // Microphone access and AudioWorklet need a secure context: fine on localhost, not on plain
  // http to another address, which this flag allows for the page under test only.
  const loopback = ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname) || url.hostname.startsWith("127.");
  if (url.protocol === "http:" && !loopback) args.push(`--unsafely-treat-insecure-origin-as-secure=${url.origin}`);

  const pageErrors = [];
  let context;
  try {
    context = await chromium.launchPersistentContext(path.join(scratch, "profile"), {
      executablePath: o.chromium,
      headless: true,
      args,
      viewport: { width: 860, height: 640 },
      ignoreHTTPSErrors: true,
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    page.on("console", (m) => {
      if (m.type() === "error") pageErrors.push(`${m.text()} (${m.location().url})`);
    });
    const fail = (msg) => {
      throw Object.assign(new Error(msg), { softphone: true });
    };
    const hook = (fn, arg) => page.evaluate(fn, arg);

    await page.goto(o.url, { waitUntil: "load", timeout: timeoutMs });
    await page.waitForFunction(() => Boolean(window.__skybridge), null, { timeout: timeoutMs });

    // Sign in through the form, as a person would (the click also lets audio start).
    if (o.token) {
      await page.fill("#token", o.token);
      await page.click("#signin-go");
    } else {
      await page.click("#signin-anon");
    }
    await page
      .waitForFunction(() => !["signed-out", "connecting"].includes(window.__skybridge.state()), null, { timeout: timeoutMs })
      .catch(() => {});
    const afterSignIn = await hook(() => window.__skybridge.state());
    if (afterSignIn === "signed-out" || afterSignIn === "connecting" || afterSignIn === "closed") {
      const err = await hook(() => window.__skybridge.lastError());
      fail(`sign-in failed (${afterSignIn}): ${err ? `${err.code} ${err.reason ?? ""}` : "no answer"}`);
    }

    let callId;
    if (o.mode === "dial") {
      await page.fill("#target", o.target);
      await page.click("#call");
      await page
        .waitForFunction(
          () => window.__skybridge.calls().some((c) => c.direction === "out" && (c.state === "active" || c.state === "ended")),
          null,
          { timeout: timeoutMs },
        )
        .catch(() => {});
      const calls = await hook(() => window.__skybridge.calls());
      const c = calls.find((x) => x.direction === "out");
      if (!c) {
        const err = await hook(() => window.__skybridge.lastError());
        fail(`no call was placed: ${err ? `${err.code} ${err.reason ?? ""}` : "no answer from the relay"}`);
      }
      if (c.state !== "active") fail(`call ${c.id} was not answered: ${c.state} ${c.endCode ?? ""} ${c.endReason ?? ""}`.trim());
      callId = c.id;
    } else {
      await page
        .waitForFunction(() => window.__skybridge.state() === "incoming", null, { timeout: timeoutMs })
        .catch(() => fail("no incoming call"));
      await page.click("#incoming-answer");
      const calls = await hook(() => window.__skybridge.calls());
      const c = calls.find((x) => x.direction === "in" && x.state === "active");
      if (!c) fail("answering the incoming call did not connect it");
      callId = c.id;
    }
    summary.call = callId;

    const inCallStart = Date.now();
    if (o.dtmf) {
      await sleep(500);
      for (const d of o.dtmf) {
        await page.click(`#pad button[data-key="${d}"]`);
        await sleep(150);
      }
    }
    const remaining = Number(o.seconds) * 1000 - (Date.now() - inCallStart);
    if (remaining > 0) await sleep(remaining);

    const during = await hook((id) => window.__skybridge.calls().find((c) => c.id === id), callId);
    if (!during || during.state !== "active") {
      fail(`call ${callId} did not last: ${during ? `${during.state} ${during.endCode ?? ""} ${during.endReason ?? ""}` : "gone"}`);
    }
    if (o.png) {
      mkdirSync(path.dirname(path.resolve(o.png)), { recursive: true });
      await page.screenshot({ path: o.png, fullPage: true });
      summary.png = o.png;
    }
    const received = Float32Array.from(await hook((s) => Array.from(window.__skybridge.received(s)), Number(o.seconds)));
    // What the page played, at its net rate: 8 kHz for G.711, 48 kHz for Opus.
    const rate = (await hook(() => window.__skybridge.receivedRate?.())) || 8000;
    summary.codec = during.codec;
    summary.codecs = await hook(() => window.__skybridge.codecs?.() ?? []);
    summary.opusAvailable = await hook(() => window.__skybridge.opusAvailable?.() ?? false);
    summary.sentFrames = await hook(() => window.__skybridge.sentFrames());
    summary.receivedFrames = await hook(() => window.__skybridge.receivedFrames());
    summary.audio = await hook(() => window.__skybridge.audio());

    await page.click("#hangup");
    await page
      .waitForFunction((id) => window.__skybridge.calls().find((c) => c.id === id)?.state === "ended", callId, { timeout: 5000 })
      .catch(() => {});
    await sleep(300); // let the relay's own hangup, if any, arrive
    summary.calls = await hook(() => window.__skybridge.calls());
    summary.transitions = await hook(() => window.__skybridge.history());
    summary.events = (await hook(() => window.__skybridge.events())).filter((e) => e.type !== "ping" && e.type !== "pong");
    summary.lastError = await hook(() => window.__skybridge.lastError());

    summary.receivedRate = rate;
    summary.receivedSeconds = received.length / rate;
    summary.receivedDbfs = rmsDbfs(received);
    const tone = Number(o["expect-tone"] || o.tone);
    // Skip the first half second (jitter buffer priming, the far end starting up).
    summary.tone = { hz: tone, ratio: Math.round(toneRatio(received.subarray(rate / 2), rate, tone) * 1000) / 1000 };
    if (o.wav) {
      mkdirSync(path.dirname(path.resolve(o.wav)), { recursive: true });
      writeFileSync(o.wav, wav(received, rate));
      summary.wav = o.wav;
    }

    const problems = [];
    if (summary.sentFrames === 0) problems.push("no audio frame was sent");
    if (summary.receivedFrames === 0) problems.push("no audio frame was received");
    if (o["expect-tone"] && summary.tone.ratio < Number(o["min-tone-ratio"])) {
      problems.push(`received audio is not a ${tone} Hz tone (ratio ${summary.tone.ratio}, ${summary.receivedDbfs} dBFS)`);
    }
    if (pageErrors.length) problems.push(`page errors: ${pageErrors.join(" | ")}`);
    if (problems.length) fail(problems.join("; "));
    summary.ok = true;
  } catch (e) {
    summary.failure = e.softphone ? e.message : `driver error: ${e && e.stack ? e.stack.split("\n")[0] : e}`;
  } finally {
    summary.pageErrors = pageErrors;
    if (context) await context.close().catch(() => {});
    rmSync(scratch, { recursive: true, force: true });
  }
  const line = JSON.stringify(summary);
  if (o.json) {
    mkdirSync(path.dirname(path.resolve(o.json)), { recursive: true });
    writeFileSync(o.json, `${line}\n`);
  }
  console.log(line);
  process.exit(summary.ok ? 0 : 1);
}

main();
