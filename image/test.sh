#!/usr/bin/env bash
# `make image-test`: builds the image with a test seed (the same root file system as
# `make image`; only the data partition differs: a test SSH key for `admin`, a site.conf
# whose admin and camera network is the qemu host, a camera on the host), boots it in
# qemu-system-aarch64 (-M virt, TCG, direct kernel boot, user networking with hostfwd,
# an i6300esb watchdog), and checks it over SSH, HTTPS and the serial console.
# Prints a table; exits non-zero if a check fails.
set -euo pipefail
# shellcheck source=image/lib.sh
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || die "run as root (or: sudo make image-test)"
T="$REPO/target/image-test"
t_start=$(date +%s)
mkdir -p "$T"
rm -f "$T/serial.log" "$T/disk.qcow2"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SSH_P=$(free_port); HTTPS_P=$(free_port); PROBE_P=$(free_port)

pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# the camera on the host (the guest reaches the host's loopback as 10.0.2.2)
log "test camera"
(cd "$REPO" && cargo build -q -p ringfence-tests --bin test-camera)
"$REPO/target/debug/test-camera" --port 0 --mount name=a,codec=h264 > "$T/camera.out" 2> "$T/camera.err" &
pids+=($!)
for _ in $(seq 1 600); do grep -q READY "$T/camera.out" && break; sleep 0.2; done
cam_url="$(grep -m1 'READY ' "$T/camera.out" | awk '{print $2}')"
[ -n "$cam_url" ] || die "test camera did not start: $(cat "$T/camera.err")"
cam_port="$(printf '%s' "$cam_url" | sed -E 's|rtsp://[^:/]+:([0-9]+)/.*|\1|')"
guest_cam_url="$(printf '%s' "$cam_url" | sed -E 's|rtsp://[^:/]+:|rtsp://10.0.2.2:|')"

# the test seed: the test key, the host as admin and camera network, the test camera
SEED="$T/seed"
rm -rf "$SEED" && mkdir -p "$SEED"
[ -f "$T/id_test" ] || ssh-keygen -q -t ed25519 -N '' -C ringfence-image-test -f "$T/id_test"
cp "$T/id_test.pub" "$SEED/authorized_keys"
sed -e 's|^ADMIN_NETS=.*|ADMIN_NETS="10.0.2.2/32"|' \
    -e 's|^CAMERA_NETS=.*|CAMERA_NETS="10.0.2.2/32"|' \
    -e "s|^CAMERA_PORTS=.*|CAMERA_PORTS=\"$cam_port\"|" \
    -e 's|^NTS_SERVERS=.*|NTS_SERVERS="time.cloudflare.com"|' \
    -e 's|^DNS_SERVERS=.*|DNS_SERVERS="10.0.2.3"|' \
    "$IMAGE_DIR/site/site.conf" > "$SEED/site.conf"
# the test's data partition is small: keep the ring inside it (the defaults want 1 GiB free)
sed -e 's|^segment_secs = .*|segment_secs = 4|' \
    -e 's|^min_free_bytes = .*|min_free_bytes = 67108864|' \
    -e 's|^max_bytes = .*|max_bytes = 268435456|' \
    -e '/^\[\[cameras\]\]/,$d' "$IMAGE_DIR/site/ringfence.toml" > "$SEED/ringfence.toml"
printf '[[cameras]]\nid = "a"\nname = "Test camera (host)"\nurl = "%s"\n' "$guest_cam_url" >> "$SEED/ringfence.toml"

t_build0=$(date +%s)
IMAGE_SEED="$SEED" IMAGE_OUT="$T/out" DATA_SIZE=512M bash "$IMAGE_DIR/build.sh"
t_build=$(( $(date +%s) - t_build0 ))
IMG="$T/out/ringfence-arm64.img"

# boot: a copy-on-write overlay keeps the built image pristine
qemu-img create -q -f qcow2 -F raw -b "$IMG" "$T/disk.qcow2"
log "boot (qemu-system-aarch64 -M virt, TCG): ssh on 127.0.0.1:$SSH_P, https on 127.0.0.1:$HTTPS_P"
t_boot0=$(date +%s)
qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on -smp 2 -m 2048 \
  -kernel "$T/out/vmlinuz" -initrd "$T/out/initrd.img" -append "$(cat "$T/out/cmdline.txt")" \
  -drive if=none,id=d0,file="$T/disk.qcow2",format=qcow2 -device virtio-blk-pci,drive=d0 \
  -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$SSH_P-:22,hostfwd=tcp:127.0.0.1:$HTTPS_P-:443,hostfwd=tcp:127.0.0.1:$PROBE_P-:8080" \
  -device virtio-net-pci,netdev=n0 -device i6300esb -device virtio-rng-pci \
  -serial "file:$T/serial.log" -display none -monitor none > "$T/qemu.log" 2>&1 &
