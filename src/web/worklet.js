// skybridge softphone: audio worklet processors (loaded with audioWorklet.addModule).
//
//   mic ──► sb-capture: context rate ──low-pass + resample──► net rate ──► 20 ms frames ──► main
//   main ──► net-rate frames ──► sb-playout: jitter buffer ──► resample ──► context rate ──► speakers
//
// The net rate is 8 kHz for G.711 (160-sample frames) and 48 kHz for Opus (960-sample frames,
// encoded and decoded by WebCodecs on the main thread); `processorOptions.rate` sets it, and
// the playout also takes a `{rate}` message (it exists before the codec is agreed).
// Both directions use the same band-limited resampler: a Blackman-windowed sinc evaluated at the
// fractional input position (from a table with linear interpolation), cut off at 3.6 kHz for
// 8 kHz so that nothing above the 4 kHz Nyquist limit of G.711 aliases into the call (20 kHz
// for 48 kHz).

const DEFAULT_RATE = 8000;

/** Low-pass cut-off for a net rate. */
function cutoffFor(rate) {
  return rate <= 8000 ? 3600 : Math.min(20000, rate * 0.45);
}

/** Streaming windowed-sinc resampler from `inRate` to `outRate`. */
class Resampler {
  constructor(inRate, outRate, cutoffHz, zeroCrossings = 8) {
    this.step = inRate / outRate; // input samples per output sample
    // Cut-off in cycles per input sample, never above the lower of the two Nyquist limits.
    const fc = Math.min(cutoffHz, 0.5 * Math.min(inRate, outRate) * 0.95) / inRate;
    this.half = Math.ceil(zeroCrossings / (2 * fc)); // kernel half-width in input samples
    this.res = 64; // table points per input sample
    const n = this.half * this.res + 2;
    this.table = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const tau = i / this.res;
      const x = 2 * fc * tau;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const w = tau >= this.half ? 0 : blackman(tau / this.half);
      this.table[i] = 2 * fc * sinc * w;
    }
    // Normalise the DC gain (sum over integer taps) to exactly 1.
    let dc = this.table[0];
    for (let k = 1; k < this.half; k++) dc += 2 * this.table[k * this.res];
    for (let i = 0; i < n; i++) this.table[i] /= dc;
    this.buf = new Float32Array(4096);
    this.len = this.half; // start with `half` samples of silence of history
    this.t = this.half; // input position of the next output sample
  }

  /** Feeds `input` and calls `emit(sample)` for every output sample that became computable. */
  push(input, emit) {
    if (this.len + input.length > this.buf.length) {
      const bigger = new Float32Array(Math.max(this.buf.length * 2, this.len + input.length));
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
    const { buf, table, res, half, step } = this;
    let t = this.t;
    while (Math.floor(t) + half < this.len) {
      const base = Math.floor(t);
      let acc = 0;
      for (let k = base - half + 1; k <= base + half; k++) {
        const pos = Math.abs(t - k) * res;
        const i = Math.floor(pos);
        const frac = pos - i;
        acc += buf[k] * (table[i] + (table[i + 1] - table[i]) * frac);
      }
      emit(acc);
      t += step;
    }
    // Drop history no longer needed.
    const keepFrom = Math.max(0, Math.floor(t) - half);
    if (keepFrom > 0) {
      buf.copyWithin(0, keepFrom, this.len);
      this.len -= keepFrom;
      t -= keepFrom;
    }
    this.t = t;
  }
}

function blackman(r) {
  // r in [0, 1): distance from the centre as a fraction of the half-width.
  const x = Math.PI * (1 + r); // map centre to the window's peak
  return 0.42 - 0.5 * Math.cos(x) + 0.08 * Math.cos(2 * x);
}

