#!/usr/bin/env bash
# `make image`: the arm64 Debian 12 disk image of the appliance.
#   1. the arm64 sysroot and the cross-build of recorder + viewer-api (image/sysroot.sh)
#   2. the base root file system from image/packages.txt (image/rootfs.sh, cached)
#   3. a copy of it with the project's files (image/rootfs/), the binaries, the users and
#      the enabled units, as a read-only ext4 (mke2fs -d: no root mounts)
#   4. the data partition (store, /etc/ringfence) from a seed directory: image/site/
#      (site.conf, ringfence.toml) and the admins' SSH keys (SSH_AUTHORIZED_KEYS=file)
#   5. a GPT disk (genimage): ESP (kernel, initrd, command line), rf-root, rf-data
# Output in $IMAGE_OUT (default target/image): ringfence-arm64.img, vmlinuz, initrd.img,
# cmdline.txt. Run as root (mmdebstrap's root mode, chroot, file ownership).
#   IMAGE_SEED=DIR   seed of the data partition instead of image/site (the test's)
#   DATA_SIZE=1024M  size of the data partition in the image (grown on a board: README)
set -euo pipefail
# shellcheck source=image/lib.sh
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "run as root (or: sudo make image)"
SEED="${IMAGE_SEED:-$IMAGE_DIR/site}"
DATA_SIZE="${DATA_SIZE:-1024M}"
CMDLINE="root=PARTLABEL=rf-root ro rootwait console=ttyAMA0 panic=10"
REC_UID=901 API_UID=902
t0=$(date +%s)

ensure_binfmt
bins="$(bash "$IMAGE_DIR/sysroot.sh" | tail -n1)"
if [ ! -x "$bins/recorder" ] || [ ! -x "$bins/viewer-api" ]; then
  die "cross-build gave no binaries in $bins"
fi
base="$(bash "$IMAGE_DIR/rootfs.sh" | tail -n1)"

W="$OUT/work"
ROOT="$W/rootfs"
log "root file system: $base + image/rootfs + binaries"
rm -rf --one-file-system "$W" && mkdir -p "$W" "$OUT"
cp -a "$base" "$ROOT"
rm -f "$ROOT/.ringfence-complete"
cp -a --no-preserve=ownership "$IMAGE_DIR/rootfs/." "$ROOT/"
chmod 0440 "$ROOT/etc/sudoers.d/ringfence-admin"
for b in recorder viewer-api; do
  aarch64-linux-gnu-strip --strip-debug -o "$ROOT/usr/bin/$b" "$bins/$b"
  chmod 0755 "$ROOT/usr/bin/$b"
done
install -d "$ROOT/usr/share/doc/ringfence"
install -m 0644 "$REPO/README.md" "$ROOT/usr/share/doc/ringfence/README.md"
install -m 0644 "$IMAGE_DIR/README.md" "$ROOT/usr/share/doc/ringfence/appliance.md"
git -C "$REPO" describe --always --dirty > "$ROOT/etc/ringfence-version" 2>/dev/null || true

# users (fixed ids: the config's allow_uids names the viewer-api's), units, read-only root
chroot "$ROOT" /bin/sh -eu <<CHROOT
groupadd -r -g $REC_UID ringfence-recorder
useradd -r -u $REC_UID -g ringfence-recorder -d /nonexistent -M -s /usr/sbin/nologin ringfence-recorder
groupadd -r -g $API_UID ringfence-api
useradd -r -u $API_UID -g ringfence-api -d /nonexistent -M -s /usr/sbin/nologin ringfence-api
groupadd -r ringfence-admin
useradd -m -s /bin/bash -G ringfence-admin -c "Ringfence remote admin" admin
usermod -p '*' admin
systemctl enable ringfence-site.service ringfence-firstboot.service \
  ringfence-recorder.service ringfence-api.service systemd-networkd.service \
  nftables.service chrony.service ssh.service >/dev/null
