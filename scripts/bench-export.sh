#!/usr/bin/env bash
# Export benchmark: one hour of one 1080p 4 Mbit/s H.264 camera, exported by the police
# through the API of `viewer-api serve` (release): sealed segments decrypted, muxed to
# MP4 by GStreamer, hashed, zipped with the signed manifest and sealed again. Beside it,
# in the same run, `ffmpeg -c copy` of the same frames from a plain Annex B file (no
# decryption, no hashing, no bundle). The store is filled quickly by the hidden
# `viewer-api bench-fill` (the recorder's segment writer and catalog, a pre-encoded clip
# looped). Both sides run with a warm page cache.
# Targets: export ≤ 1.0 × ffmpeg's time (issue 12), ≥ 100 × real time.
set -euo pipefail
cd "$(dirname "$0")/.."
HOURS="${HOURS:-1}"; FPS=25; KBPS="${KBPS:-4000}"
BIN="${BIN:-target/release}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ringfence-bench-export.XXXXXX")"
CLIP_CACHE="${RINGFENCE_CLIP_CACHE:-${TMPDIR:-/tmp}/ringfence-clips}"
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  [ -n "${service:-}" ] && kill "$service" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# bench-fill is only in a build with the feature `testing`: build one if this is not.
"$BIN/viewer-api" bench-fill --help > /dev/null 2>&1 || cargo build --release -p viewer-api --features testing
source scripts/bench-lib.sh
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b-a)/1000}'; }

fill_store
store_bytes=$(du -sb "$WORK/store/segments" | cut -f1)
first_ms=$(head -1 "$WORK/segments.tsv" | cut -f1)
end_ms=$(tail -1 "$WORK/segments.tsv" | cut -f2)
range_secs=$(( (end_ms - first_ms) / 1000 ))

# --- the same frames as one Annex B file, for ffmpeg (the clip looped as often)
loops=$(awk -v h="$HOURS" 'BEGIN{printf "%d", h*360}')
for _ in $(seq 1 "$loops"); do cat "$CLIP"; done > "$WORK/same.h264"

# warm both sides' inputs
cat "$WORK"/store/segments/bench/*.seg > /dev/null
cat "$WORK/same.h264" > /dev/null

echo "ffmpeg -c copy of the same frames ..."
t=$(ms)
ffmpeg -v error -y -framerate $FPS -f h264 -i "$WORK/same.h264" -c copy "$WORK/ffmpeg.mp4"
t2=$(ms)
ffmpeg_secs=$(secs "$t" "$t2")
rm -f "$WORK/ffmpeg.mp4"

echo "bench-pw-12345" | "$BIN/viewer-api" user add --config "$CONFIG" --name officer --role police >/dev/null
# The recorder's side (its service only: the store is filled), then the viewer-api.
RUST_LOG=warn "$BIN/recorder" serve --config "$CONFIG" 2> "$WORK/service.err" &
service=$!
for _ in $(seq 1 100); do [ -S "$WORK/recorder.sock" ] && break; sleep 0.1; done
RUST_LOG=warn "$BIN/viewer-api" serve --config "$CONFIG" 2> "$WORK/serve.err" &
server=$!
for _ in $(seq 1 100); do
  curl -sk -o /dev/null "https://127.0.0.1:$PORT/api/v1/openapi.json" && break; sleep 0.1
done
BASE="https://127.0.0.1:$PORT/api/v1"
TOKEN=$(curl -sk -H 'content-type: application/json' \
  -d '{"username":"officer","password":"bench-pw-12345"}' "$BASE/login" | grep -o '"token":"[0-9a-f]*"' | cut -d'"' -f4)
[ -n "$TOKEN" ] || { echo "login failed"; cat "$WORK/serve.err"; exit 1; }
AUTH="authorization: Bearer $TOKEN"

echo "export of ${range_secs} s through the API ..."
t=$(ms)
ID=$(curl -sk -H "$AUTH" -H 'content-type: application/json' \
  -d "{\"cameras\":[\"bench\"],\"from\":\"$(iso "$first_ms")\",\"to\":\"$(iso "$end_ms")\",\"case\":\"BENCH-1\",\"reason\":\"benchmark\"}" \
  "$BASE/exports" | grep -o '"id":"[0-9a-f]*"' | cut -d'"' -f4)
[ -n "$ID" ] || { echo "export request failed"; cat "$WORK/serve.err"; exit 1; }
while :; do
  st=$(curl -sk -H "$AUTH" "$BASE/exports/$ID")
  case "$st" in
    *'"state":"done"'*) break ;;
    *'"state":"failed"'*) echo "export failed: $st"; exit 1 ;;
  esac
  sleep 0.05
done
t2=$(ms)
export_secs=$(secs "$t" "$t2")
t=$(ms)
curl -sk -H "$AUTH" -o "$WORK/bundle.zip" "$BASE/exports/$ID/download"
t2=$(ms)
download_secs=$(secs "$t" "$t2")
bundle_bytes=$(stat -c %s "$WORK/bundle.zip")
"$BIN/viewer-api" verify-export "$WORK/bundle.zip" > "$WORK/verify.txt" || { cat "$WORK/verify.txt"; exit 1; }

ratio=$(awk -v a="$export_secs" -v b="$ffmpeg_secs" 'BEGIN{printf "%.2f", a/b}')
rt=$(awk -v r="$range_secs" -v a="$export_secs" 'BEGIN{printf "%.0f", r/a}')
echo
printf "%-46s %12s %12s\n" "export of ${range_secs} s, 1080p ${KBPS} kbit/s" "measured" "target"
printf "%-46s %12s %12s\n" "store (sealed segments), bytes" "$store_bytes" ""
printf "%-46s %12s %12s\n" "ffmpeg -c copy (Annex B → MP4), s" "$ffmpeg_secs" ""
printf "%-46s %12s %12s\n" "export request → done (bundle sealed), s" "$export_secs" ""
printf "%-46s %12s %12s\n" "export ÷ ffmpeg" "$ratio" "≤ 1.0"
printf "%-46s %12s %12s\n" "multiple of real time" "${rt}×" "≥ 100×"
printf "%-46s %12s %12s\n" "download (decrypt + HTTPS), s" "$download_secs" ""
printf "%-46s %12s %12s\n" "bundle, bytes (verify-export: ok)" "$bundle_bytes" ""
