#!/usr/bin/env bash
# Mixed load (issue 12): CAMERAS cameras recording while PLAYERS officers play different
# 1-minute clips back to back and LIVE live views stream, for LOAD_SECS. The question:
# does serving footage cost recordings? Prints a table: the recorder's frames dropped
# and CPU, clip time to first byte (p50/p95), errors. The same recording without the
# load is measured first, in the same run, as the baseline. Release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
CAMERAS="${CAMERAS:-32}"; PLAYERS="${PLAYERS:-20}"; LIVE="${LIVE:-4}"
WARM_SECS="${WARM_SECS:-60}"; LOAD_SECS="${LOAD_SECS:-60}"
WIDTH="${WIDTH:-1920}"; HEIGHT="${HEIGHT:-1080}"; KBPS="${KBPS:-4000}"; FPS="${FPS:-25}"
BIN="${BIN:-target/release}"
WORK="$(mktemp -d /tmp/ringfence-mixed.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null \
  || echo $(( 20000 + RANDOM % 20000 )); }
ms() { date +%s%3N; }
iso() { date -u -d "@$(( $1 / 1000 )).$(printf %03d $(( $1 % 1000 )))" +%Y-%m-%dT%H:%M:%S.%3NZ; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# Frames dropped so far, all cameras, from the recorder's metrics.
dropped_now() { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk '/^ringfence_frames_dropped_total/{s+=$2} END{printf "%d", s+0}'; }
frames_now() { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk '/^ringfence_frames_total/{s+=$2} END{printf "%d", s+0}'; }

CAM_PORT=$(free_port); METRICS_PORT=$(free_port); PORT=$(free_port)
"$BIN/test-camera" --port "$CAM_PORT" \
  --mount "name=bench,codec=h264,width=$WIDTH,height=$HEIGHT,fps=$FPS,bitrate_kbps=$KBPS,gop=$FPS" \
  > "$WORK/camera.out" 2> "$WORK/camera.err" &
pids+=($!)
for _ in $(seq 1 600); do grep -q READY "$WORK/camera.out" 2>/dev/null && break; sleep 0.5; done
URL="rtsp://127.0.0.1:$CAM_PORT/bench"
CONFIG="$WORK/ringfence.toml"
{
  echo "[storage]"; echo "path = \"$WORK/store\""; echo "segment_secs = 60"; echo "max_bytes = 100000000000"
  echo "[keys]"; echo "kek_file = \"$WORK/kek\""
  echo "[metrics]"; echo "addr = \"127.0.0.1:$METRICS_PORT\""
  for i in $(seq 1 "$CAMERAS"); do echo "[[cameras]]"; echo "id = \"cam$i\""; echo "url = \"$URL\""; done
  echo "[api]"; echo "addr = \"127.0.0.1:$PORT\""
} > "$CONFIG"
"$BIN/recorder" init --config "$CONFIG" > /dev/null
users=$(( PLAYERS + LIVE ))
for i in $(seq 1 "$users"); do
  echo "mixed-pw-12345" | "$BIN/viewer-api" user add --config "$CONFIG" --name "officer$i" --role police >/dev/null
done
RUST_LOG=warn,recorder::run=info "$BIN/recorder" run --config "$CONFIG" 2> "$WORK/recorder.err" &
rec=$!; pids+=($rec)
start_ms=$(ms)

# --- baseline: recording alone
sleep 10
d0=$(dropped_now); t0=$(cpu_ticks "$rec"); f0=$(frames_now)
sleep "$(( WARM_SECS - 10 ))"
d1=$(dropped_now); t1=$(cpu_ticks "$rec"); f1=$(frames_now)

# --- the viewer-api and the load
RUST_LOG=warn "$BIN/viewer-api" serve --config "$CONFIG" 2> "$WORK/serve.err" &
api=$!; pids+=($api)
for _ in $(seq 1 200); do curl -sk -o /dev/null "https://127.0.0.1:$PORT/api/v1/openapi.json" && break; sleep 0.1; done
BASE="https://127.0.0.1:$PORT/api/v1"
# Signs in, retrying while sign-in is busy (argon2 runs two at a time; a crowd signing in
# at once is told to come back): each refusal is counted in $WORK/login-retries.
token() {
  local t
  for _ in $(seq 1 100); do
    local out
    out=$(curl -sk -H 'content-type: application/json' -w '\n%{http_code}' \
      -d "{\"username\":\"officer$1\",\"password\":\"mixed-pw-12345\"}" "$BASE/login" || true)
    t=$(echo "$out" | grep -o '"token":"[0-9a-f]*"' | cut -d'"' -f4 || true)
    [ -n "$t" ] && { echo "$t"; return; }
    echo "$out" | tr '\n' ' ' >> "$WORK/login-retries"; echo >> "$WORK/login-retries"; sleep 0.5
  done
}
player() { # officer number; plays random 1-minute clips of random cameras until the end
  local tok; tok=$(token "$1"); local end=$(( $(ms) + LOAD_SECS * 1000 ))
  while [ "$(ms)" -lt "$end" ]; do
    local cam=$(( 1 + RANDOM % CAMERAS ))
    local span=$(( $(ms) - start_ms - 75000 )); [ "$span" -lt 1000 ] && span=1000
    local from=$(( start_ms + 5000 + (RANDOM * 32768 + RANDOM) % span ))
    curl -sk -H "authorization: Bearer $tok" -o /dev/null -w '%{http_code} %{time_starttransfer} %{size_download}\n' \
      "$BASE/cameras/cam$cam/video.mp4?from=$(iso "$from")&to=$(iso $(( from + 60000 )))&case=BENCH-$1" || echo "000 0 0"
  done > "$WORK/player$1"
}
viewer() { # officer number; one live view for the whole load
  local tok; tok=$(token "$1")
  curl -sk -H "authorization: Bearer $tok" -o /dev/null --max-time "$LOAD_SECS" -w '%{http_code} %{time_starttransfer} %{size_download}\n' \
    "$BASE/cameras/cam$(( 1 + $1 % CAMERAS ))/live.mp4?case=BENCH-LIVE" > "$WORK/live$1" 2>/dev/null || true
}
lpids=()
d2=$(dropped_now); t2=$(cpu_ticks "$rec"); f2=$(frames_now); a0=$(cpu_ticks "$api")
for i in $(seq 1 "$PLAYERS"); do player "$i" & lpids+=($!); done
for i in $(seq $(( PLAYERS + 1 )) "$users"); do viewer "$i" & lpids+=($!); done
for p in "${lpids[@]}"; do wait "$p" || true; done
d3=$(dropped_now); t3=$(cpu_ticks "$rec"); f3=$(frames_now); a1=$(cpu_ticks "$api")

cat "$WORK"/player* > "$WORK/clips"
clips=$(wc -l < "$WORK/clips")
bad=$(awk '$1 != 200' "$WORK/clips" | wc -l)
pct() { awk '$1 == 200 {print $2}' "$WORK/clips" | sort -n | awk -v p="$1" '{a[NR]=$1} END{ if (NR) { i=int(NR*p); if (i<1) i=1; printf "%.0f", a[i]*1000 } else print "n/a" }'; }
mb=$(awk '{s+=$3} END{printf "%.0f", s/1e6}' "$WORK/clips")
live_ok=$(cat "$WORK"/live* 2>/dev/null | awk '$1 == 200 && $3 > 100000' | wc -l)
live_mb=$(cat "$WORK"/live* 2>/dev/null | awk '{s+=$3} END{printf "%.0f", s/1e6}')
retries=$(cat "$WORK/login-retries" 2>/dev/null | wc -l)
cpu() { awk -v t="$1" -v hz="$hz" -v s="$2" 'BEGIN{printf "%.2f", t/hz/s}'; }
base_secs=$(( WARM_SECS - 10 ))
echo
echo "Mixed load: $CAMERAS cameras ${WIDTH}x${HEIGHT} ${KBPS} kbit/s recording; $PLAYERS players of 1-minute clips and $LIVE live views for ${LOAD_SECS} s; $(nproc) cores"
printf "| %-44s | %14s | %14s |\n" "measure" "recording only" "under load"
printf "|%s|%s|%s|\n" "----------------------------------------------" "----------------" "----------------"
printf "| %-44s | %14s | %14s |\n" "frames recorded" "$(( f1 - f0 ))" "$(( f3 - f2 ))"
printf "| %-44s | %14s | %14s |\n" "frames dropped by the recorder (target 0)" "$(( d1 - d0 ))" "$(( d3 - d2 ))"
printf "| %-44s | %14s | %14s |\n" "recorder CPU (cores)" "$(cpu $(( t1 - t0 )) "$base_secs")" "$(cpu $(( t3 - t2 )) "$LOAD_SECS")"
printf "| %-44s | %14s | %14s |\n" "viewer-api CPU (cores)" "" "$(cpu $(( a1 - a0 )) "$LOAD_SECS")"
printf "| %-44s | %14s | %14s |\n" "clips played (MB sent)" "" "$clips ($mb)"
printf "| %-44s | %14s | %14s |\n" "clip first byte p50 / p95 ms (p95 <= 100)" "" "$(pct 0.5) / $(pct 0.95)"
printf "| %-44s | %14s | %14s |\n" "clip errors (target 0)" "" "$bad"
printf "| %-44s | %14s | %14s |\n" "live views that streamed (MB)" "" "$live_ok/$LIVE ($live_mb)"
printf "| %-44s | %14s | %14s |\n" "sign-ins told to retry (busy), of $users" "" "$retries"
[ "$retries" -eq 0 ] || { echo "sign-ins told to retry:"; cut -c1-160 "$WORK/login-retries" | sort | uniq -c; }
echo "live views (status, first byte s, bytes): $(cat "$WORK"/live* 2>/dev/null | tr '\n' ';')"
[ "$bad" -eq 0 ] || { echo "clip errors by status:"; awk '$1 != 200 {print $1}' "$WORK/clips" | sort | uniq -c; }
