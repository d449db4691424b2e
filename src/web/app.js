// skybridge softphone: signalling, G.711, Opus (WebCodecs), audio engine and UI. Plain ES module,
// no dependencies. Protocol: WS-PROTOCOL v1 (JSON text frames for signalling, 8-byte header +
// G.711 or Opus binary frames).

// ---------------------------------------------------------------------------------------------
// G.711 (ITU-T G.711): µ-law and A-law, table driven.

// The browser's voice processing (echo cancellation, noise suppression, gain control) is on
// unless the page is opened with `?processing=off` (music, measurement, a headset with its own
// processing). Noise suppression treats a steady test tone as noise and fades it out.
const VOICE_PROCESSING = new URLSearchParams(location.search).get("processing") !== "off";

// Opus when the browser's WebCodecs encode and decode it (mono, 48 kHz, 20 ms frames), else
// G.711 in JS. `?codec=pcmu` (or `pcma`, `g711`) forces G.711, for tests and old relays.
const FORCED_CODEC = (new URLSearchParams(location.search).get("codec") ?? "").toLowerCase();
const OPUS_CONFIG = { codec: "opus", sampleRate: 48000, numberOfChannels: 1 };
const OPUS_ENCODER_CONFIG = { ...OPUS_CONFIG, bitrate: 24000, opus: { frameDuration: 20000 } };

/** Whether this browser can encode and decode Opus with WebCodecs (and we may use it). */
async function detectOpus() {
  if (["pcmu", "pcma", "g711"].includes(FORCED_CODEC)) return false;
  if (typeof AudioEncoder === "undefined" || typeof AudioDecoder === "undefined") return false;
  try {
    const [enc, dec] = await Promise.all([
      AudioEncoder.isConfigSupported(OPUS_ENCODER_CONFIG),
      AudioDecoder.isConfigSupported(OPUS_CONFIG),
    ]);
    return Boolean(enc.supported && dec.supported);
  } catch {
    return false;
  }
}

const OPUS_AVAILABLE = typeof window !== "undefined" ? detectOpus() : Promise.resolve(false);

const ULAW_BIAS = 0x84;
const ULAW_CLIP = 32635;

