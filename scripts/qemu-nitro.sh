#!/usr/bin/env bash
# Provide what the QEMU nitro-enclave boot check (test/qemu-boot.test.ts) needs, on a fresh
# Debian bookworm machine, without installing anything outside Debian:
#   1. a qemu-system-x86_64 with the `nitro-enclave` machine (Debian's own QEMU is built without
#      libcbor and lacks it), built from the Debian source package of bookworm-backports;
#   2. Debian's cloud kernel (vmlinuz + the nsm / virtio_mmio modules), downloaded and unpacked,
#      never installed;
#   3. busybox from busybox-static, downloaded and unpacked.
# Only what the machine needs is compiled (--without-default-devices/-features, TCG and KVM, one
# target). Whether KVM can boot the machine depends on the host (docs/qemu-boot-check.md): the
# runner tries it where /dev/kvm opens and falls back to TCG.
# Everything is cached OUTSIDE the repo under $NLE_QEMU_CACHE (default /var/cache/nle/qemu-nitro)
# and reused when present; a missing piece is rebuilt. The result is described in
# $NLE_QEMU_CACHE/manifest.json, which the test reads. Idempotent; safe to run in CI.
# See shared notes "qemu-nitro-enclave.md" for why each step is what it is.
set -euo pipefail

CACHE="${NLE_QEMU_CACHE:-/var/cache/nle/qemu-nitro}"
QEMU_SERIES="${NLE_QEMU_SERIES:-10.0}"          # the Debian source version must start with this
KERNEL_META="${NLE_QEMU_KERNEL_META:-linux-image-6.12-cloud-amd64}"
JOBS="$(nproc)"
export DEBIAN_FRONTEND=noninteractive

