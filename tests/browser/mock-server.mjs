// Development tool: a throwaway stand-in for the skybridge WebSocket door, to exercise the
// softphone page (src/web/) without the relay. Node built-ins only; loopback only.
//
//   node tests/browser/mock-server.mjs [--port=0] [--token=SECRET] [--codec=pcmu|pcma]
//                                      [--incoming=MS] [--from=TEXT]
//
// Prints one JSON line {"listening":"http://127.0.0.1:PORT/"} once ready. Behaviour:
//   GET / , /index.html, /app.js, /worklet.js, /style.css  → the files of src/web/
//   WS /ws (subprotocol skybridge.v1 echoed)
//     hello                 → welcome (bad token when --token is set → error + close 1008)
//     call {target}         → calling, ringing 180 (+200 ms), answered (+700 ms);
//                             target "busy" → hangup 486, target "nobody" → error not_allowed
//     answer / reject       → answered / nothing (for calls offered with --incoming)
//     hangup, dtmf, hold, unhold, ping → hangup 200, one dtmf per digit echoed, held, unheld, pong
//     binary audio frames   → validated (close 1003 when invalid) and echoed back unchanged
//   --incoming=MS offers an incoming call MS after welcome.
// It checks what the page sends: a frame before hello, an unknown type, a bad audio frame or an
// unknown call id closes the socket the way WS-PROTOCOL.md says the relay will.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const webDir = path.resolve(here, "../../src/web");
const opts = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    return m ? [m[1], m[2] ?? "1"] : [a, "1"];
  }),
);

const ASSETS = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/index.html": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/worklet.js": ["worklet.js", "text/javascript; charset=utf-8"],
  "/style.css": ["style.css", "text/css; charset=utf-8"],
};

const server = http.createServer((req, res) => {
  const p = new URL(req.url, "http://x").pathname;
  const a = ASSETS[p];
  if (req.method !== "GET" || !a) {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return;
  }
  res.writeHead(200, { "content-type": a[1], "cache-control": "no-store" });
  res.end(readFileSync(path.join(webDir, a[0])));
});