/** Encodes one 16-bit linear sample to µ-law. */
export function linearToUlaw(sample) {
  let s = sample;
  const sign = s < 0 ? 0x80 : 0;
  if (sign) s = -s;
  if (s > ULAW_CLIP) s = ULAW_CLIP;
  s += ULAW_BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

/** Decodes one µ-law byte to a 16-bit linear sample. */
export function ulawToLinear(byte) {
  const u = ~byte & 0xff;
  const exponent = (u >> 4) & 0x07;
  const mantissa = u & 0x0f;
  const magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
  return u & 0x80 ? -magnitude : magnitude;
}

/** Encodes one 16-bit linear sample to A-law. */
export function linearToAlaw(sample) {
  let v = sample >> 3; // 13-bit
  let mask;
  if (v >= 0) {
    mask = 0xd5;
  } else {
    mask = 0x55;
    v = -v - 1;
  }
  let seg = 0;
  while (seg < 8 && v > (0x20 << seg) - 1) seg++;
  if (seg >= 8) return 0x7f ^ mask;
  const mantissa = seg < 2 ? (v >> 1) & 0x0f : (v >> seg) & 0x0f;
  return ((seg << 4) | mantissa) ^ mask;
}

/** Decodes one A-law byte to a 16-bit linear sample. */
export function alawToLinear(byte) {
  const a = byte ^ 0x55;
  const seg = (a & 0x70) >> 4;
  let t = (a & 0x0f) << 4;
  if (seg === 0) t += 8;
  else t = (t + 0x108) << (seg - 1);
  return a & 0x80 ? t : -t;
}

function buildEncodeTable(fn) {
  const table = new Uint8Array(65536);
  for (let i = 0; i < 65536; i++) table[i] = fn(i - 32768);
  return table;
}

function buildDecodeTable(fn) {
  const table = new Float32Array(256);
  for (let i = 0; i < 256; i++) table[i] = fn(i) / 32768;
  return table;
}

/** RTP static payload types used as the `codec` byte of audio frames. */
export const PT_PCMU = 0;
export const PT_PCMA = 8;

const ENCODE = { [PT_PCMU]: buildEncodeTable(linearToUlaw), [PT_PCMA]: buildEncodeTable(linearToAlaw) };
const DECODE = { [PT_PCMU]: buildDecodeTable(ulawToLinear), [PT_PCMA]: buildDecodeTable(alawToLinear) };

/** Float samples in [-1, 1] → G.711 bytes. */
export function encodeG711(pt, samples, out = new Uint8Array(samples.length)) {
  const table = ENCODE[pt];
  for (let i = 0; i < samples.length; i++) {
    let v = Math.round(samples[i] * 32768);
    if (v > 32767) v = 32767;
    else if (v < -32768) v = -32768;
    out[i] = table[v + 32768];
  }
  return out;
}

/** G.711 bytes → float samples in [-1, 1]. */
export function decodeG711(pt, bytes) {
  const table = DECODE[pt];
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = table[bytes[i]];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Binary audio frames: ver(1)=1 | codec(1) | call(u16 BE) | timestamp(u32 BE) | payload ≤ 1024.

export const FRAME_HEADER = 8;
export const MAX_PAYLOAD = 1024;

/** Builds one binary audio frame. */
export function buildAudioFrame(pt, call, timestamp, payload) {
  const buf = new Uint8Array(FRAME_HEADER + payload.length);
  const view = new DataView(buf.buffer);
  view.setUint8(0, 1);
  view.setUint8(1, pt);
  view.setUint16(2, call);
  view.setUint32(4, timestamp >>> 0);
  buf.set(payload, FRAME_HEADER);
  return buf;
}

/**
 * Parses one binary audio frame; null when it is not a valid v1 frame (G.711, or Opus when
 * `opusPt`, the number `welcome` announced for it, is given).
 */
export function parseAudioFrame(data, opusPt = null) {
  const buf = new Uint8Array(data);
  if (buf.length < FRAME_HEADER || buf.length > FRAME_HEADER + MAX_PAYLOAD) return null;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const pt = view.getUint8(1);
  if (view.getUint8(0) !== 1 || (pt !== PT_PCMU && pt !== PT_PCMA && (opusPt === null || pt !== opusPt))) return null;
  return { pt, call: view.getUint16(2), timestamp: view.getUint32(4), payload: buf.subarray(FRAME_HEADER) };
}

function rms(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return samples.length ? Math.sqrt(sum / samples.length) : 0;
}

// ---------------------------------------------------------------------------------------------
// Page state.

const RECORD_SECONDS = 30;
const SUBPROTOCOL = "skybridge.v1";
const TOKEN_KEY = "skybridge.token";
const ENDED_KEEP = 5;

const S = {
  conn: "signed-out", // signed-out | connecting | ready | closed
  ws: null,
  user: null,
  server: null,
  codecs: [],
  opusPt: null, // number of Opus in binary frames, once `welcome` agreed on it
  netRate: 8000, // audio rate between the worklets and the codecs: 8000 (G.711) or 48000 (Opus)
  calls: new Map(), // id → call
  pendingDials: [], // {target, cancelled} waiting for `calling`
  current: null, // id of the call whose audio flows
  muted: false,
  lastError: null,
  sentFrames: 0,
  receivedFrames: 0,
  history: [], // {t, state}
  events: [], // {t, dir, type, call?}
  t0: performance.now(),
};

const A = {
  ctx: null,
  ready: null, // Promise resolved when the worklets are loaded
  playout: null,
  capture: null,
  sink: null,
  stream: null,
  source: null,
  micStarting: null,
  micLevel: 0,
  spkLevel: 0,
  record: new Float32Array(8000 * RECORD_SECONDS),
  recordRate: 8000,
  recordPos: 0,
  recordFilled: 0,
  underruns: 0,
  dropped: 0,
  queued: 0,
};

const now = () => Math.round(performance.now() - S.t0);

function logEvent(dir, msg) {
  const e = { t: now(), dir, type: msg.type };
  if (msg.call !== undefined) e.call = msg.call;
  if (msg.code !== undefined) e.code = msg.code;
  if (msg.reason !== undefined) e.reason = msg.reason;
  S.events.push(e);
  if (S.events.length > 500) S.events.shift();
}

function isLive(call) {
  return call.state !== "ended";
}

/** Whether audio should flow for `call` (sending needs more: not held, not muted). */
function audioFlows(call) {
  return call && (call.state === "active" || (call.state === "held" && call.heldBy === "remote"));
}

/** One word for where the page is; every change is kept in `history`. */
function overallState() {
  if (S.conn !== "ready") return S.conn;
  const cur = S.current !== null ? S.calls.get(S.current) : null;
  if (cur && cur.state === "active") return "in-call";
  const live = [...S.calls.values()].filter(isLive);
  if (live.some((c) => c.state === "incoming")) return "incoming";
  if (cur && cur.state === "held") return "held";
  if (live.some((c) => c.state === "ringing")) return "ringing";
  if (live.some((c) => c.state === "calling") || S.pendingDials.length) return "calling";
  if (live.some((c) => c.state === "held")) return "held";
  return "idle";
}

function callView(c) {
  const end = c.endedAt ?? performance.now();
  return {
    id: c.id,
    direction: c.direction,
    peer: c.peer,
    state: c.state,
    codec: c.codec,
    heldBy: c.heldBy,
    ringCode: c.ringCode,
    durationMs: c.answeredAt ? Math.round(end - c.answeredAt) : 0,
    endCode: c.endCode,
    endReason: c.endReason,
    dtmfReceived: c.dtmfIn,
    dtmfSent: c.dtmfOut,
  };
}

// ---------------------------------------------------------------------------------------------
// Signalling.

function send(msg) {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) {
    setError({ code: "not_connected", reason: "not connected" });
    return false;
  }
  S.ws.send(JSON.stringify(msg));
  logEvent("out", msg);
  return true;
}

function setError(err) {
  S.lastError = { ...err, t: now() };
  ui.flash(err.reason ? `${err.code}: ${err.reason}` : String(err.code));
}

function signIn(token) {
  if (S.ws) return;
  ensureAudio();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let ws;
  try {
    ws = new WebSocket(`${scheme}://${location.host}/ws`, SUBPROTOCOL);
  } catch (e) {
    setError({ code: "connect_failed", reason: String(e) });
    return;
  }
  ws.binaryType = "arraybuffer";
  S.ws = ws;
  S.conn = "connecting";
  ws.onopen = async () => {
    const hello = { type: "hello", version: 1 };
    if (token) hello.token = token;
    hello.codecs = (await OPUS_AVAILABLE) ? ["opus", "pcmu", "pcma"] : ["pcmu", "pcma"];
    if (S.ws === ws) send(hello);
  };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") onText(e.data);
    else onBinary(e.data);
  };
  ws.onclose = (e) => onClosed(ws, e.code, e.reason);
  ws.onerror = () => {}; // `close` follows and carries the details
  refresh();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  if (S.ws) S.ws.close(1000, "signed out");
  else refresh();
}

