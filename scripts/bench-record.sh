#!/usr/bin/env bash
# Recording benchmark: N cameras of pre-encoded 1080p 4 Mbit/s H.264 for SECS seconds,
# recorded by the Ringfence recorder, then by ffmpeg -c copy -f segment (how Frigate
# records) in the same run. Prints a table. Uses release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
CAMERAS="${CAMERAS:-32}"
SECS="${SECS:-60}"
WIDTH="${WIDTH:-1920}"; HEIGHT="${HEIGHT:-1080}"; KBPS="${KBPS:-4000}"; FPS="${FPS:-25}"
BIN="${BIN:-target/release}"
# ROUNDS=N runs the whole benchmark N times and ends with each round's CPU figures and
# the median ratio: this machine's speed (ffmpeg's figure most) moves between runs.
ROUNDS="${ROUNDS:-1}"
if [ "$ROUNDS" -gt 1 ]; then
  summary=()
  for r in $(seq 1 "$ROUNDS"); do
    out="$(ROUNDS=1 bash "$0")"
    echo "$out"
    cpu=$(echo "$out" | awk -F'|' '/CPU seconds per camera-minute/{gsub(/ /,"",$3); gsub(/ /,"",$4); print $3" "$4}')
    ratio=$(echo "$out" | awk -F'|' '/CPU ratio/{gsub(/ /,"",$3); print $3}')
    summary+=("$r $cpu $ratio")
  done
  echo
  echo "Rounds: $ROUNDS"
  printf "| %5s | %14s | %14s | %6s |\n" "round" "ringfence" "ffmpeg -c copy" "ratio"
  printf "|%s|%s|%s|%s|\n" "-------" "----------------" "----------------" "--------"
  for line in "${summary[@]}"; do
    read -r n a b q <<< "$line"
    printf "| %5s | %14s | %14s | %6s |\n" "$n" "$a" "$b" "$q"
  done
  median=$(printf '%s\n' "${summary[@]}" | awk '{print $4}' | sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}')
  echo "median ratio (target <= 0.25): $median"
  exit 0
fi
# A store cap (bytes) for long runs (SECS=600 at 128 cameras writes about 40 GB): the
# recorder's retention keeps its store under it, and ffmpeg's segments wrap around to
# the same share of disk (-segment_wrap), as a ring buffer would.
CAPPED="${MAX_BYTES:+yes}"
MAX_BYTES="${MAX_BYTES:-100000000000}"
WORK="$(mktemp -d /tmp/ringfence-bench.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null \
  || echo $(( 20000 + RANDOM % 20000 )); }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
# Context switches of every thread of a process (voluntary and not).
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/{s+=$2} END {print s+0}'; }
hz=$(getconf CLK_TCK)

CAM_PORT=$(free_port); METRICS_PORT=$(free_port)
"$BIN/test-camera" --port "$CAM_PORT" \
  --mount "name=bench,codec=h264,width=$WIDTH,height=$HEIGHT,fps=$FPS,bitrate_kbps=$KBPS,gop=$FPS" \
  > "$WORK/camera.out" 2> "$WORK/camera.err" &
cam_pid=$!; pids+=($cam_pid)
for _ in $(seq 1 600); do grep -q READY "$WORK/camera.out" 2>/dev/null && break; sleep 0.5; done
grep -q READY "$WORK/camera.out" || { echo "test camera did not start"; cat "$WORK/camera.err"; exit 1; }
URL="rtsp://127.0.0.1:$CAM_PORT/bench"

# --- Ringfence recorder
CONFIG="$WORK/ringfence.toml"
{
  echo "[storage]"; echo "path = \"$WORK/store\""; echo "segment_secs = 60"; echo "max_bytes = $MAX_BYTES"
  echo "[keys]"; echo "kek_file = \"$WORK/kek\""
  echo "[metrics]"; echo "addr = \"127.0.0.1:$METRICS_PORT\""
  for i in $(seq 1 "$CAMERAS"); do
    echo "[[cameras]]"; echo "id = \"cam$i\""; echo "url = \"$URL\""
  done
} > "$CONFIG"
"$BIN/recorder" init --config "$CONFIG" > /dev/null
cam_before=$(cpu_ticks "$cam_pid")
RUST_LOG=warn,recorder::run=info "$BIN/recorder" run --config "$CONFIG" 2> "$WORK/recorder.err" &
rec_pid=$!; pids+=($rec_pid)
sleep "$SECS"
rec_ticks=$(cpu_ticks "$rec_pid")
rec_user=$(user_ticks "$rec_pid")
rec_ctx=$(ctx_switches "$rec_pid")
rec_rss_kib=$(awk '/VmHWM/{print $2}' "/proc/$rec_pid/status")
kill -TERM "$rec_pid"; wait "$rec_pid" || true
cam_rec_ticks=$(( $(cpu_ticks "$cam_pid") - cam_before ))
# Totals from the recorder's own summary at exit (exact, after the last GOP is written).
sum_summary() { grep "camera summary" "$WORK/recorder.err" | sed -n "s/.* $1=\([0-9]*\).*/\1/p" | awk '{s+=$1} END {printf "%.0f", s+0}'; }
frames=$(sum_summary frames_received)
dropped=$(sum_summary frames_dropped)
bytes_in=$(sum_summary bytes_received)
bytes_disk=$(du -sb "$WORK/store/segments" | awk '{print $1}')
# The files on disk are the whole count (headers, frame indexes) unless retention deleted
# some of them; under a cap, the writers' own count of the chunks they wrote.
if [ -n "$CAPPED" ]; then bytes_out=$(sum_summary bytes_written); else bytes_out=$bytes_disk; fi
check_ok="yes"; "$BIN/recorder" check --config "$CONFIG" > "$WORK/check.out" 2>&1 || check_ok="NO"