/** Microphone → 8 kHz frames of 160 Float32 samples posted to the main thread. */
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const rate = options?.processorOptions?.rate ?? DEFAULT_RATE;
    const frame = rate / 50; // 20 ms
    this.rs = new Resampler(sampleRate, rate, cutoffFor(rate));
    this.frame = new Float32Array(frame);
    this.fill = 0;
    this.emit = (s) => {
      this.frame[this.fill++] = s;
      if (this.fill === frame) {
        this.port.postMessage(this.frame, [this.frame.buffer]);
        this.frame = new Float32Array(frame);
        this.fill = 0;
      }
    };
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      const ch = input[0];
      if (input.length > 1) {
        // Down-mix to mono.
        const mono = new Float32Array(ch.length);
        for (const c of input) for (let i = 0; i < c.length; i++) mono[i] += c[i] / input.length;
        this.rs.push(mono, this.emit);
      } else {
        this.rs.push(ch, this.emit);
      }
    }
    return true;
  }
}

/**
 * Net-rate frames from the main thread → jitter buffer → context rate.
 *
 * The buffer primes to `target` samples before playing, drops the oldest audio when more than
 * `max` samples are queued, and plays silence on underrun (then primes again). Every ~20 ms it
 * posts the net-rate samples it actually consumed, so the page can meter and record what was
 * played.
 */
class PlayoutProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.underruns = 0;
    this.dropped = 0;
    this.out = new Float32Array(1024);
    this.outLen = 0;
    this.emit = (s) => {
      if (this.outLen === this.out.length) return;
      this.out[this.outLen++] = s;
    };
    this.setRate(options?.processorOptions?.rate ?? DEFAULT_RATE);
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  setRate(rate) {
    this.rate = rate;
    this.target = rate * 0.06; // 60 ms
    this.max = rate * 0.2; // 200 ms
    this.queue = new Float32Array(rate); // 1 s ring
    this.head = 0;
    this.count = 0;
    this.priming = true;
    this.rs = new Resampler(rate, sampleRate, cutoffFor(rate));
    this.frame = rate / 50;
    this.played = new Float32Array(this.frame);
    this.playedLen = 0;
    this.chunk = new Float32Array(rate / 500); // 2 ms per resampler feed
  }

  onMessage(msg) {
    if (msg === "flush") {
      this.count = 0;
      this.priming = true;
      return;
    }
    if (msg && typeof msg.rate === "number") {
      if (msg.rate !== this.rate && msg.rate >= 8000 && msg.rate <= 48000) this.setRate(msg.rate);
      return;
    }
    if (!(msg instanceof Float32Array)) return;
    const ring = this.queue;
    for (let i = 0; i < msg.length; i++) {
      if (this.count === ring.length) {
        this.head = (this.head + 1) % ring.length;
        this.count--;
      }
      ring[(this.head + this.count) % ring.length] = msg[i];
      this.count++;
    }
    if (this.count > this.max) {
      const drop = this.count - this.target;
      this.head = (this.head + drop) % ring.length;
      this.count -= drop;
      this.dropped += drop;
    }
  }

  take(n) {
    const c = this.chunk;
    if (this.priming && this.count >= this.target) this.priming = false;
    for (let i = 0; i < n; i++) {
      if (!this.priming && this.count > 0) {
        c[i] = this.queue[this.head];
        this.head = (this.head + 1) % this.queue.length;
        this.count--;
        if (this.count === 0) {
          this.priming = true;
          this.underruns++;
        }
      } else {
        c[i] = 0;
      }
      this.played[this.playedLen++] = c[i];
      if (this.playedLen === this.frame) {
        this.port.postMessage(
          { played: this.played, rate: this.rate, queued: this.count, underruns: this.underruns, dropped: this.dropped },
          [this.played.buffer],
        );
        this.played = new Float32Array(this.frame);
        this.playedLen = 0;
      }
    }
    return c;
  }

  process(_inputs, outputs) {
    const output = outputs[0];
    const frames = output[0].length;
    while (this.outLen < frames) this.rs.push(this.take(this.chunk.length), this.emit);
    for (const ch of output) ch.set(this.out.subarray(0, frames));
    this.out.copyWithin(0, frames, this.outLen);
    this.outLen -= frames;
    return true;
  }
}

registerProcessor("sb-capture", CaptureProcessor);
registerProcessor("sb-playout", PlayoutProcessor);