function onClosed(ws, code, reason) {
  if (S.ws !== ws) return;
  S.ws = null;
  const wasReady = S.conn === "ready";
  // Our own sign-out, or a refused sign-in, returns to the sign-in form; a drop is "closed".
  S.conn = reason === "signed out" || !wasReady ? "signed-out" : "closed";
  if (code !== 1000) {
    // Keep the server's own `error` (e.g. bad_token) when it just preceded the close.
    const recent = S.lastError && now() - S.lastError.t < 2000 && !S.lastError.close;
    if (recent) S.lastError.close = code;
    else setError({ code: `closed_${code}`, reason: reason || "connection closed", close: code });
  }
  if (code === 1008 && !wasReady) sessionStorage.removeItem(TOKEN_KEY);
  for (const c of S.calls.values()) if (isLive(c)) endCall(c, 0, "connection closed");
  S.pendingDials = [];
  refresh();
}

function onText(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    setError({ code: "bad_json", reason: "server sent a text frame that is not JSON" });
    return;
  }
  if (!msg || typeof msg.type !== "string") return;
  logEvent("in", msg);
  const call = typeof msg.call === "number" ? S.calls.get(msg.call) : undefined;
  switch (msg.type) {
    case "welcome":
      S.conn = "ready";
      S.user = msg.user ?? null;
      S.server = msg.server ?? null;
      S.codecs = Array.isArray(msg.codecs) ? msg.codecs : [];
      {
        const pt = msg.payload_types && msg.payload_types.opus;
        S.opusPt = S.codecs.includes("opus") && Number.isInteger(pt) && pt >= 0 && pt < 256 ? pt : null;
      }
      setNetRate(S.opusPt !== null ? 48000 : 8000);
      break;
    case "calling": {
      const pending = S.pendingDials.shift() ?? { target: msg.target, cancelled: false };
      const c = newCall(msg.call, "out", msg.target ?? pending.target, "calling");
      if (pending.cancelled) {
        send({ type: "hangup", call: c.id });
        endCall(c, 0, "cancelled");
      } else {
        S.current = c.id;
      }
      break;
    }
    case "ringing":
      if (call && (call.state === "calling" || call.state === "ringing")) {
        call.state = "ringing";
        call.ringCode = msg.code;
      }
      break;
    case "answered":
      if (call && isLive(call)) {
        if (msg.codec) call.codec = msg.codec;
        if (call.state !== "active" && call.state !== "held") activate(call);
      }
      break;
    case "incoming":
      if (typeof msg.call === "number" && !call) {
        const c = newCall(msg.call, "in", msg.from ?? "unknown", "incoming");
        if (msg.codec) c.codec = msg.codec;
      }
      break;
    case "answered_elsewhere":
      if (call && isLive(call)) endCall(call, 200, "answered elsewhere");
      break;
    case "hangup":
      if (call) {
        if (isLive(call)) endCall(call, msg.code ?? 0, msg.reason ?? "");
        else if (call.endCode === 0 && msg.code) {
          call.endCode = msg.code;
          call.endReason = msg.reason ?? call.endReason;
        }
      }
      break;
    case "dtmf":
      if (call && typeof msg.digit === "string") call.dtmfIn += msg.digit.slice(0, 1);
      break;
    case "held":
      if (call && isLive(call)) {
        call.state = "held";
        call.heldBy = msg.by === "remote" ? "remote" : "local";
        call.holdPending = false;
      }
      break;
    case "unheld":
      if (call && isLive(call)) {
        call.state = "active";
        call.heldBy = null;
        call.holdPending = false;
        const cur = S.current !== null ? S.calls.get(S.current) : null;
        if (!cur || cur === call || cur.state !== "active") makeCurrent(call);
      }
      break;
    case "stats":
      if (call) call.stats = msg;
      break;
    case "pong":
      break;
    case "error": {
      setError({ code: msg.code ?? "error", reason: msg.reason ?? "", call: msg.call });
      if (call) call.holdPending = false;
      // An error without a call id while a dial waits for its id: that dial was refused.
      if (msg.call === undefined && S.pendingDials.length) {
        const p = S.pendingDials.shift();
        S.failedDials = (S.failedDials ?? 0) + 1;
        ui.flash(`Call to ${p.target} refused: ${msg.reason ?? msg.code}`);
      }
      break;
    }
    default:
      break;
  }
  refresh();
}

