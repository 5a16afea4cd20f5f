#!/usr/bin/env bash
# `make run`: a synthetic RTSP camera and the recorder on built-in defaults, under ./demo.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/debug
DEMO="$PWD/demo"
mkdir -p "$DEMO"
CAM_PORT="${CAM_PORT:-8554}"
METRICS_PORT="${METRICS_PORT:-9810}"
API_PORT="${API_PORT:-8443}"
CONFIG="$DEMO/ringfence.toml"
if [ ! -f "$CONFIG" ]; then
  cat > "$CONFIG" <<TOML
# Demo configuration written by \`make run\`; edit freely, it is kept between runs.
[storage]
path = "$DEMO/store"
retention = "30d"
max_bytes = 2000000000
segment_secs = 60
sync_interval_ms = 1000
[keys]
kek_file = "$DEMO/kek"
[metrics]
addr = "127.0.0.1:$METRICS_PORT"
[api]
addr = "127.0.0.1:$API_PORT"
[[cameras]]
id = "demo-h264"
name = "Demo camera (H.264)"
url = "rtsp://127.0.0.1:$CAM_PORT/demo-h264"
[[cameras]]
id = "demo-h265"
name = "Demo camera (H.265)"
url = "rtsp://127.0.0.1:$CAM_PORT/demo-h265"
TOML
fi

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "== starting the test camera on rtsp://127.0.0.1:$CAM_PORT (pre-encoding clips the first time)"
"$BIN/test-camera" --port "$CAM_PORT" \
  --mount name=demo-h264,codec=h264,width=1280,height=720,fps=25,bitrate_kbps=2000 \
  --mount name=demo-h265,codec=h265,width=640,height=360,fps=25,bitrate_kbps=800 &
pids+=($!)
sleep 1
"$BIN/recorder" init --config "$CONFIG"
CREDS="$DEMO/credentials.txt"
if [ ! -f "$CREDS" ]; then
  umask 077
  : > "$CREDS"
  for spec in officer:police it-admin:it auditor:auditor contractor:contractor; do
    name="${spec%%:*}"; role="${spec##*:}"
    pw="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    printf '%s\n' "$pw" | "$BIN/viewer-api" user add --config "$CONFIG" --name "$name" --role "$role" >/dev/null
    echo "$name ($role): $pw" >> "$CREDS"
  done
fi
"$BIN/recorder" run --config "$CONFIG" &
pids+=($!)
"$BIN/viewer-api" serve --config "$CONFIG" &
pids+=($!)
sleep 2
echo
echo "== Ringfence is recording. Open the review console:"
echo
echo "     https://127.0.0.1:$API_PORT/     (self-signed certificate: accept it once in the browser)"
echo
echo "   demo logins ($CREDS):"
sed 's/^/     /' "$CREDS"
echo
echo "   Footage goes, encrypted, to $DEMO/store. Every look at it is in the access log."
echo "   API:              https://127.0.0.1:$API_PORT/api/v1/openapi.json  (curl -k)"
echo "   a clip with curl: curl -k -X POST https://127.0.0.1:$API_PORT/api/v1/login -H 'content-type: application/json' \\"
echo "                       -d '{\"username\":\"officer\",\"password\":\"<from above>\"}'   # gives TOKEN"
echo "                     curl -k -H 'Authorization: Bearer TOKEN' -o clip.mp4 \\"
echo "                       'https://127.0.0.1:$API_PORT/api/v1/cameras/demo-h264/video.mp4?from=<RFC 3339>&to=<RFC 3339>&case=DEMO-1'"
echo "   metrics:          curl http://127.0.0.1:$METRICS_PORT/metrics"
echo "   check the store:  $BIN/recorder check --config $CONFIG"
echo "   stop:             Ctrl-C"
echo
wait "${pids[1]}"
