#!/usr/bin/env bash
# The arm64 sysroot the cross-build links against (GStreamer, libtss2 and their
# dependencies from Debian's arm64 packages), extracted once into the cache, and the
# cross-build of `recorder` and `viewer-api` for aarch64 against it.
#   image/sysroot.sh sysroot   # only the sysroot
#   image/sysroot.sh           # sysroot (if absent) + cross-build; prints the binaries' dir
set -euo pipefail
# shellcheck source=image/lib.sh
source "$(dirname "$0")/lib.sh"

SYSROOT_PKGS=libc6-dev,libgstreamer1.0-dev,libgstreamer-plugins-base1.0-dev,libtss2-dev
SYSROOT="$CACHE/sysroot"

make_sysroot() {
  local stamp="$SYSROOT/.ringfence-pkgs"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$SYSROOT_PKGS" ]; then return; fi
  log "arm64 sysroot: $SYSROOT_PKGS"
  rm -rf "$SYSROOT" && mkdir -p "$CACHE"
  # extract: the packages and their dependencies unpacked, no maintainer scripts run
  debian_sources | mmdebstrap --quiet --arch=arm64 --variant=extract \
    --include="$SYSROOT_PKGS" bookworm "$SYSROOT" -
  echo "$SYSROOT_PKGS" > "$stamp"
}

cross_build() {
  rustup target list --installed | grep -q "^$TARGET$" || rustup target add "$TARGET"
  local libdir="$SYSROOT/usr/lib/aarch64-linux-gnu"
  export PKG_CONFIG_ALLOW_CROSS=1
  export PKG_CONFIG_SYSROOT_DIR="$SYSROOT"
  export PKG_CONFIG_LIBDIR="$libdir/pkgconfig:$SYSROOT/usr/share/pkgconfig"
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
  export RINGFENCE_SYSROOT="$SYSROOT"
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$IMAGE_DIR/cross-linker"
  # everything from the sysroot (the linker passes --sysroot); -rpath-link for the
  # libraries GStreamer's depend on
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-L$libdir -C link-arg=-Wl,-rpath-link,$libdir"
  export CARGO_TARGET_DIR="$REPO/target/cross-arm64"
  # no debug info: the image strips it anyway, and the disk is shared
  export CARGO_PROFILE_RELEASE_DEBUG=0
  log "cross-build recorder + viewer-api for $TARGET (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$REPO" && cargo build --release --target "$TARGET" -p recorder -p viewer-api \
     --bin recorder --bin viewer-api)
  echo "$CARGO_TARGET_DIR/$TARGET/release"
}

make_sysroot
[ "${1:-}" = sysroot ] && exit 0
cross_build
