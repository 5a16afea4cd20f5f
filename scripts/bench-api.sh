#!/usr/bin/env bash
# Playback benchmark of the viewer-api: a store with HOURS of 1080p 4 Mbit/s H.264
# (written directly with the recorder's segment writer and catalog by the hidden
# `viewer-api bench-fill`, from a pre-encoded clip looped), served by
# `viewer-api serve` (release) over HTTPS on localhost. Measures
#   - time to first byte of a 1-minute clip from a random point (median, p95; N requests)
#   - MP4 throughput of a 1-hour clip, beside `cat` of the same encrypted segment files.
# The page cache is not dropped (not possible everywhere): both sides run warm, as the
# table says. Prints a table with the targets.
set -euo pipefail
cd "$(dirname "$0")/.."
HOURS="${HOURS:-4}"; N="${N:-20}"; FPS=25; KBPS="${KBPS:-4000}"
BIN="${BIN:-target/release}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ringfence-bench-api.XXXXXX")"
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

t=$(ms)
fill_store
fill_secs=$(awk -v a="$t" -v b="$(ms)" 'BEGIN{printf "%.1f", (b-a)/1000}')
store_bytes=$(du -sb "$WORK/store/segments" | cut -f1)

echo "bench-pw-12345" | "$BIN/viewer-api" user add --config "$CONFIG" --name bench --role it >/dev/null
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
  -d '{"username":"bench","password":"bench-pw-12345"}' "$BASE/login" | grep -o '"token":"[0-9a-f]*"' | cut -d'"' -f4)
[ -n "$TOKEN" ] || { echo "login failed"; cat "$WORK/serve.err"; exit 1; }
AUTH="authorization: Bearer $TOKEN"

first_ms=$(head -1 "$WORK/segments.tsv" | cut -f1)
end_ms=$(tail -1 "$WORK/segments.tsv" | cut -f2)
clip_url() { echo "$BASE/cameras/bench/video.mp4?from=$(iso "$1")&to=$(iso "$2")&purpose=benchmark"; }

# --- time to first byte, 1-minute clips from random points
: > "$WORK/ttfb"
span=$(( end_ms - first_ms - 120000 ))
for i in $(seq 1 "$N"); do
  from=$(( first_ms + 60000 + (RANDOM * 32768 + RANDOM) % span ))
  curl -sk -H "$AUTH" -o /dev/null -w '%{http_code} %{time_starttransfer} %{size_download}\n' \
    "$(clip_url "$from" $(( from + 60000 )))" >> "$WORK/ttfb"
done
grep -vq '^200 ' "$WORK/ttfb" && { echo "a clip request failed:"; cat "$WORK/ttfb"; exit 1; }
read -r ttfb_med ttfb_p95 <<< "$(awk '{print $2*1000}' "$WORK/ttfb" | sort -n |
  awk '{v[NR]=$1} END{m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; p=v[int(0.95*NR+0.999)]; printf "%.0f %.0f", m, p}')"

# --- 1-hour clip vs cat of the same segment files (both warm)
from=$(( first_ms + (end_ms - first_ms - 3600000) / 2 )); to=$(( from + 3600000 ))
awk -v f="$from" -v t="$to" '$2 > f - 60000 && $1 < t {print $3}' "$WORK/segments.tsv" > "$WORK/hour.files"
cat_bytes=$(xargs cat < "$WORK/hour.files" | wc -c)   # warms the cache too
t=$(ms); xargs cat < "$WORK/hour.files" > /dev/null; cat_ms=$(( $(ms) - t ))
# first request builds the frame index (a pass over the hour), second is the same again
read -r code1 total1 first1 size1 <<< "$(curl -sk -H "$AUTH" -o /dev/null \
  -w '%{http_code} %{time_total} %{time_starttransfer} %{size_download}' "$(clip_url "$from" "$to")")"
read -r code2 total2 first2 size2 <<< "$(curl -sk -H "$AUTH" -o /dev/null \
  -w '%{http_code} %{time_total} %{time_starttransfer} %{size_download}' "$(clip_url "$from" "$to")")"
