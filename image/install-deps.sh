#!/usr/bin/env bash
# Host packages for `make image` and `make image-test` (Debian 12, x86_64; run as root
# or with sudo). qemu-system-arm comes from bookworm-backports: bookworm's 7.2 conflicts
# with the newer qemu-utils some machines carry; the backports source is added if missing.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
pkgs=(mmdebstrap qemu-user-static binfmt-support e2fsprogs genimage mtools dosfstools
      systemd gcc-aarch64-linux-gnu libc6-dev-arm64-cross pkg-config openssl curl
      openssh-client jq)
need=()
for p in "${pkgs[@]}" qemu-system-arm; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" \
    | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
fi
$SUDO apt-get -o DPkg::Lock::Timeout=900 update -qq
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq "${pkgs[@]}" >/dev/null
$SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -qq -t bookworm-backports qemu-system-arm >/dev/null