t_all=$(date +%s)
log() { printf '[qemu-nitro] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
elapsed() { echo $(( $(date +%s) - $1 )); }

[ "$(id -u)" = 0 ] || die "run as root (apt-get is needed)"
. /etc/os-release
[ "${ID:-}" = debian ] || die "this script supports Debian only (found ${ID:-unknown})"
CODENAME="${VERSION_CODENAME:?}"
BACKPORTS="${CODENAME}-backports"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

# shellcheck source=scripts/apt-wait.sh
. "$(dirname "$0")/apt-wait.sh"

APT_UPDATED=0
apt_update() {
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    apt_run apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
}

ensure_backports_sources() {
  local f=/etc/apt/sources.list.d/nle-qemu-backports.sources need=0
  if [ ! -f "$f" ]; then
    log "adding $BACKPORTS (deb + deb-src) to apt sources"
    cat >"$f" <<SRC
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: $BACKPORTS
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    need=1
  fi
  # The backports indexes must be there (a fresh machine or a cleaned apt list).
  local src_versions
  src_versions="$(apt-cache showsrc qemu 2>/dev/null || true)"
  grep -q "^Version: .*${QEMU_SERIES//./\\.}" <<<"$src_versions" || need=1
  if [ "$need" = 1 ]; then APT_UPDATED=0; apt_update; fi
}

# Install packages that are missing. Arguments: [-t suite] pkg...
apt_install() {
  local target=()
  if [ "$1" = -t ]; then target=(-t "$2"); shift 2; fi
  local missing=()
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_update
    log "apt-get install ${target[*]} ${missing[*]}"
    apt_run apt-get install -y -qq --no-install-recommends "${target[@]}" "${missing[@]}" || die "apt-get install failed"
  fi
}

# ---------------------------------------------------------------------------------------------
# Runtime needs of the binary (libraries, firmware for the microvm BIOS) — also on a cache hit.
RUNTIME_PKGS=(libcbor0.8 libglib2.0-0 libpixman-1-0 libgnutls30 libfdt1 seabios xz-utils python3)
QEMU_BIN="$CACHE/qemu/bin/qemu-system-x86_64"

build_qemu() {
  local t0 t1 work src ver
  t0=$(date +%s)
  ensure_backports_sources
  apt_install build-essential dpkg-dev libcbor-dev libglib2.0-dev libpixman-1-dev libgnutls28-dev ninja-build \
    libfdt-dev pkg-config python3-venv flex bison
  apt_install -t "$BACKPORTS" meson python3-pycotap
  ver="$(apt-cache showsrc qemu | awk '/^Version:/{print $2}' | grep -E "^(1:)?${QEMU_SERIES//./\\.}" | sort -V | tail -1)"
  [ -n "$ver" ] || die "no qemu $QEMU_SERIES source package in $BACKPORTS"
  log "deps ready in $(elapsed "$t0") s; building qemu source $ver"
  work="$CACHE/build"
  rm -rf "$work"; mkdir -p "$work"; chown _apt "$work" 2>/dev/null || true
  # Only the upstream (+ds) tarball: the mirror serves the backport's .dsc and debian.tar.xz
  # irregularly (404 seen), and none of Debian's patches is needed for this machine.
  # apt-get still checks the tarball against the signed Sources index.
  ( cd "$work" && apt-get source -qq --download-only --tar-only "qemu=$ver" >/dev/null 2>&1 ) || die "apt-get source --tar-only qemu=$ver failed"
  mkdir -p "$work/src"
  tar -xJf "$work"/qemu_*.orig.tar.xz -C "$work/src" --strip-components=1
  src="$work/src"
  # The +ds tarball lacks the edk2 firmware blobs: do not try to unpack them.
  grep -q "unpack_edk2_blobs = bzip2.found()" "$src/meson.build" || die "meson.build changed: edk2 unpack switch not found"
  sed -i 's/unpack_edk2_blobs = bzip2.found()/unpack_edk2_blobs = false/' "$src/meson.build"
  mkdir -p "$src/configs/devices/x86_64-softmmu"
  cat >"$src/configs/devices/x86_64-softmmu/nle-nitro.mak" <<'MAK'
CONFIG_NITRO_ENCLAVE=y
CONFIG_MICROVM=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_SERIAL=y
MAK
  t1=$(date +%s)
  mkdir -p "$src/build"
  ( cd "$src/build" && ../configure --prefix="$CACHE/qemu" --python=/usr/bin/python3 --target-list=x86_64-softmmu \
      --with-devices-x86_64=nle-nitro --without-default-devices --without-default-features \
      --enable-tcg --enable-kvm --enable-fdt=system --enable-libcbor --enable-gnutls --enable-vhost-user \
      --disable-docs --disable-tools \
      --disable-werror --disable-download --disable-install-blobs >"$work/configure.log" 2>&1 ) || { tail -40 "$work/configure.log" >&2; die "configure failed (log: $work/configure.log)"; }
  log "configure: $(elapsed "$t1") s"
  t1=$(date +%s)
  ( cd "$src/build" && ninja -j"$JOBS" qemu-system-x86_64 >"$work/build.log" 2>&1 ) || { tail -40 "$work/build.log" >&2; die "build failed (log: $work/build.log)"; }
  log "ninja: $(elapsed "$t1") s"
  rm -rf "$CACHE/qemu.new"; mkdir -p "$CACHE/qemu.new/bin"
  install -m 0755 "$src/build/qemu-system-x86_64" "$CACHE/qemu.new/bin/qemu-system-x86_64"
  strip "$CACHE/qemu.new/bin/qemu-system-x86_64" || true
  echo "$ver" >"$CACHE/qemu.new/VERSION"
  rm -rf "$CACHE/qemu"; mv "$CACHE/qemu.new" "$CACHE/qemu"
  rm -rf "$work"
  log "QEMU $ver built in $(elapsed "$t0") s total"
}

qemu_ok() {
  [ -x "$QEMU_BIN" ] || return 1
  "$QEMU_BIN" -machine help 2>/dev/null | grep -q '^nitro-enclave' || return 1
  # A cache from before KVM was compiled in is rebuilt once.
  "$QEMU_BIN" -accel help 2>/dev/null | grep -qx 'kvm'
}

t=$(date +%s)
apt_install "${RUNTIME_PKGS[@]}"
if qemu_ok; then
  log "QEMU cached: $QEMU_BIN ($(cat "$CACHE/qemu/VERSION" 2>/dev/null || echo '?'))"
else
  log "QEMU not cached (or not usable); building"
  build_qemu
  apt_install "${RUNTIME_PKGS[@]}"
  qemu_ok || die "the built QEMU has no nitro-enclave machine"
fi
log "qemu step: $(elapsed "$t") s"

# Firmware: the microvm BIOS (bios-microvm.bin, package seabios) and the option ROM that loads the
# kernel (linuxboot_dma.bin, package qemu-system-data: the +ds tarball has no prebuilt ROMs).
ensure_backports_sources
apt_install -t "$BACKPORTS" qemu-system-data
FIRMWARE_DIRS=""
for f in bios-microvm.bin linuxboot_dma.bin; do
  d=""
  for c in /usr/share/qemu /usr/share/seabios; do
    [ -f "$c/$f" ] && { d="$c"; break; }
  done
  [ -n "$d" ] || die "$f not found (packages seabios, qemu-system-data)"
  case ",$FIRMWARE_DIRS," in *",\"$d\","*) ;; *) FIRMWARE_DIRS="${FIRMWARE_DIRS:+$FIRMWARE_DIRS,}\"$d\"" ;; esac
