# Shared by the viewer-api benchmarks (sourced): helpers, and a store of synthetic
# footage. Expects WORK, BIN, FPS, KBPS, HOURS and CLIP_CACHE to be set.

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null \
  || echo $(( 20000 + RANDOM % 20000 )); }
ms() { date +%s%3N; }
iso() { date -u -d "@$(( $1 / 1000 )).$(printf %03d $(( $1 % 1000 )))" +%Y-%m-%dT%H:%M:%S.%3NZ; }

# Sets CLIP: a 10 s 1080p clip at KBPS CBR (cached), key frame every second, AUDs on.
make_clip() {
  mkdir -p "$CLIP_CACHE"
  CLIP="$CLIP_CACHE/bench-api-1080p-${KBPS}k.h264"
  if [ ! -s "$CLIP" ]; then
    ffmpeg -v error -f lavfi -i "testsrc2=size=1920x1080:rate=$FPS" -t 10 -pix_fmt yuv420p \
      -c:v libx264 -preset veryfast -profile:v high -bf 0 -g "$FPS" -keyint_min "$FPS" -sc_threshold 0 \
      -b:v "${KBPS}k" -minrate "${KBPS}k" -maxrate "${KBPS}k" -bufsize "$(( KBPS * 2 ))k" \
      -x264-params "aud=1:nal-hrd=cbr:force-cfr=1" -f h264 "$CLIP.tmp"
    mv "$CLIP.tmp" "$CLIP"
  fi
}

# Sets PORT and CONFIG (one camera `bench`, an [api] on PORT) and fills the store with
# HOURS of the clip in 60 s segments; the segment list goes to $WORK/segments.tsv.
fill_store() {
  make_clip
  PORT=$(free_port)
  CONFIG="$WORK/ringfence.toml"
  cat > "$CONFIG" <<TOML
[storage]
path = "$WORK/store"
segment_secs = 60
[keys]
kek_file = "$WORK/kek"
[[cameras]]
id = "bench"
url = "rtsp://127.0.0.1:9/bench"
[api]
addr = "127.0.0.1:$PORT"
TOML
  echo "filling $HOURS h of 1080p ${KBPS} kbit/s footage ..."
  "$BIN/viewer-api" bench-fill --config "$CONFIG" --camera bench --clip "$CLIP" \
    --hours "$HOURS" --segment-secs 60 --manifest "$WORK/segments.tsv" >/dev/null
}
