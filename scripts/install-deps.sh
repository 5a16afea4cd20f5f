#!/usr/bin/env bash
# The one list of Debian packages Ringfence needs to build, run and test.
# Called by `make run`, `make test` and `.ci/run`; installs only what is missing.
set -euo pipefail

PACKAGES=(
  pkg-config
  # GStreamer: the test camera (RTSP server) and, later, export muxing.
  libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev
  libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly
  gstreamer1.0-libav
  # ffmpeg: pre-encodes test clips, checks that MP4s play, peer in benchmarks.
  ffmpeg
  # procps and curl: measuring the recorder in benchmarks (/proc, metrics).
  procps
  curl
  # openssl: the export tests check bundles as a stranger would (openssl pkeyutl).
  openssl
  # Headless Chromium and its WebDriver: the review console's browser tests
  # (tests/tests/console_ui.rs) and `make bench-ui`; fonts so pages render text.
  chromium
  chromium-driver
  fonts-dejavu-core
  # rsyslog with its TLS driver: the log collector the access log is forwarded to in
  # tests/tests/syslog.rs (RFC 5425 on loopback).
  rsyslog
  rsyslog-gnutls
  # smartmontools: smartctl, which the storage health probe runs; its test reads this
  # machine's own disk through the real smartctl (hardware/src/storage/linux.rs).
  smartmontools
  # TPM 2.0: libtss2-dev is the TSS (ESAPI, TCTIs) that the hardware crate's `tpm`
  # feature (on by default) links through tss-esapi, so the workspace build needs it;
  # swtpm (a software TPM) and swtpm-tools are what the TPM sealing tests run against
  # (hardware/src/tpm/tests.rs); tpm2-tools to inspect a TPM by hand (tpm2_pcrread).
  libtss2-dev
  swtpm
  swtpm-tools
  tpm2-tools
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