function newCall(id, direction, peer, state) {
  const c = {
    id,
    direction,
    peer: String(peer ?? ""),
    state,
    codec: "pcmu",
    heldBy: null,
    holdPending: false,
    ringCode: null,
    createdAt: performance.now(),
    answeredAt: null,
    endedAt: null,
    endCode: null,
    endReason: null,
    ts: (Math.random() * 0xffffffff) >>> 0,
    dtmfIn: "",
    dtmfOut: "",
    stats: null,
  };
  S.calls.set(id, c);
  // Keep only the last few ended calls in the list.
  const ended = [...S.calls.values()].filter((x) => !isLive(x));
  for (const x of ended.slice(0, Math.max(0, ended.length - ENDED_KEEP))) S.calls.delete(x.id);
  return c;
}

function activate(call) {
  call.state = "active";
  call.answeredAt = performance.now();
  makeCurrent(call);
  startMic();
}

function makeCurrent(call) {
  if (S.current !== call.id) flushPlayout();
  S.current = call.id;
}

function endCall(call, code, reason) {
  call.state = "ended";
  call.endedAt = performance.now();
  call.endCode = code;
  call.endReason = reason;
  if (S.current === call.id) {
    S.current = null;
    flushPlayout();
  }
  closeCoders(call);
  if (![...S.calls.values()].some(isLive)) stopMic();
}

function liveCalls() {
  return [...S.calls.values()].filter(isLive);
}

/** The call the Hang up / Hold / DTMF buttons act on. */
function focusCall() {
  const cur = S.current !== null ? S.calls.get(S.current) : null;
  if (cur && isLive(cur)) return cur;
  const live = liveCalls().filter((c) => c.state !== "incoming");
  return live[live.length - 1] ?? null;
}

/** Puts the current call on hold if audio flows on it (before dialling or answering another). */
function holdCurrent(except) {
  const cur = S.current !== null ? S.calls.get(S.current) : null;
  if (cur && cur !== except && cur.state === "active" && !cur.holdPending) {
    cur.holdPending = true;
    send({ type: "hold", call: cur.id });
  }
}