[ "$code1" = 200 ] && [ "$code2" = 200 ] || { echo "1-hour clip failed: $code1 $code2"; exit 1; }

# Cold: the disk's own limit, the comparison the target is about (needs root).
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; }
cold_cat_ms=""; cold_total=""; cold_size=""
if drop_caches; then
  t=$(ms); xargs cat < "$WORK/hour.files" > /dev/null; cold_cat_ms=$(( $(ms) - t ))
  drop_caches
  read -r code3 cold_total _ cold_size <<< "$(curl -sk -H "$AUTH" -o /dev/null \
    -w '%{http_code} %{time_total} %{time_starttransfer} %{size_download}' "$(clip_url "$from" "$to")")"
  [ "$code3" = 200 ] || { echo "cold 1-hour clip failed: $code3"; exit 1; }
fi

mbps() { awk -v b="$1" -v s="$2" 'BEGIN{ if (s <= 0) s = 0.001; printf "%.0f", b / s / 1e6 }'; }
cat_rate=$(mbps "$cat_bytes" "$(awk -v m="$cat_ms" 'BEGIN{print m/1000}')")
mp4_rate=$(mbps "$size2" "$total2")
mp4_rate_body=$(mbps "$size2" "$(awk -v a="$total2" -v b="$first2" 'BEGIN{print a-b}')")
verdict() { if awk -v a="$1" -v b="$2" "BEGIN{exit !(a $3 b)}"; then echo ok; else echo MISSED; fi; }

echo
echo "viewer-api playback benchmark: $HOURS h of 1080p ${KBPS} kbit/s H.264, 60 s segments, $(nproc) cores"
echo "store: $(( store_bytes / 1000000 )) MB in $(wc -l < "$WORK/segments.tsv") segments, filled in ${fill_secs} s; warm rows: page cache warm; cold rows: dropped first"
printf '%-52s %14s %14s %8s\n' "measure" "value" "target" "verdict"
printf '%-52s %11s ms %11s ms %8s\n' "first byte, 1-min clip, median of $N" "$ttfb_med" "<= 100" "$(verdict "$ttfb_med" 100 '<=')"
printf '%-52s %11s ms %14s %8s\n' "first byte, 1-min clip, p95" "$ttfb_p95" "" ""
printf '%-52s %9s MB/s %14s %8s\n' "cat of the hour's encrypted segments (warm)" "$cat_rate" "" ""
printf '%-52s %9s MB/s %14s %8s\n' "1-hour MP4 over HTTPS, whole request (warm)" "$mp4_rate" "" ""
if [ -n "$cold_cat_ms" ]; then
  cold_cat_rate=$(mbps "$cat_bytes" "$(awk -v m="$cold_cat_ms" 'BEGIN{print m/1000}')")
  cold_mp4_rate=$(mbps "$cold_size" "$cold_total")
  printf '%-52s %9s MB/s %14s %8s\n' "cat of the hour's encrypted segments (cold: disk)" "$cold_cat_rate" "" ""
  printf '%-52s %9s MB/s %9s MB/s %8s\n' "1-hour MP4 over HTTPS, whole request (cold)" "$cold_mp4_rate" "$(( cold_cat_rate / 2 ))" "$(verdict "$cold_mp4_rate" $(( cold_cat_rate / 2 )) '>=')"
else
  echo "(not root: page cache not dropped, the cold rows that compare with the disk are missing)"
fi
printf '%-52s %9s MB/s %14s %8s\n' "1-hour MP4, after the first byte" "$mp4_rate_body" "" ""
printf '%-52s %11.0f ms %14s %8s\n' "1-hour MP4, first byte (frame index pass)" "$(awk -v s="$first2" 'BEGIN{print s*1000}')" "" ""
printf '%-52s %11s MB %14s %8s\n' "1-hour MP4 size" "$(( size2 / 1000000 ))" "" ""