qemu_pid=$!
pids+=("$qemu_pid")

SSH=(ssh -i "$T/id_test" -p "$SSH_P" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
     -o LogLevel=ERROR -o ConnectTimeout=10 -o BatchMode=yes -o IdentitiesOnly=yes admin@127.0.0.1)
g() { timeout 120 "${SSH[@]}" "$@"; }
up=""
for _ in $(seq 1 240); do
  kill -0 "$qemu_pid" 2>/dev/null || { tail -50 "$T/serial.log" >&2; die "qemu exited: $(cat "$T/qemu.log")"; }
  if g true 2>/dev/null; then up=1; break; fi
  sleep 2
done
t_boot=$(( $(date +%s) - t_boot0 ))
[ -n "$up" ] || { tail -80 "$T/serial.log" >&2; die "no SSH within 480 s"; }
g 'sudo systemctl is-system-running --wait' >/dev/null 2>&1 || true
t_ready=$(( $(date +%s) - t_boot0 ))

# from here on a failing command is a failed check, not the end of the run
set +e
rows=() failed=0
row() { # name PASS|FAIL|INFO detail
  rows+=("$(printf '%-52s %-5s %s' "$1" "$2" "$3")")
  [ "$2" != FAIL ] || failed=1
}
ok() { if [ "$1" = 0 ]; then echo PASS; else echo FAIL; fi; }
refused() { if g "$1" >/dev/null 2>&1; then echo FAIL; else echo PASS; fi; }  # the guest refuses $1

# 1. services and their users
for u in ringfence-recorder ringfence-api; do
  st="$(g "systemctl is-active $u.service" 2>/dev/null || true)"
  pid="$(g "systemctl show -p MainPID --value $u.service" 2>/dev/null || echo 0)"
  who="$(g "ps -o user:32= -p $pid" 2>/dev/null | tr -d ' ' || true)"
  [ "$st" = active ] && [ "$who" = "$u" ]; row "$u active under its own user" "$(ok $?)" "$st, pid $pid, user ${who:-?}"
done

# 2. a segment recorded (closed, in the catalog, checked by `recorder check`)
segs=0
for _ in $(seq 1 60); do
  segs="$(g 'sudo find /var/lib/ringfence/store/segments -name "*.seg" | wc -l' 2>/dev/null || echo 0)"
  [ "$segs" -ge 3 ] && break
  sleep 2
done
g 'sudo -u ringfence-recorder recorder check --config /etc/ringfence/ringfence.toml >/dev/null 2>&1'
rc=$?
[ "$segs" -ge 1 ] && [ "$rc" = 0 ]; row "a segment recorded (recorder check passes)" "$(ok $?)" "$segs segment files; recorder check exit $rc"