const actions = {
  dial(target) {
    const t = String(target ?? "").trim();
    if (!t) return false;
    if (S.conn !== "ready") {
      setError({ code: "not_connected", reason: "sign in first" });
      return false;
    }
    ensureAudio();
    holdCurrent(null);
    if (!send({ type: "call", target: t })) return false;
    S.pendingDials.push({ target: t, cancelled: false });
    startMic();
    refresh();
    return true;
  },
  hangup(id) {
    const c = id !== undefined ? S.calls.get(id) : focusCall();
    if (!c) {
      // A dial still waiting for its id: hang up as soon as it arrives.
      const p = S.pendingDials.find((x) => !x.cancelled);
      if (p) p.cancelled = true;
      refresh();
      return Boolean(p);
    }
    if (!isLive(c)) return false;
    if (c.state === "incoming") return actions.reject(c.id);
    send({ type: "hangup", call: c.id });
    endCall(c, 0, "hung up");
    refresh();
    return true;
  },
  answer(id) {
    const c =
      id !== undefined ? S.calls.get(id) : liveCalls().find((x) => x.state === "incoming");
    if (!c || c.state !== "incoming") return false;
    ensureAudio();
    holdCurrent(c);
    send({ type: "answer", call: c.id });
    activate(c);
    refresh();
    return true;
  },
  reject(id, code = 486) {
    const c =
      id !== undefined ? S.calls.get(id) : liveCalls().find((x) => x.state === "incoming");
    if (!c || c.state !== "incoming") return false;
    send({ type: "reject", call: c.id, code });
    endCall(c, code, "rejected");
    refresh();
    return true;
  },
  sendDtmf(digits, id) {
    const c = id !== undefined ? S.calls.get(id) : focusCall();
    const d = String(digits ?? "").toUpperCase();
    if (!c || c.state !== "active" || !/^[0-9*#A-D]{1,32}$/.test(d)) return false;
    send({ type: "dtmf", call: c.id, digits: d });
    c.dtmfOut = (c.dtmfOut + d).slice(-32);
    refresh();
    return true;
  },
  hold(id) {
    const c = id !== undefined ? S.calls.get(id) : focusCall();
    if (!c || c.state !== "active" || c.holdPending) return false;
    c.holdPending = true;
    send({ type: "hold", call: c.id });
    refresh();
    return true;
  },
  unhold(id) {
    const c = id !== undefined ? S.calls.get(id) : focusCall();
    if (!c || c.state !== "held" || c.heldBy === "remote" || c.holdPending) return false;
    holdCurrent(c);
    c.holdPending = true;
    send({ type: "unhold", call: c.id });
    refresh();
    return true;
  },
  toggleMute() {
    S.muted = !S.muted;
    refresh();
    return S.muted;
  },
};

// ---------------------------------------------------------------------------------------------
// Audio engine.

/** Creates the AudioContext (call from a user gesture so that it may start) and the playout. */
function ensureAudio() {
  if (A.ctx) {
    if (A.ctx.state === "suspended") A.ctx.resume().catch(() => {});
    return A.ready;
  }
  if (typeof AudioContext === "undefined" || !window.isSecureContext) {
    setError({ code: "no_audio", reason: "audio needs a secure context (https or localhost)" });
    A.ready = Promise.resolve(false);
    return A.ready;
  }
  A.ctx = new AudioContext({ latencyHint: "interactive" });
  A.ready = (async () => {
    try {
      await A.ctx.audioWorklet.addModule(new URL("worklet.js", import.meta.url));
      A.playout = new AudioWorkletNode(A.ctx, "sb-playout", {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: { rate: S.netRate },
      });
      A.playout.port.onmessage = (e) => onPlayed(e.data);
      A.playout.connect(A.ctx.destination);
      if (A.ctx.state === "suspended") await A.ctx.resume();
      return true;
    } catch (e) {
      setError({ code: "audio_failed", reason: String(e) });
      return false;
    }
  })();
  return A.ready;
}

function startMic() {
  if (A.stream || A.micStarting) return;
  A.micStarting = (async () => {
    try {
      if (!(await ensureAudio())) return;
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          echoCancellation: VOICE_PROCESSING,
          noiseSuppression: VOICE_PROCESSING,
          autoGainControl: VOICE_PROCESSING,
          channelCount: 1,
        },
      });
      if (!liveCalls().length && !S.pendingDials.length) {
        for (const t of stream.getTracks()) t.stop();
        return;
      }
      A.stream = stream;
      A.source = A.ctx.createMediaStreamSource(stream);
      A.capture = new AudioWorkletNode(A.ctx, "sb-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: { rate: S.netRate },
      });
      A.captureRate = S.netRate;
      A.capture.port.onmessage = (e) => onCaptured(e.data);
      // A silent sink keeps the capture node pulled by the graph.
      A.sink = A.ctx.createGain();
      A.sink.gain.value = 0;
      A.source.connect(A.capture).connect(A.sink).connect(A.ctx.destination);
    } catch (e) {
      setError({ code: "mic_failed", reason: String(e && e.message ? e.message : e) });
    } finally {
      A.micStarting = null;
      refresh();
    }
  })();
}

function stopMic() {
  if (A.stream) for (const t of A.stream.getTracks()) t.stop();
  for (const node of [A.source, A.capture, A.sink]) if (node) node.disconnect();
  A.stream = A.source = A.capture = A.sink = null;
  A.micLevel = 0;
}

function flushPlayout() {
  if (A.playout) A.playout.port.postMessage("flush");
}

/** Sets the rate of the audio between worklets and codecs (the playout follows at once). */
function setNetRate(rate) {
  S.netRate = rate;
  if (A.playout) A.playout.port.postMessage({ rate });
}

function onCaptured(frame) {
  const c = S.current !== null ? S.calls.get(S.current) : null;
  const sending = c && c.state === "active" && !c.holdPending && S.ws && S.ws.readyState === WebSocket.OPEN;
  const samples = S.muted ? new Float32Array(frame.length) : frame;
  A.micLevel = Math.max(sending ? rms(samples) : 0, A.micLevel * 0.7);
  if (!sending) return;
  if (c.codec === "opus") {
    if (A.captureRate === 48000) encodeOpus(c, samples);
    return;
  }
  if (A.captureRate !== 8000) return; // a G.711 call on an Opus capture: not produced by the relay
  const pt = c.codec === "pcma" ? PT_PCMA : PT_PCMU;
  S.ws.send(buildAudioFrame(pt, c.id, c.ts, encodeG711(pt, samples)));
  c.ts = (c.ts + samples.length) >>> 0;
  S.sentFrames++;
}