server.on("upgrade", (req, socket) => {
  const key = req.headers["sec-websocket-key"];
  if (new URL(req.url, "http://x").pathname !== "/ws" || !key) {
    socket.end("HTTP/1.1 400 Bad Request\r\n\r\n");
    return;
  }
  const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
  const offered = String(req.headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim());
  const lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Accept: ${accept}`];
  if (offered.includes("skybridge.v1")) lines.push("Sec-WebSocket-Protocol: skybridge.v1");
  socket.write(`${lines.join("\r\n")}\r\n\r\n`);
  session(socket);
});

function frame(opcode, payload) {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, len]) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (len >= 126 && len < 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else if (len >= 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

let sessions = 0;

function session(socket) {
  const sid = ++sessions;
  let buf = Buffer.alloc(0);
  let greeted = false;
  let closed = false;
  let nextCall = 1;
  const calls = new Map(); // id → {active, held, frames}
  const timers = new Set();
  const log = (...a) => console.error(`[mock ${sid}]`, ...a);
  const later = (ms, fn) => {
    const t = setTimeout(() => {
      timers.delete(t);
      if (!closed) fn();
    }, ms);
    timers.add(t);
  };
  const sendJson = (m) => !closed && socket.write(frame(1, Buffer.from(JSON.stringify(m))));
  const close = (code, reason) => {
    if (closed) return;
    log("close", code, reason);
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code);
    socket.write(frame(8, Buffer.concat([p, Buffer.from(reason)])));
    closed = true;
    for (const t of timers) clearTimeout(t);
    socket.end();
  };

  const onText = (text) => {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return close(1007, "not JSON");
    }
    log("<-", text);
    if (!greeted) {
      if (m.type !== "hello") return close(1008, "hello first");
      if (opts.token && m.token !== opts.token) {
        sendJson({ type: "error", code: "bad_token", reason: "token not accepted" });
        return close(1008, "bad token");
      }
      greeted = true;
      sendJson({ type: "welcome", version: 1, user: m.token ? "alice" : "anonymous", codecs: ["pcmu", "pcma"], server: "mock" });
      if (opts.incoming) {
        later(Number(opts.incoming), () => {
          const id = nextCall++;
          calls.set(id, { active: false, held: false, frames: 0, incoming: true });
          sendJson({ type: "incoming", call: id, from: opts.from ?? "Bob <sip:+15550100@pbx>", codec: opts.codec ?? "pcmu" });
        });
      }
      return;
    }
    const c = calls.get(m.call);
    switch (m.type) {
      case "call": {
        if (m.target === "nobody") return sendJson({ type: "error", code: "not_allowed", reason: "not in the dial plan" });
        const id = nextCall++;
        calls.set(id, { active: false, held: false, frames: 0 });
        sendJson({ type: "calling", call: id, target: m.target });
        if (m.target === "busy") return later(300, () => sendJson({ type: "hangup", call: id, code: 486, reason: "Busy Here" }));
        later(200, () => calls.has(id) && sendJson({ type: "ringing", call: id, code: 180 }));
        later(700, () => {
          if (!calls.has(id)) return;
          calls.get(id).active = true;
          sendJson({ type: "answered", call: id, codec: opts.codec ?? "pcmu" });
        });
        return;
      }
      case "answer":
        if (!c || !c.incoming) return sendJson({ type: "error", code: "unknown_call", reason: "no such call", call: m.call });
        c.active = true;
        return sendJson({ type: "answered", call: m.call, codec: opts.codec ?? "pcmu" });
      case "reject":
      case "hangup":
        if (!c) return sendJson({ type: "error", code: "unknown_call", reason: "no such call", call: m.call });
        log(`call ${m.call} ended after ${c.frames} frames from the page`);
        calls.delete(m.call);
        if (m.type === "hangup") sendJson({ type: "hangup", call: m.call, code: 200, reason: "Normal call clearing" });
        return;
      case "dtmf":
        if (!c) return sendJson({ type: "error", code: "unknown_call", reason: "no such call", call: m.call });
        [...String(m.digits)].forEach((d, i) => later(100 * (i + 1), () => sendJson({ type: "dtmf", call: m.call, digit: d })));
        return;
      case "hold":
      case "unhold":
        if (!c) return sendJson({ type: "error", code: "unknown_call", reason: "no such call", call: m.call });
        c.held = m.type === "hold";
        return sendJson({ type: c.held ? "held" : "unheld", call: m.call, by: "local" });
      case "stats":
        return sendJson({ type: "stats", call: m.call, packets_in: c ? c.frames : 0, packets_out: c ? c.frames : 0, dropped: 0, jitter_ms: 0, duration_ms: 0 });
      case "ping":
        return sendJson({ type: "pong" });
      default:
        sendJson({ type: "error", code: "bad_message", reason: "unknown message type" });
        return close(1008, "unknown message type");
    }
  };

  const onBinary = (data) => {
    if (!greeted) return close(1008, "hello first");
    if (data.length < 8 || data.length > 8 + 1024 || data[0] !== 1 || (data[1] !== 0 && data[1] !== 8)) {
      return close(1003, "bad audio frame");
    }
    const id = data.readUInt16BE(2);
    const c = calls.get(id);
    if (!c) return close(1008, `audio for unknown call ${id}`);
    if (!c.active) return close(1003, `audio for call ${id} before it was answered`);
    c.frames++;
    if (c.frames === 1) log(`first audio frame for call ${id}: ${data.length - 8} bytes codec ${data[1]}`);
    if (!c.held) socket.write(frame(2, data));
  };

  socket.on("data", (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (!closed && buf.length >= 2) {
      const fin = buf[0] & 0x80;
      const opcode = buf[0] & 0x0f;
      const masked = buf[1] & 0x80;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        const big = buf.readBigUInt64BE(2);
        if (big > 65536n) return close(1009, "too big");
        len = Number(big);
        off = 10;
      }
      if (!masked) return close(1002, "unmasked client frame");
      if (!fin) return close(1002, "fragments not supported by the mock");
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      buf = buf.subarray(off + 4 + len);
      if (opcode === 1) onText(payload.toString("utf8"));
      else if (opcode === 2) onBinary(payload);
      else if (opcode === 8) close(1000, "bye");
      else if (opcode === 9) socket.write(frame(10, payload));
    }
  });
  socket.on("close", () => {
    closed = true;
    for (const t of timers) clearTimeout(t);
  });
  socket.on("error", () => {});
}

server.listen(Number(opts.port ?? 0), "127.0.0.1", () => {
  console.log(JSON.stringify({ listening: `http://127.0.0.1:${server.address().port}/` }));
});
