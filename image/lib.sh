# Shared by image/build.sh and image/test.sh (sourced).
# shellcheck shell=bash disable=SC2034
IMAGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$IMAGE_DIR/.." && pwd)"
CACHE="${IMAGE_CACHE:-$REPO/target/image-cache}"
OUT="${IMAGE_OUT:-$REPO/target/image}"
TARGET=aarch64-unknown-linux-gnu
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

log() { printf '== %s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'image: %s\n' "$*" >&2; exit 1; }

# The arm64 hooks of mmdebstrap (and chroot commands) run through qemu-user.
ensure_binfmt() {
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
      || die "cannot mount binfmt_misc (run as root)"
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 2>/dev/null \
      || update-binfmts --import qemu-aarch64 \
      || die "cannot register qemu-aarch64 with binfmt_misc"
  fi
  grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "qemu-aarch64 binfmt disabled"
}

# The suites every mmdebstrap call uses (bookworm, its updates and security).
debian_sources() {
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
    "$MIRROR" "$MIRROR" "$SECURITY_MIRROR"
}
