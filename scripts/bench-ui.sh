#!/usr/bin/env bash
# Review console benchmark in headless Chromium (release build): a site like the
# console tests' (test camera with an H.264 and an H.265 mount, `recorder run`,
# `viewer-api serve`, all on 127.0.0.1) driven by `bench-ui` (tests/src/bin/bench-ui.rs),
# which prints one table: the first page load (navigationStart→loadEventEnd, median of
# LOADS), the console's JS + CSS gzipped (gzip -9, and as the server sends it), the time
# from clicking "View" to the first frame for H.264 (target ≤ 300 ms) and for the H.265
# preview (≤ 1 s), and the viewer-api's CPU while one preview plays. Then, when the
# viewer-api has it, its own preview benchmark (`--example bench_preview`).
# LOADS=10 VIEWS=5 SIZE=1920x1080 KBPS=4000 by default.
set -euo pipefail
cd "$(dirname "$0")/.."
LOADS="${LOADS:-10}"; VIEWS="${VIEWS:-5}"; SIZE="${SIZE:-1920x1080}"; KBPS="${KBPS:-4000}"
BIN="${BIN:-target/release}"

cargo build --release -p recorder -p viewer-api -p ringfence-tests --bins --features viewer-api/testing
"$BIN/bench-ui" --web viewer-api/web --loads "$LOADS" --views "$VIEWS" --size "$SIZE" --kbps "$KBPS"

if [ -f viewer-api/examples/bench_preview.rs ]; then
  echo
  echo "H.264 preview of H.265 (cargo run --release -p viewer-api --example bench_preview):"
  cargo run --release -q -p viewer-api --example bench_preview
fi