done

# ---------------------------------------------------------------------------------------------
# Guest pieces: kernel (unpacked, not installed) and busybox.
t=$(date +%s)
GUEST="$CACHE/guest"
mkdir -p "$GUEST"
kernel_pkg() {
  apt_update
  apt-cache depends "$KERNEL_META" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'
}
KDIR="$(ls -d "$GUEST"/kernel-*/ 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$KDIR" ] || [ ! -f "$KDIR/.complete" ]; then
  pkg="$(kernel_pkg)"; [ -n "$pkg" ] || die "cannot resolve $KERNEL_META"
  KDIR="$GUEST/kernel-${pkg#linux-image-}/"
  rm -rf "$KDIR" "$GUEST/dl"; mkdir -p "$GUEST/dl" "$KDIR"; chown _apt "$GUEST/dl" 2>/dev/null || true
  log "downloading $pkg"
  ( cd "$GUEST/dl" && apt-get download -qq "$pkg" >/dev/null )
  dpkg-deb -x "$GUEST"/dl/"$pkg"_*.deb "$KDIR"
  rm -rf "$GUEST/dl"
  touch "$KDIR/.complete"
fi
KDIR="${KDIR%/}"
KVER="$(basename "$KDIR")"; KVER="${KVER#kernel-}"
VMLINUZ="$KDIR/boot/vmlinuz-$KVER"
KCONFIG="$KDIR/boot/config-$KVER"
MODDIR="$KDIR/lib/modules/$KVER"
[ -f "$VMLINUZ" ] || die "no $VMLINUZ"
for m in drivers/virtio/virtio_mmio.ko.xz drivers/misc/nsm.ko.xz; do
  [ -f "$MODDIR/kernel/$m" ] || die "the kernel has no $m"
done
# virtio_mmio and nsm, and the vsock transport (AF_VSOCK for the image's socat bridge), in load order.
VSOCK_MODS="vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport"
for m in virtio_mmio nsm $VSOCK_MODS; do
  f="$(find "$MODDIR/kernel" -name "$m.ko.xz" | head -1)"
  [ -f "$f" ] || die "the kernel has no module $m"
  [ -f "$GUEST/$KVER-$m.ko" ] || { xz -dc "$f" >"$GUEST/$KVER-$m.ko.new" && mv "$GUEST/$KVER-$m.ko.new" "$GUEST/$KVER-$m.ko"; }
done
VSOCK_KOS=""
for m in $VSOCK_MODS; do VSOCK_KOS="${VSOCK_KOS:+$VSOCK_KOS,}\"$GUEST/$KVER-$m.ko\""; done

BBDIR="$GUEST/busybox"
if [ ! -x "$BBDIR/bin/busybox" ]; then
  apt_update
  rm -rf "$BBDIR" "$GUEST/dl"; mkdir -p "$GUEST/dl"; chown _apt "$GUEST/dl" 2>/dev/null || true
  log "downloading busybox-static"
  ( cd "$GUEST/dl" && apt-get download -qq busybox-static >/dev/null )
  dpkg-deb -x "$GUEST"/dl/busybox-static_*.deb "$BBDIR"
  rm -rf "$GUEST/dl"
fi
log "guest step: $(elapsed "$t") s"

ACCELS="$("$QEMU_BIN" -accel help 2>/dev/null | awk 'NR>1 && NF==1 {printf "%s\"%s\"", (n++ ? "," : ""), $1}')"
cat >"$CACHE/manifest.json.new" <<JSON
{
  "qemu": "$QEMU_BIN",
  "qemuVersion": "$(cat "$CACHE/qemu/VERSION")",
  "accelerators": [$ACCELS],
  "firmwareDirs": [$FIRMWARE_DIRS],
  "kernel": "$VMLINUZ",
  "kernelConfig": "$KCONFIG",
  "kernelVersion": "$KVER",
  "virtioMmioKo": "$GUEST/$KVER-virtio_mmio.ko",
  "nsmKo": "$GUEST/$KVER-nsm.ko",
  "vsockKos": [$VSOCK_KOS],
  "busybox": "$BBDIR/bin/busybox"
}
JSON
mv "$CACHE/manifest.json.new" "$CACHE/manifest.json"
log "manifest: $CACHE/manifest.json"
log "done in $(elapsed "$t_all") s"
