#!/usr/bin/env bash
# The appliance's base root file system: Debian 12 arm64 minbase with the packages of
# image/packages.txt, as a directory cached under $CACHE (keyed by that list), so that
# a rebuild of the image only lays the project's files over a copy of it.
#   image/rootfs.sh   # prints the directory's path
set -euo pipefail
# shellcheck source=image/lib.sh
source "$(dirname "$0")/lib.sh"

pkgs="$(grep -v '^\s*#' "$IMAGE_DIR/packages.txt" | grep -v '^\s*$' | paste -sd, -)"
# Keyed by the package list, the mirror, this script and the initramfs's modules.
key="$( (printf '%s\n%s\n' "$pkgs" "$MIRROR"; cat "$0" "$IMAGE_DIR/initramfs-modules") | sha256sum | cut -c1-12)"
base="$CACHE/rootfs-base-$key"
if [ ! -f "$base/.ringfence-complete" ]; then
  ensure_binfmt
  mkdir -p "$CACHE"
  rm -rf --one-file-system "$base.tmp"
  log "base rootfs (arm64 minbase, maintainer scripts under qemu-user; a few minutes)"
  # The initramfs: mkinitramfs under qemu-user is the slow part of the build (tens of
  # minutes with every module, twice). Installing, it holds no module (MODULES=list,
  # an empty list); at the end it is made once, with the modules of image/initramfs-modules.
  # shellcheck disable=SC2016 # \$1 is the hook's, expanded by mmdebstrap's shell
  debian_sources | mmdebstrap --quiet --arch=arm64 --variant=minbase \
    --include="$pkgs" \
    --essential-hook='mkdir -p "$1"/etc/initramfs-tools/conf.d && printf "MODULES=list\n" > "$1"/etc/initramfs-tools/conf.d/ringfence.conf' \
    --customize-hook="upload $IMAGE_DIR/initramfs-modules /etc/initramfs-tools/modules" \
    --customize-hook='chroot "$1" update-initramfs -u -k all' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -f "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*_Packages' \
    bookworm "$base.tmp" -
  touch "$base.tmp/.ringfence-complete"
  rm -rf --one-file-system "$base" && mv "$base.tmp" "$base"
  # older bases (another package list) are dropped
  find "$CACHE" -maxdepth 1 -name 'rootfs-base-*' ! -name "$(basename "$base")" -exec rm -rf --one-file-system {} +
fi
echo "$base"
