#!/bin/bash
# Load test of the RFC 4571 tunnel → RTP path against baselines measured in the same run
# (README, "Performance"). Not part of scripts/test.sh: timings are never asserted.
#
# usage: scripts/load.sh [N ...]          (default: 50 200 500 concurrent calls)
#   env: PPS=50 (packets/s per call), DUR=8 (measured seconds, after 2 s warm-up),
#        BENCH=shared/bench beside the repo (baseline.sh, baseline.c, rtpengine_sessions.py),
#        CARGO_TARGET_DIR (default: target), NO_RTPENGINE=1 to skip rtpengine.
#
# For each N: skybridge (pinned to core 1) with a generated loopback config whose dial-plan
# target `sink` is a tiny SIP UAS inside skybridge-load (pinned to core 0); its SDP sends every
# call's RTP to a UDP sink in the tool, so skybridge's work is TCP in → RTP/UDP out only. Then,
# at the same aggregate rate: the C forwarder (baseline.sh udp_epoll, paced, one socket per
# session; and tcp_plain once — its TCP sender is not paced, so that figure is at saturation)
# and rtpengine userspace (if installed). Everything is loopback-only and every process started
# here is stopped by its pid.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -z "${BENCH:-}" ]; then
  for d in "$root/../shared/bench" "$root/../../shared/bench"; do [ -f "$d/baseline.c" ] && BENCH=$d && break; done