# --- ffmpeg -c copy, the same cameras
mkdir -p "$WORK/ffmpeg"
# Segments a camera may keep within MAX_BYTES (60 s each at KBPS), at least 2.
wrap=$(awk -v m="$MAX_BYTES" -v n="$CAMERAS" -v k="$KBPS" 'BEGIN{w=int(m/n/(k*1000/8*60)); print (w<2?2:w)}')
fpids=()
cam_before=$(cpu_ticks "$cam_pid")
for i in $(seq 1 "$CAMERAS"); do
  ffmpeg -nostdin -loglevel error -rtsp_transport tcp -i "$URL" -c copy -f segment -segment_time 60 -segment_wrap "$wrap" \
    "$WORK/ffmpeg/cam$i-%03d.mp4" &
  fpids+=($!); pids+=($!)
done
sleep "$SECS"
ff_ticks=0; ff_rss_kib=0; ff_user=0; ff_ctx=0
for p in "${fpids[@]}"; do
  ff_ticks=$(( ff_ticks + $(cpu_ticks "$p") ))
  ff_user=$(( ff_user + $(user_ticks "$p") ))
  ff_ctx=$(( ff_ctx + $(ctx_switches "$p") ))
  ff_rss_kib=$(( ff_rss_kib + $(awk '/VmHWM/{print $2}' "/proc/$p/status") ))
done
for p in "${fpids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
for p in "${fpids[@]}"; do wait "$p" 2>/dev/null || true; done
cam_ff_ticks=$(( $(cpu_ticks "$cam_pid") - cam_before ))
ff_bytes=$(du -sb "$WORK/ffmpeg" | awk '{print $1}')

cam_minutes=$(awk -v n="$CAMERAS" -v s="$SECS" 'BEGIN{print n*s/60}')
rec_cpu=$(awk -v t="$rec_ticks" -v hz="$hz" -v m="$cam_minutes" 'BEGIN{printf "%.3f", t/hz/m}')
ff_cpu=$(awk -v t="$ff_ticks" -v hz="$hz" -v m="$cam_minutes" 'BEGIN{printf "%.3f", t/hz/m}')
ratio=$(awk -v a="$rec_ticks" -v b="$ff_ticks" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a"}')
wr=$(awk -v o="$bytes_out" -v i="$bytes_in" 'BEGIN{ if (i>0) printf "%.4f", o/i; else print "n/a"}')
# Issue 12: at most 24 MiB at 16 cameras, and 1 MiB per camera beyond.
rss_target=$(( CAMERAS > 16 ? 24 + CAMERAS - 16 : 24 ))
echo
echo "Recording benchmark: $CAMERAS cameras, ${WIDTH}x${HEIGHT} H.264 ${KBPS} kbit/s ${FPS} fps, ${SECS} s each, $(nproc) cores"
printf "| %-40s | %14s | %14s |\n" "measure" "ringfence" "ffmpeg -c copy"
printf "|%s|%s|%s|\n" "------------------------------------------" "----------------" "----------------"
printf "| %-40s | %14s | %14s |\n" "CPU seconds per camera-minute" "$rec_cpu" "$ff_cpu"
us() { awk -v u="$1" -v t="$2" -v hz="$hz" 'BEGIN{printf "%.1f / %.1f", u/hz, (t-u)/hz}'; }
printf "| %-40s | %14s | %14s |\n" "CPU s user / system (whole run)" "$(us "$rec_user" "$rec_ticks")" "$(us "$ff_user" "$ff_ticks")"
printf "| %-40s | %14s | %14s |\n" "context switches per second" "$(( rec_ctx / SECS ))" "$(( ff_ctx / SECS ))"
printf "| %-40s | %14s | %14s |\n" "CPU ratio ringfence/ffmpeg (target <= 0.25)" "$ratio" ""
printf "| %-40s | %14s | %14s |\n" "peak RSS MiB (target <= $rss_target, ffmpeg: sum)" "$(( rec_rss_kib / 1024 ))" "$(( ff_rss_kib / 1024 ))"
printf "| %-40s | %14s | %14s |\n" "frames received" "$frames" ""
printf "| %-40s | %14s | %14s |\n" "frames dropped (target 0)" "$dropped" ""
printf "| %-40s | %14s | %14s |\n" "bytes written / received (target <= 1.02)" "$wr" ""
printf "| %-40s | %14s | %14s |\n" "bytes on disk at the end" "$bytes_disk" "$ff_bytes"
printf "| %-40s | %14s | %14s |\n" "test camera CPU s during run" "$(awk -v t="$cam_rec_ticks" -v hz="$hz" 'BEGIN{printf "%.1f", t/hz}')" "$(awk -v t="$cam_ff_ticks" -v hz="$hz" 'BEGIN{printf "%.1f", t/hz}')"
printf "| %-40s | %14s | %14s |\n" "recorder check passes" "$check_ok" ""
