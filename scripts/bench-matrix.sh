#!/bin/bash
# The transcoding matrix (README, "Performance"): runs benches/matrix.rs (criterion; every
# client codec × SIP codec cell on the call's real path, plus the same-run baseline
# `baseline/memcpy_160`, measured first and last) and prints markdown tables: the matrix (each
# cell pass-through, a µ⇄A-law lookup or transcoded, with calls per core), the per-direction
# costs behind it, and the cells under the 200 calls/core target.
#
# calls/core = 20 ms ÷ (client→SIP + SIP→client cost per 20 ms of audio); a pass-through
# direction costs nothing here. Timings are never asserted; on a shared machine single figures
# move by tens of percent between runs, so compare runs and the baseline.
#
# usage: scripts/bench-matrix.sh [criterion args …]   (e.g. --measurement-time 3)
#   env: STAT=median (default) or mean: which criterion point estimate to use;
#        CARGO_TARGET_DIR (default: target). Needs python3; the AAC row needs ffmpeg.
# Takes about 3–4 minutes (≈70 functions, 0.5 s warm-up + 1.5 s measurement each).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
STAT=${STAT:-median}
case "$STAT" in median | mean) ;; *) echo "STAT must be median or mean" >&2 && exit 2 ;; esac
command -v python3 >/dev/null || { echo "bench-matrix.sh needs python3" >&2; exit 2; }
crit=${CRITERION_HOME:-$CARGO_TARGET_DIR/criterion}
mkdir -p "$crit"
layout="$crit/matrix-layout.json"
rm -f "$layout"
start=$(date +%s)
t0=$SECONDS
MATRIX_LAYOUT=$layout cargo bench --bench matrix -- "$@" >&2
runtime=$((SECONDS - t0))

python3 - "$layout" "$crit" "$start" "$STAT" "$runtime" <<'PY'
import json, os, sys

layout_path, crit, start, stat, runtime = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
layout = json.load(open(layout_path))
frame_ns = layout["frame_ms"] * 1e6
TARGET = 200

def estimate(bench):
    """Criterion's point estimate (ns per iteration) of this run, or None."""
    path = os.path.join(crit, bench, "new", "estimates.json")
    try:
        if os.path.getmtime(path) < start:
            return None  # left over from an earlier run (filtered out of this one)
        with open(path) as f:
            return json.load(f)[stat]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return None

COLS = {
    "pcmu": "PCMU", "pcma": "PCMA", "g722": "G.722", "opus": "Opus",
    "l16/16000": "L16 16 kHz", "speex": "Speex NB 8 kHz", "speex/16000": "Speex WB 16 kHz",
}

def per_frame(d):
    """(ns per 20 ms of audio, or None if it could not be measured; kind)."""
    kind = d["kind"]
    if kind == "pass":
        return 0.0, kind
    if kind in ("unsupported", "unmeasured"):
        return None, kind
    ns = estimate(d["bench"])
    if ns is None:
        return None, "unmeasured"
    return ns * layout["frame_ms"] / d["audio_ms"], kind

def us(ns):
    return "—" if ns == 0 else f"{ns / 1000:.1f} µs" if ns >= 1000 else f"{ns:.0f} ns"

def calls(n):
    return f"{int(n):,}"

matrix, detail, under = [], [], []
for row in layout["rows"]:
    cells = []
    for c in row["cells"]:
        (a, ka), (b, kb) = per_frame(c["to_sip"]), per_frame(c["to_client"])
        col = COLS.get(c["sip"], c["sip"])
        if "unsupported" in (ka, kb):
            cells.append("not supported")
            continue
        if a is None or b is None:
            cells.append("not measured")
            continue
        if ka == kb == "pass":
            cells.append("pass-through")
            detail.append((row["label"], col, c["client_gets"], a, b, None))
            continue
        n = frame_ns / (a + b)
        what = "µ⇄A-law lookup" if "transcode" not in (ka, kb) else "transcoded"
        if ka == "pass" or kb == "pass":
            what += " one way"
        text = f"{what}, {calls(n)} calls/core"
        cells.append(f"**{text}**" if n < TARGET else text)
        detail.append((row["label"], col, c["client_gets"], a, b, n))
        if n < TARGET:
            under.append((row["label"], col, n))
    matrix.append((row["label"], cells))

base = [estimate(b) for b in layout["baseline"]]
base_s = " / ".join("?" if b is None else f"{b:.2f} ns" for b in base)

print(f"### Transcoding matrix (client codec ⇄ SIP codec; criterion {stat}s, calls per core = "
      f"20 ms ÷ both directions' cost per 20 ms)\n")
print("| client \\ SIP | " + " | ".join(COLS.get(c, c) for c in layout["columns"]) + " |")
print("|---|" + "---|" * len(layout["columns"]))
for label, cells in matrix:
    print(f"| {label} | " + " | ".join(cells) + " |")
print(f"\nSame-run baseline `memcpy_160` (first / last): {base_s}. Bench run: {runtime} s.\n")

print("| client | SIP | client is sent | client → SIP per 20 ms | SIP → client per 20 ms | calls / core |")
print("|---|---|---|---:|---:|---:|")
for label, col, gets, a, b, n in detail:
    print(f"| {label} | {col} | {gets} | {us(a)} | {us(b)} | {'pass-through' if n is None else calls(n)} |")

print()
if under:
    print(f"Cells under {TARGET} calls/core:")
    for label, col, n in under:
        print(f"- {label} ⇄ {col}: {calls(n)}")
else:
    print(f"Every measured cell reaches {TARGET} calls/core.")
PY