# 3. a clip over HTTPS through the forwarded port, signed in as the first-boot account
acct="$(grep -a -m1 -o 'RINGFENCE-FIRST-ACCOUNT user=[^ ]* password=[^ [:cntrl:]]*' "$T/serial.log" || true)"
user="$(printf '%s' "$acct" | sed -n 's/.*user=\([^ ]*\).*/\1/p')"
pw="$(printf '%s' "$acct" | sed -n 's/.*password=\([^ ]*\).*/\1/p')"
[ -n "$pw" ]; row "first-boot IT account on the serial console" "$(ok $?)" "user ${user:-none}"
inj="$(g "sudo journalctl -b --no-pager | grep -c -F -- '${pw:-none}' || true" 2>/dev/null)"
[ -n "$pw" ] && [ "$inj" = 0 ]; row "its password is not in the journal" "$(ok $?)" "$inj matches"
B="https://127.0.0.1:$HTTPS_P"
token="$(curl -sk --max-time 30 -X POST "$B/api/v1/login" -H 'content-type: application/json' \
  -d "{\"username\":\"$user\",\"password\":\"$pw\"}" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
clip_status=none clip_bytes=0
now="$(g 'date -u +%s' 2>/dev/null || date -u +%s)"
for back in 12 20 30 45; do
  from="$(date -u -d "@$((now - back))" +%Y-%m-%dT%H:%M:%SZ)"
  to="$(date -u -d "@$((now - back + 6))" +%Y-%m-%dT%H:%M:%SZ)"
  clip_status="$(curl -sk --max-time 60 -o "$T/clip.mp4" -w '%{http_code}' -H "Authorization: Bearer $token" \
    "$B/api/v1/cameras/a/video.mp4?from=$from&to=$to&purpose=image-test" || true)"
  clip_bytes=$(stat -c %s "$T/clip.mp4" 2>/dev/null || echo 0)
  [ "$clip_status" = 200 ] && head -c 16 "$T/clip.mp4" | grep -aq ftyp && break
done
[ "$clip_status" = 200 ] && head -c 16 "$T/clip.mp4" | grep -aq ftyp
row "a clip fetched over HTTPS (forwarded port)" "$(ok $?)" "HTTP $clip_status, $clip_bytes bytes MP4, ${from:-?}..${to:-?}"
fp_console="$(grep -a -m1 'TLS certificate SHA-256:' "$T/serial.log" | sed 's/.*SHA-256: //' | tr -d '\r')"
fp_served="$(echo | openssl s_client -connect "127.0.0.1:$HTTPS_P" 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2)"
[ -n "$fp_served" ] && [ "$fp_served" = "$fp_console" ]; row "served TLS certificate is the first boot's" "$(ok $?)" "${fp_served:0:23}..."

# 4. systemd-analyze security (in the guest, on the loaded units)
for u in ringfence-recorder ringfence-api; do
  score="$(g "systemd-analyze security $u.service 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p'" 2>/dev/null || true)"
  awk -v s="${score:-99}" 'BEGIN{exit !(s <= 2.0)}'; row "$u systemd-analyze security <= 2.0" "$(ok $?)" "${score:-?}"
done

# 5. the API's user cannot write the store; the recorder's cannot write the API's state
row "ringfence-api cannot write the store" \
  "$(refused 'sudo -u ringfence-api touch /var/lib/ringfence/store/x || sudo -u ringfence-api sh -c ": >> /var/lib/ringfence/store/catalog.sqlite"')" \
  "new file and append to the catalog refused"
row "ringfence-api cannot read the KEK" "$(refused 'sudo -u ringfence-api cat /etc/ringfence/keys/kek')" "read refused"
row "ringfence-recorder cannot write the access log" \
  "$(refused 'sudo -u ringfence-recorder sh -c ": >> /var/lib/ringfence/api/audit.sqlite"')" "append refused"

# 6. firewall: a port nothing opens (a listener on 8080, forwarded) is refused; out only RTSP
g 'sudo systemd-run -q --unit=rf-probe -p DynamicUser=yes /usr/bin/systemd-socket-activate -l 8080 -a --inetd /bin/cat' >/dev/null 2>&1 || true
sleep 1
inside="$(g 'exec 3<>/dev/tcp/127.0.0.1/8080; echo probe >&3; timeout 3 head -n1 <&3' 2>/dev/null || true)"
outside="$( (exec 3<>"/dev/tcp/127.0.0.1/$PROBE_P" && echo probe >&3 && timeout 5 head -n1 <&3) 2>/dev/null || true)"
[ "$inside" = probe ] && [ "$outside" != probe ]
row "firewall refuses a port it does not open (8080)" "$(ok $?)" "inside the box: ${inside:-none}; from the host: ${outside:-refused}"
outbound="$(g "timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/$SSH_P' 2>&1 && echo open || echo refused" 2>/dev/null || true)"
rtsp="$(g "timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/$cam_port' 2>&1 && echo open || echo refused" 2>/dev/null || true)"
[ "${outbound##*$'\n'}" = refused ] && [ "${rtsp##*$'\n'}" = open ]
row "firewall: out only RTSP to the camera network" "$(ok $?)" "to host:$SSH_P ${outbound##*$'\n'}, to camera:$cam_port ${rtsp##*$'\n'}"
g 'sudo systemctl stop rf-probe.service' >/dev/null 2>&1 || true

# 7. SSH: key only, no root
pwd_auth="$(ssh -p "$SSH_P" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
  -o PreferredAuthentications=password,keyboard-interactive -o PubkeyAuthentication=no admin@127.0.0.1 true 2>&1 || true)"
root_key="$(ssh -i "$T/id_test" -p "$SSH_P" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes root@127.0.0.1 true 2>&1 && echo allowed || echo refused)"
printf '%s' "$pwd_auth" | grep -q 'Permission denied (publickey)' && [ "${root_key##*$'\n'}" = refused ]
row "SSH: key only, no root login" "$(ok $?)" "password: $(printf '%s' "$pwd_auth" | grep -o 'Permission denied ([a-z,-]*)' | head -n1); root: ${root_key##*$'\n'}"

