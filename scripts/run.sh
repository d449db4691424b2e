#!/usr/bin/env bash
# Builds and runs skybridge on a fresh Debian/Ubuntu machine: installs the system libraries the
# build links (libopus-dev, libspeex-dev, pkg-config) when they are missing, then
# `cargo run --release -- ARGS`. No arguments: the relay on its loopback defaults (README).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/install-deps.sh" --build-only
cd "$ROOT"
exec cargo run --release -- "$@"