fi
[ -f "${BENCH:-}/baseline.c" ] || { echo "no bench dir (set BENCH=…/shared/bench)" >&2; exit 2; }
PPS=${PPS:-50}
DUR=${DUR:-8}
NS=("$@")
[ ${#NS[@]} -gt 0 ] || NS=(50 200 500)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
CLK=$(getconf CLK_TCK)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet --bin skybridge --bin skybridge-load
SKY=$CARGO_TARGET_DIR/release/skybridge
LOAD=$CARGO_TARGET_DIR/release/skybridge-load
BASE=$work/skybridge-baseline
cc -O2 -o "$BASE" "$BENCH/baseline.c"

cat >"$work/load.toml" <<EOF
[rtmp]
listen = ""
[web]
listen = "127.0.0.1:18080"
[tunnel]
listen = "127.0.0.1:14571"
[http]
listen = "127.0.0.1:19090"
[sip]
listen = "127.0.0.1:15060"
[rtp]
port_min = 20000
port_max = 23999
inactivity_timeout_secs = 120
[auth]
required = false
anonymous_targets = ["sink"]
[builtin]
enabled = false
[limits]
max_calls = 1500
max_connections_per_ip = 1000
max_connections = 4000
[dialplan]
sink = "sip:sink@127.0.0.1:15090"
EOF
"$SKY" check-config "$work/load.toml" >/dev/null

# utime+stime ticks of a pid
ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
# wait (bounded) until a TCP port accepts
wait_port() { for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# field=value from a result line
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
stop_pid() { kill "$1" 2>/dev/null || true; for _ in $(seq 1 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; { wait "$1"; } 2>/dev/null || true; }

declare -A SKY_USR SKY_PPS SKY_LOSS SKY_NS SKY_CPU SKY_RSS EPOLL_NS RTPE_NS RTPE_PPS
for n in "${NS[@]}"; do
  rate=$((n * PPS))
  echo "== N=$n calls, $rate packets/s"
  # skybridge
  RUST_LOG=warn taskset -c 1 "$SKY" run --config "$work/load.toml" >"$work/sky-$n.log" 2>&1 &
  sky=$!; pids+=("$sky")
  wait_port 18080 && wait_port 14571
  line=$(taskset -c 0 timeout 60 "$LOAD" --calls "$n" --pps "$PPS" --web 127.0.0.1:18080 \
    --uas 127.0.0.1:15090 --sink-port 46000 --pid "$sky" --duration "$DUR" --clk-tck "$CLK" | grep '^result' || true)
  stop_pid "$sky"
  echo "skybridge: $line"
  SKY_PPS[$n]=$(field delivered_pps "$line"); SKY_LOSS[$n]=$(field loss_pct "$line")
  SKY_NS[$n]=$(field relay_ns_per_pkt "$line"); SKY_CPU[$n]=$(field relay_cpu_pct "$line"); SKY_USR[$n]=$(field relay_user_share_pct "$line")
  SKY_RSS[$n]=$(field rss_kb "$line")

  # C forwarder, paced, one UDP socket per session (the bench's udp_epoll)
  out=$(cd "$work" && TMPDIR=$work RUNS=1 DUR=$DUR RATE=$rate NP=$n timeout 60 "$BENCH/baseline.sh" udp_epoll 2>&1 || true)
  echo "$out" | grep fwdepoll || true
  EPOLL_NS[$n]=$(echo "$out" | sed -n 's/^fwdepoll.*ns_cpu_per_pkt=\([0-9]*\).*/\1/p')

  # rtpengine userspace, same rate and session count
  if [ -z "${NO_RTPENGINE:-}" ] && command -v rtpengine >/dev/null; then
    taskset -c 1 rtpengine --table=-1 -i 127.0.0.1 -n 127.0.0.1:2223 -m 20000 -M 29999 -f -E \
      --log-level=3 >"$work/rtpe-$n.log" 2>&1 &
    rtpe=$!; pids+=("$rtpe")
    sleep 0.5
    ports=$(timeout 60 python3 "$BENCH/rtpengine_sessions.py" "$n" || true)
    if [[ "$ports" =~ ^[0-9,]+$ ]]; then
      taskset -c 0 env DUR="$DUR" "$BASE" sink 40000 >"$work/rtpe-sink-$n" &
      sink=$!; pids+=("$sink")
      taskset -c 0 env DUR="$DUR" PORTS="$ports" SRCPORT=30500 "$BASE" sender 0 "$n" "$rate" >/dev/null &
      snd=$!; pids+=("$snd")
      sleep 2; t0=$(ticks "$rtpe"); s0=$(date +%s.%N)
      sleep "$DUR"; t1=$(ticks "$rtpe"); s1=$(date +%s.%N)
      wait "$sink" "$snd" || true
      rp=$(sed -n 's/^sink pps=\([0-9]*\).*/\1/p' "$work/rtpe-sink-$n")
      RTPE_PPS[$n]=$rp
      RTPE_NS[$n]=$(awk -v a="$t0" -v b="$t1" -v k="$CLK" -v s0="$s0" -v s1="$s1" -v p="$rp" \
        'BEGIN{ if (p > 0) printf "%.0f", 1e9 * (b - a) / k / (p * (s1 - s0)) }')
      echo "rtpengine: sink pps=$rp ns_cpu_per_pkt=${RTPE_NS[$n]}"
    else
      echo "rtpengine: sessions not created: ${ports:0:200}"
    fi
    stop_pid "$rtpe"
  fi
done

# C forwarder TCP→UDP (length-prefixed 172-byte frames): its sender is not paced (RATE is
# ignored), so this is the saturated cost per packet, measured once.
out=$(cd "$work" && TMPDIR=$work RUNS=1 DUR=$DUR RATE="$((NS[-1] * PPS))" timeout 60 "$BENCH/baseline.sh" tcp_plain 2>&1 || true)
echo "$out" | grep tcpfwd || true
TCP_NS=$(echo "$out" | sed -n 's/^tcpfwd.*ns_cpu_per_pkt=\([0-9]*\).*/\1/p')
TCP_PPS=$(echo "$out" | sed -n 's/^tcpfwd pps=\([0-9]*\).*/\1/p')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a > 0 && b > 0) printf "%.1f×", a / b; else printf "n/a" }'; }
echo
echo "| calls | pkt/s delivered | loss % | skybridge CPU % (user share) | skybridge ns/pkt | RSS MiB | C udp_epoll ns/pkt | ÷ C udp_epoll | C tcp_plain ns/pkt (sat.) | ÷ C tcp_plain | rtpengine pkt/s | rtpengine ns/pkt | ÷ rtpengine |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in "${NS[@]}"; do
  rss=$(awk -v k="${SKY_RSS[$n]:-0}" 'BEGIN{printf "%.1f", k / 1024}')
  echo "| $n | ${SKY_PPS[$n]:-?} | ${SKY_LOSS[$n]:-?} | ${SKY_CPU[$n]:-?} (${SKY_USR[$n]:-?} %) | ${SKY_NS[$n]:-?} | $rss | ${EPOLL_NS[$n]:-?} | $(ratio "${SKY_NS[$n]:-0}" "${EPOLL_NS[$n]:-0}") | ${TCP_NS:-?} | $(ratio "${SKY_NS[$n]:-0}" "${TCP_NS:-0}") | ${RTPE_PPS[$n]:-n/a} | ${RTPE_NS[$n]:-n/a} | $(ratio "${SKY_NS[$n]:-0}" "${RTPE_NS[$n]:-0}") |"
done
echo "(C tcp_plain at saturation: ${TCP_PPS:-?} pkt/s; CPU per packet = utime+stime over the measured window ÷ packets delivered)"