// Opus through WebCodecs: one AudioEncoder and one AudioDecoder per call, 20 ms packets, RTP-style
// timestamps in 48 kHz ticks (RFC 7587), so frame n carries ts + 960·n.

function encodeOpus(c, samples) {
  if (!c.encoder || c.encoder.state === "closed") {
    c.encoder = new AudioEncoder({
      output: (chunk) => {
        const data = new Uint8Array(chunk.byteLength);
        chunk.copyTo(data);
        if (!isLive(c) || !S.ws || S.ws.readyState !== WebSocket.OPEN || S.opusPt === null) return;
        // chunk.timestamp is in µs from the call's first sample: 48 ticks per ms.
        const ts = (c.ts + Math.round((chunk.timestamp * 48) / 1000)) >>> 0;
        S.ws.send(buildAudioFrame(S.opusPt, c.id, ts, data));
        S.sentFrames++;
      },
      error: (e) => setError({ code: "opus_encoder", reason: String(e && e.message ? e.message : e) }),
    });
    c.encoder.configure(OPUS_ENCODER_CONFIG);
    c.encodedSamples = 0;
  }
  const data = new AudioData({
    format: "f32",
    sampleRate: 48000,
    numberOfFrames: samples.length,
    numberOfChannels: 1,
    timestamp: Math.round((c.encodedSamples * 1e6) / 48000),
    data: samples,
  });
  c.encodedSamples += samples.length;
  c.encoder.encode(data);
  data.close();
}

function decodeOpus(c, payload) {
  if (!c.decoder || c.decoder.state === "closed") {
    c.decoder = new AudioDecoder({
      output: (audio) => {
        const n = audio.numberOfFrames;
        const pcm = new Float32Array(n);
        audio.copyTo(pcm, { planeIndex: 0, format: "f32-planar" });
        audio.close();
        if (S.current !== c.id || !audioFlows(c) || !A.playout) return;
        A.playout.port.postMessage(pcm, [pcm.buffer]);
      },
      // A bad packet closes the decoder; the next packet opens a new one.
      error: () => {},
    });
    c.decoder.configure(OPUS_CONFIG);
    c.decodedPackets = 0;
  }
  c.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: c.decodedPackets * 20000, data: payload }));
  c.decodedPackets++;
}

function closeCoders(c) {
  for (const k of ["encoder", "decoder"]) {
    if (c[k] && c[k].state !== "closed") c[k].close();
    c[k] = null;
  }
}

function onBinary(data) {
  const f = parseAudioFrame(data, S.opusPt);
  if (!f) return;
  S.receivedFrames++;
  const c = S.calls.get(f.call);
  if (!c || S.current !== f.call || !audioFlows(c) || !A.playout) return;
  if (f.pt === S.opusPt) {
    if (f.payload.length) decodeOpus(c, f.payload);
    return;
  }
  if (S.netRate !== 8000) return;
  const pcm = decodeG711(f.pt, f.payload);
  A.playout.port.postMessage(pcm, [pcm.buffer]);
}

function onPlayed(msg) {
  if (!msg || !(msg.played instanceof Float32Array)) return;
  if (msg.rate && msg.rate !== A.recordRate) {
    A.recordRate = msg.rate;
    A.record = new Float32Array(msg.rate * RECORD_SECONDS);
    A.recordPos = 0;
    A.recordFilled = 0;
  }
  A.queued = msg.queued;
  A.underruns = msg.underruns;
  A.dropped = msg.dropped;
  A.spkLevel = Math.max(rms(msg.played), A.spkLevel * 0.7);
  const c = S.current !== null ? S.calls.get(S.current) : null;
  if (!audioFlows(c)) return;
  const rec = A.record;
  for (let i = 0; i < msg.played.length; i++) {
    rec[A.recordPos] = msg.played[i];
    A.recordPos = (A.recordPos + 1) % rec.length;
  }
  A.recordFilled = Math.min(rec.length, A.recordFilled + msg.played.length);
}

/** The last `seconds` of played audio at `A.recordRate` (only while a call's audio flowed). */
function recorded(seconds = RECORD_SECONDS) {
  const n = Math.min(A.recordFilled, Math.floor(seconds * A.recordRate));
  const out = new Float32Array(n);
  const rec = A.record;
  const start = (A.recordPos - n + rec.length) % rec.length;
  for (let i = 0; i < n; i++) out[i] = rec[(start + i) % rec.length];
  return out;
}

// ---------------------------------------------------------------------------------------------
// UI.

