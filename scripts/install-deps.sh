#!/usr/bin/env bash
# Installs what skybridge's test suite needs on a Debian/Ubuntu machine, only if missing:
# ffmpeg, baresip, kamailio, sip-tester (sipp), sox, chromium, nodejs/npm, GStreamer, socat,
# libopus-dev, libspeex-dev, pkg-config (apt), cargo-fuzz
# (cargo) and playwright-core (npm, into tests/browser/node_modules; it never downloads a
# browser: the tests drive Debian's /usr/bin/chromium).
# Idempotent: a machine that has everything is left untouched (no apt-get update).
# `--build-only`: just what building skybridge needs (the libraries it links), for
# scripts/run.sh.
set -euo pipefail
BUILD_ONLY=0
[ "${1:-}" = "--build-only" ] && BUILD_ONLY=1

log() { printf '[install-deps] %s\n' "$*"; }
die() { printf '[install-deps] ERROR: %s\n' "$*" >&2; exit 1; }

# package:command pairs; a package counts as present if dpkg knows it or its command exists.
# (GStreamer: gst-launch-1.0, rtpstreampay/rtpstreamdepay, tcpclientsink, souphttpsrc for the
# RFC 4571 tunnel tests; the plugin packages have no command of their own, dpkg decides.
# socat: the local TLS client in front of GStreamer for the tunnel over TLS.
# libopus-dev, libspeex-dev, pkg-config: the Opus and Speex codecs link Debian's libraries.)
PKGS=(ffmpeg:ffmpeg baresip:baresip kamailio:kamailio sip-tester:sipp sox:sox chromium:chromium nodejs:node npm:npm
      gstreamer1.0-tools:gst-launch-1.0 gstreamer1.0-plugins-base:gstreamer1.0-plugins-base
      gstreamer1.0-plugins-good:gstreamer1.0-plugins-good socat:socat
      libopus-dev:libopus-dev libspeex-dev:libspeex-dev pkg-config:pkg-config)
if [ "$BUILD_ONLY" = 1 ]; then
    PKGS=(libopus-dev:libopus-dev libspeex-dev:libspeex-dev pkg-config:pkg-config)
fi

missing=()
for pair in "${PKGS[@]}"; do
    pkg=${pair%%:*}
    cmd=${pair##*:}
    if command -v "$cmd" >/dev/null 2>&1 || dpkg -s "$pkg" >/dev/null 2>&1; then
        continue
    fi
    missing+=("$pkg")
done

if ((${#missing[@]})); then
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get: install them by hand"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]}: run as root or install sudo"
        SUDO="sudo"
    fi
    log "installing: ${missing[*]}"
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
else
    log "system packages present: ${PKGS[*]%%:*}"
fi
[ "$BUILD_ONLY" = 1 ] && exit 0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -d "$ROOT/tests/browser/node_modules/playwright-core" ]; then
    log "playwright-core present"
else
    log "installing playwright-core (tests/browser, from package-lock.json)"
    (cd "$ROOT/tests/browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"
if cargo fuzz --help >/dev/null 2>&1; then
    log "cargo-fuzz present"
else
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