systemctl mask systemd-random-seed.service apt-daily.timer apt-daily-upgrade.timer \
  dpkg-db-backup.timer systemd-networkd-wait-online.service >/dev/null
# state directories systemd's own units want, made now: the root is read-only
mkdir -p /var/lib/systemd/linger /var/lib/systemd/pstore /var/lib/systemd/rfkill /var/lib/systemd/backlight
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
echo ringfence > /etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 ringfence\n::1 localhost\n' > /etc/hosts
ln -sf /run/ringfence/resolv.conf /etc/resolv.conf
mkdir -p /etc/ringfence /var/lib/ringfence
CHROOT
# the API's uid in the seed config must match
grep -q "allow_uids = \[$API_UID\]" "$SEED/ringfence.toml" \
  || die "$SEED/ringfence.toml: [service] allow_uids must be [$API_UID] (ringfence-api)"

cp "$ROOT"/boot/vmlinuz-* "$OUT/vmlinuz"
cp "$ROOT"/boot/initrd.img-* "$OUT/initrd.img"
echo "$CMDLINE" > "$OUT/cmdline.txt"

log "file systems"
root_mb=$(( $(du -sm "$ROOT" | cut -f1) * 5 / 4 + 64 ))
rm -f "$W/root.ext4"
mke2fs -q -t ext4 -L rf-root -d "$ROOT" -E root_owner=0:0 "$W/root.ext4" "${root_mb}M" >/dev/null
rm -rf --one-file-system "$ROOT"   # the disk is shared: keep only what is still needed

DATA="$W/data"
install -d -m 0755 "$DATA" "$DATA/etc" "$DATA/etc/ssh" "$DATA/etc/ssh/authorized_keys"
install -m 0644 "$SEED/ringfence.toml" "$SEED/site.conf" "$DATA/etc/"
keys="${SSH_AUTHORIZED_KEYS:-$SEED/authorized_keys}"
if [ -f "$keys" ]; then
  install -m 0644 "$keys" "$DATA/etc/ssh/authorized_keys/admin"
else
  log "no SSH_AUTHORIZED_KEYS: nobody can sign in over SSH until keys are put in /etc/ringfence/ssh/authorized_keys/admin"
fi
rm -f "$W/data.ext4"
mke2fs -q -t ext4 -L rf-data -d "$DATA" -E root_owner=0:0 "$W/data.ext4" "$DATA_SIZE" >/dev/null

cp "$OUT/vmlinuz" "$OUT/initrd.img" "$OUT/cmdline.txt" "$W/"
mkdir -p "$W/empty"
cat > "$W/genimage.cfg" <<CFG
image esp.vfat {
  vfat {
    label = "RF-ESP"
    files = { "vmlinuz", "initrd.img", "cmdline.txt" }
  }
  size = 256M
}
image ringfence-arm64.img {
  hdimage { partition-table-type = "gpt" }
  partition esp {
    image = "esp.vfat"
    partition-type-uuid = "U"
    bootable = true
  }
  partition rf-root {
    image = "$W/root.ext4"
    partition-type-uuid = "b921b045-1df0-41c3-af44-4c6f280d3fae"
  }
  partition rf-data {
    image = "$W/data.ext4"
    partition-type-uuid = "0fc63daf-8483-4772-8e79-3d69d8477de4"
  }
}
CFG
log "disk image (genimage)"
rm -rf "$W/genimage-tmp" "$OUT/ringfence-arm64.img"
genimage --config "$W/genimage.cfg" --rootpath "$W/empty" --tmppath "$W/genimage-tmp" \
  --inputpath "$W" --outputpath "$OUT" >"$W/genimage.log" 2>&1 \
  || { cat "$W/genimage.log" >&2; die "genimage failed"; }
rm -rf --one-file-system "$W"
rm -f "$OUT/esp.vfat"
size=$(stat -c %s "$OUT/ringfence-arm64.img")
log "image: $OUT/ringfence-arm64.img ($((size / 1048576)) MiB; root $root_mb MiB, data $DATA_SIZE) in $(( $(date +%s) - t0 )) s"