const $ = (id) => document.getElementById(id);

function fmtDuration(ms) {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

const STATE_TEXT = {
  "signed-out": "Signed out",
  connecting: "Connecting…",
  closed: "Disconnected",
  idle: "Ready",
  calling: "Calling…",
  ringing: "Ringing…",
  incoming: "Incoming call",
  "in-call": "In call",
  held: "On hold",
};

function callStateText(c) {
  switch (c.state) {
    case "calling":
      return "calling…";
    case "ringing":
      return c.ringCode === 183 ? "ringing (early media)" : "ringing…";
    case "incoming":
      return "incoming";
    case "active":
      return c.holdPending ? "holding…" : "connected";
    case "held":
      return c.holdPending ? "resuming…" : c.heldBy === "remote" ? "held by peer" : "on hold";
    default: {
      const code = c.endCode ? ` (${c.endCode})` : "";
      return `ended${code}${c.endReason ? ` · ${c.endReason}` : ""}`;
    }
  }
}

function meterFill(level) {
  if (level <= 0) return 0;
  const db = 20 * Math.log10(level);
  return Math.max(0, Math.min(1, (db + 60) / 60));
}

const ui = {
  flashTimer: null,
  flash(text) {
    if (typeof document === "undefined") return;
    const el = $("notice");
    if (!el) return;
    el.textContent = text;
    el.hidden = false;
    clearTimeout(ui.flashTimer);
    ui.flashTimer = setTimeout(() => (el.hidden = true), 6000);
  },
};

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function renderCalls() {
  const list = $("calls");
  const calls = [...S.calls.values()].sort((a, b) => Number(isLive(b)) - Number(isLive(a)) || b.createdAt - a.createdAt);
  list.replaceChildren(
    ...calls.map((c) => {
      const buttons = [];
      if (c.state === "incoming") {
        buttons.push(el("button", { class: "small ok", onclick: () => actions.answer(c.id) }, "Answer"));
        buttons.push(el("button", { class: "small danger", onclick: () => actions.reject(c.id) }, "Reject"));
      } else if (isLive(c)) {
        if (c.state === "held" && c.heldBy !== "remote")
          buttons.push(el("button", { class: "small", onclick: () => actions.unhold(c.id) }, "Resume"));
        if (c.state === "active")
          buttons.push(el("button", { class: "small", onclick: () => actions.hold(c.id) }, "Hold"));
        buttons.push(el("button", { class: "small danger", onclick: () => actions.hangup(c.id) }, "Hang up"));
      }
      const dur = c.answeredAt ? fmtDuration((c.endedAt ?? performance.now()) - c.answeredAt) : "";
      const dtmf = c.dtmfIn ? el("span", { class: "dtmf" }, `DTMF in: ${c.dtmfIn}`) : "";
      return el(
        "li",
        { class: `call ${c.state}${S.current === c.id ? " current" : ""}`, dataset: { call: String(c.id) } },
        el("span", { class: "dir", title: c.direction === "out" ? "outgoing" : "incoming" }, c.direction === "out" ? "↗" : "↙"),
        el(
          "div",
          { class: "who" },
          el("strong", {}, c.peer || "unknown"),
          el("span", { class: "cstate" }, callStateText(c)),
          isLive(c) && c.state !== "calling" ? el("span", { class: "codec", title: "codec on this call" }, codecLabel(c.codec)) : "",
          dtmf,
        ),
        el("span", { class: "dur", "data-dur": String(c.id) }, dur),
        el("div", { class: "cbtn" }, ...buttons),
      );
    }),
  );
  $("calls-empty").hidden = calls.length > 0;
}

/** How the call panel names a codec. */
function codecLabel(codec) {
  return { opus: "Opus", pcmu: "G.711 µ-law", pcma: "G.711 A-law" }[codec] ?? String(codec ?? "");
}

let lastState = null;

function refresh() {
  const state = overallState();
  if (state !== lastState) {
    lastState = state;
    S.history.push({ t: now(), state });
  }
  if (typeof document === "undefined") return;
  const signedIn = S.conn === "ready";
  $("signin").hidden = signedIn;
  $("phone").hidden = !signedIn;
  $("signin-go").disabled = $("signin-anon").disabled = S.conn === "connecting";
  $("state").textContent = STATE_TEXT[state] ?? state;
  $("state").dataset.state = state;
  $("user").textContent = S.user ? `${S.user}` : "";
  const focus = focusCall();
  const incoming = liveCalls().filter((c) => c.state === "incoming");
  const banner = $("incoming");
  banner.hidden = incoming.length === 0;
  if (incoming.length) {
    const c = incoming[0];
    $("incoming-from").textContent = c.peer || "unknown";
    banner.dataset.call = String(c.id);
    $("incoming-more").textContent = incoming.length > 1 ? `+${incoming.length - 1} more` : "";
  }
  const inCall = focus && focus.state === "active";
  $("call").disabled = !signedIn;
  $("hangup").disabled = !focus && !S.pendingDials.length;
  $("mute").disabled = !focus;
  $("mute").classList.toggle("on", S.muted);
  $("mute").textContent = S.muted ? "Unmute" : "Mute";
  $("mute").setAttribute("aria-pressed", String(S.muted));
  const canHold = focus && (focus.state === "active" || (focus.state === "held" && focus.heldBy !== "remote"));
  $("hold").disabled = !canHold || focus.holdPending;
  $("hold").textContent = focus && focus.state === "held" ? "Resume" : "Hold";
  $("hold").classList.toggle("on", Boolean(focus && focus.state === "held"));
  $("pad").classList.toggle("dtmf", Boolean(inCall));
  $("pad-mode").textContent = inCall ? "Keys send DTMF" : "";
  $("dtmf-sent").textContent = inCall && focus.dtmfOut ? `· sent ${focus.dtmfOut}` : "";
  renderCalls();
  tick();
}

/** Updates what moves on its own: durations and level meters. */
function tick() {
  if (typeof document === "undefined") return;
  for (const span of document.querySelectorAll("[data-dur]")) {
    const c = S.calls.get(Number(span.dataset.dur));
    if (c && c.answeredAt) span.textContent = fmtDuration((c.endedAt ?? performance.now()) - c.answeredAt);
  }
  const focus = focusCall();
  const dur = focus && focus.answeredAt ? fmtDuration(performance.now() - focus.answeredAt) : "";
  $("duration").textContent = dur;
  $("mic-meter").style.setProperty("--level", meterFill(A.micLevel).toFixed(3));
  $("spk-meter").style.setProperty("--level", meterFill(A.spkLevel).toFixed(3));
  A.micLevel *= 0.85;
  A.spkLevel *= 0.85;
}

function bindUi() {
  const tokenInput = $("token");
  tokenInput.value = sessionStorage.getItem(TOKEN_KEY) ?? "";
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn(tokenInput.value.trim());
  });
  $("signin-anon").addEventListener("click", () => signIn(""));
  $("signout").addEventListener("click", signOut);
  const target = $("target");
  const press = (key) => {
    const focus = focusCall();
    if (focus && focus.state === "active") actions.sendDtmf(key);
    else target.value += key;
  };
  for (const b of document.querySelectorAll("#pad button")) b.addEventListener("click", () => press(b.dataset.key));
  $("dial-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (actions.dial(target.value)) target.blur();
  });
  $("hangup").addEventListener("click", () => actions.hangup());
  $("mute").addEventListener("click", () => actions.toggleMute());
  $("hold").addEventListener("click", () => {
    const f = focusCall();
    if (f && f.state === "held") actions.unhold(f.id);
    else actions.hold();
  });
  $("incoming-answer").addEventListener("click", () => actions.answer(Number($("incoming").dataset.call)));
  $("incoming-reject").addEventListener("click", () => actions.reject(Number($("incoming").dataset.call)));
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.ctrlKey || e.metaKey || e.altKey) return;
    const focus = focusCall();
    if (focus && focus.state === "active" && /^[0-9*#]$/.test(e.key)) {
      actions.sendDtmf(e.key);
      e.preventDefault();
    }
  });
  setInterval(tick, 100);
  refresh();
}

