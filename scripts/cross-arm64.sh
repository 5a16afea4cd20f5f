#!/usr/bin/env bash
# Builds the recorder for the arm64 appliance on an x86_64 Debian machine and, with
# `--smoke`, runs it under qemu-user against a local test camera: init, 8 s of
# recording, check. Needs: rustup, and the packages it installs below.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
need=()
for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
rustup target list --installed | grep -q "^$TARGET$" || rustup target add "$TARGET"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
# Without the TPM feature: this machine has no arm64 libtss2 (the image build has, in its sysroot).
cargo build --release --target "$TARGET" -p recorder --no-default-features
BIN="target/$TARGET/release/recorder"
file "$BIN" 2>/dev/null || true
[ "${1:-}" = "--smoke" ] || exit 0

cargo build -p ringfence-tests --bin test-camera
WORK="$(mktemp -d /tmp/ringfence-arm64.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
target/debug/test-camera --port 0 --mount name=a,codec=h264 --mount name=b,codec=h265 > "$WORK/cam.out" 2>/dev/null &
for _ in $(seq 1 300); do [ "$(grep -c READY "$WORK/cam.out")" -ge 2 ] && break; sleep 0.2; done
url() { grep "READY .*/$1\$" "$WORK/cam.out" | awk '{print $2}'; }
cat > "$WORK/rf.toml" <<TOML
[storage]
path = "$WORK/store"
segment_secs = 4
[keys]
kek_file = "$WORK/kek"
[[cameras]]
id = "a"
url = "$(url a)"
[[cameras]]
id = "b"
url = "$(url b)"
TOML
RUN="qemu-aarch64-static -L /usr/aarch64-linux-gnu $BIN"
$RUN init --config "$WORK/rf.toml"
$RUN run --config "$WORK/rf.toml" 2> "$WORK/rec.err" &
sleep 8
kill -TERM $!; wait $! || true
$RUN check --config "$WORK/rf.toml"