# 8. read-only root, NTS configured, hardware watchdog
row "root file system read-only" "$(refused 'sudo touch /usr/ringfence-ro-test')" "$(g 'findmnt -no OPTIONS /' 2>/dev/null | cut -d, -f1)"
nts="$(g 'cat /run/ringfence/chrony/nts.sources; systemctl is-active chrony' 2>/dev/null | tr '\n' ' ')"
printf '%s' "$nts" | grep -q 'nts.*active'; row "chrony active with NTS sources" "$(ok $?)" "$nts"
sync="$(g "sudo chronyc -n -c sources 2>/dev/null | awk -F, '\$2==\"*\" {print \"synced to \"\$3}'; sudo chronyc -n -c authdata 2>/dev/null | awk -F, '{print \$1\" \"\$2\" cookies=\"\$9}'" 2>/dev/null | tr '\n' ' ')"
row "chrony synchronised over NTS (needs the internet)" INFO "${sync:-not synchronised}"
wd="$(g 'cat /sys/class/watchdog/watchdog0/identity /sys/class/watchdog/watchdog0/state 2>/dev/null; systemctl show -p RuntimeWatchdogUSec --value' 2>/dev/null | tr '\n' ' ')"
printf '%s' "$wd" | grep -q active; row "systemd drives the hardware watchdog" "$(ok $?)" "$wd"
failed_units="$(g 'systemctl --failed --no-legend --plain | cut -d" " -f1 | tr "\n" " "' 2>/dev/null || true)"
row "failed units" INFO "${failed_units:-none}"

# 9. a SIGSTOPped recorder is restarted by its watchdog (WatchdogSec=20s)
pid0="$(g 'systemctl show -p MainPID --value ringfence-recorder.service')"
g "sudo kill -STOP $pid0"
t_stop=$(date +%s) pid1="$pid0"
for _ in $(seq 1 45); do
  sleep 2
  pid1="$(g 'systemctl show -p MainPID --value ringfence-recorder.service' 2>/dev/null || echo "$pid0")"
  st="$(g 'systemctl is-active ringfence-recorder.service' 2>/dev/null || true)"
  [ "$pid1" != "$pid0" ] && [ "$pid1" != 0 ] && [ "$st" = active ] && break
done
t_wd=$(( $(date +%s) - t_stop ))
why="$(g "sudo journalctl -u ringfence-recorder.service --no-pager | grep -m1 -o 'Watchdog timeout[^.]*'" 2>/dev/null || true)"
[ "$pid1" != "$pid0" ] && [ "$st" = active ] && [ -n "$why" ]
row "SIGSTOPped recorder restarted by its watchdog" "$(ok $?)" "pid $pid0 -> $pid1 in ${t_wd} s (${why:-no watchdog message})"

boot_an="$(g 'systemd-analyze time 2>/dev/null | head -n1' 2>/dev/null || true)"

# 10. a second boot: first boot does not run again, the store and the services come back
segs0="$(g 'sudo find /var/lib/ringfence/store/segments -name "*.seg" | wc -l' 2>/dev/null || echo 0)"
g 'sudo systemctl reboot' >/dev/null 2>&1
sleep 10
up2=""
for _ in $(seq 1 120); do
  if g 'systemctl is-active -q ringfence-recorder.service ringfence-api.service' 2>/dev/null; then up2=1; break; fi
  sleep 2
done
fb="$(g 'systemctl show -p ConditionResult --value ringfence-firstboot.service' 2>/dev/null || true)"
printed="$(grep -a -c 'RINGFENCE-FIRST-ACCOUNT' "$T/serial.log")"
segs2="$(g 'sudo find /var/lib/ringfence/store/segments -name "*.seg" | wc -l' 2>/dev/null || echo 0)"
[ -n "$up2" ] && [ "$fb" = no ] && [ "$printed" = 1 ] && [ "$segs2" -ge "$segs0" ]
row "second boot: services back, first boot not rerun" "$(ok $?)" "services ${up2:+active}; first-boot condition ${fb:-?}; password printed $printed time(s); segments $segs0 -> $segs2"
size_app=$(stat -c %s "$IMG"); size_used=$(du -k "$IMG" | cut -f1)
g 'sudo systemctl poweroff' >/dev/null 2>&1 || true
for _ in $(seq 1 30); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 1; done

echo
printf '%-52s %-5s %s\n' CHECK RESULT DETAIL
printf '%s\n' "${rows[@]}"
echo
echo "image:     $IMG: $((size_app / 1048576)) MiB ($((size_used / 1024)) MiB allocated)"
echo "build:     ${t_build} s (make image-test's image; the cached sysroot, cross-build and base rootfs not counted when warm)"
echo "boot:      SSH up ${t_boot} s after qemu started, system running ${t_ready} s (TCG); guest: ${boot_an:-?}"
echo "test:      $(( $(date +%s) - t_start )) s in all"
echo "serial:    $T/serial.log"
[ "$failed" = 0 ] || { echo "image-test: FAILED" >&2; exit 1; }
echo "image-test: all checks passed"