// ---------------------------------------------------------------------------------------------
// Test hooks (used by tests/browser/softphone.mjs).

if (typeof window !== "undefined" && typeof document !== "undefined") {
  window.__skybridge = {
    state: () => overallState(),
    calls: () => [...S.calls.values()].map(callView),
    lastError: () => S.lastError,
    received: (seconds) => recorded(seconds),
    receivedRate: () => A.recordRate,
    codecs: () => S.codecs.slice(),
    opusAvailable: () => OPUS_AVAILABLE,
    sentFrames: () => S.sentFrames,
    receivedFrames: () => S.receivedFrames,
    dial: (target) => actions.dial(target),
    hangup: (id) => actions.hangup(id),
    answer: (id) => actions.answer(id),
    reject: (id, code) => actions.reject(id, code),
    sendDtmf: (d) => actions.sendDtmf(d),
    hold: (id) => actions.hold(id),
    unhold: (id) => actions.unhold(id),
    mute: () => actions.toggleMute(),
    history: () => S.history.slice(),
    events: () => S.events.slice(),
    audio: () => ({
      contextRate: A.ctx ? A.ctx.sampleRate : null,
      contextState: A.ctx ? A.ctx.state : null,
      micOpen: Boolean(A.stream),
      queuedSamples: A.queued,
      underruns: A.underruns,
      droppedSamples: A.dropped,
    }),
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", bindUi);
  else bindUi();
}
