#!/usr/bin/env bash
# Builds Mallee's tiny test image set from Debian packages only, into OUTDIR (default
# test-output/images), and does nothing when OUTDIR is already up to date:
#   vmlinuz     EKI  the Debian cloud kernel (linux-image-cloud-amd64)
#   initrd.img  ERI  a busybox-static initramfs: loads the virtio modules, DHCP on eth0, prints
#                    "mallee: boot done <instance-id>" (id from mallee.instance_id= on the kernel
#                    command line, else the metadata service) and MemTotal, serves HTTP on port 80
#   root.img    EMI  an 8 MiB ext4 filesystem image (raw) holding the marker file /mallee-image
#   disk.img    EMI  a whole bootable disk (raw, MBR + FAT partition + syslinux) with the same kernel
#                    and initramfs, for instances booted from their disk (no EKI/ERI); its instance
#                    id comes from the config drive
#   image.json       what was built (kernel version, sizes, sha256), for tests and `mallee up`
# Usage: test/images/build-test-image.sh [OUTDIR]     (root; installs missing apt packages)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-test-output/images}
packages=(linux-image-cloud-amd64 busybox-static cpio qemu-utils e2fsprogs kmod gzip genisoimage
  syslinux syslinux-common mtools dosfstools fdisk)
modules=(virtio_pci virtio_blk virtio_net virtio_console button evdev isofs)

log() { printf 'build-test-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)

# One builder at a time per OUTDIR (parallel test runs share the cache).
exec 9>"$out/.lock"
flock 9

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "missing packages ${missing[*]}; run as root or apt-get install them"
  log "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
    apt-get update >&2
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
  fi
fi

# The newest installed cloud kernel that has both its image and its modules.
kver=""
for dir in $(ls -d /lib/modules/*-cloud-amd64 2>/dev/null | sort -V); do
  v=$(basename "$dir")
  [[ -f /boot/vmlinuz-$v ]] && kver=$v
done
[[ -n $kver ]] || die "no cloud kernel found in /boot and /lib/modules"

# Rebuild only when an input changed: this script, the guest's files, the kernel, busybox.
stamp=$( {
  cat "$0" "$here"/initramfs/*
  echo "$kver"
  dpkg-query -W -f='${Version}\n' linux-image-"$kver" busybox-static
} | sha256sum | cut -c1-16)
if [[ -f $out/image.json && -f $out/vmlinuz && -f $out/initrd.img && -f $out/root.img && -f $out/disk.img ]] &&
  grep -q "\"stamp\": \"$stamp\"" "$out/image.json"; then
  log "up to date in $out (kernel $kver)"
  exit 0
fi

started=$(date +%s%N)
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building into $out (kernel $kver)"

# --- initramfs (ERI) ---
root=$work/initramfs
mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,mnt/root,etc/init.d,etc/acpi/PWRF,etc/acpi/PWRB,lib/modules}
cp /bin/busybox "$root/bin/busybox"
install -m 0755 "$here/initramfs/init" "$root/init"
install -m 0644 "$here/initramfs/inittab" "$root/etc/inittab"
install -m 0755 "$here/initramfs/rcS" "$root/etc/init.d/rcS"
install -m 0755 "$here/initramfs/rcK" "$root/etc/init.d/rcK"
install -m 0755 "$here/initramfs/udhcpc.script" "$root/etc/udhcpc.script"
install -m 0755 "$here/initramfs/power-button" "$root/etc/acpi/PWRF/00000080"
install -m 0755 "$here/initramfs/power-button" "$root/etc/acpi/PWRB/00000080"

# The modules and their dependencies in load order, as modprobe resolves them for that kernel;
# compressed modules are unpacked because busybox insmod loads plain .ko files.
: > "$root/etc/modules"
declare -A seen=()
while read -r verb path _; do
  [[ $verb == insmod && -z ${seen[$path]:-} ]] || continue
  seen[$path]=1
  name=$(basename "$path")
  case $name in
    *.ko) cp "$path" "$root/lib/modules/$name" ;;
    *.ko.xz) name=${name%.xz}; xz -dc "$path" > "$root/lib/modules/$name" ;;
    *.ko.zst) name=${name%.zst}; zstd -qdc "$path" > "$root/lib/modules/$name" ;;
    *.ko.gz) name=${name%.gz}; gzip -dc "$path" > "$root/lib/modules/$name" ;;
    *) die "unexpected module file $path" ;;
  esac
  echo "$name" >> "$root/etc/modules"
done < <(modprobe -S "$kver" --show-depends -a "${modules[@]}")
log "initramfs: busybox $(dpkg-query -W -f='${Version}' busybox-static), modules: $(tr '\n' ' ' < "$root/etc/modules")"
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) | gzip -9n > "$work/initrd.img"

# --- kernel (EKI) ---
install -m 0644 "/boot/vmlinuz-$kver" "$work/vmlinuz"

# --- root disk (EMI): a small ext4 filesystem image with a marker file ---
disk=$work/rootfs
mkdir -p "$disk"
printf 'mallee test root disk (built %s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$disk/mallee-image"
printf '<html><body>Mallee test root disk</body></html>\n' > "$disk/index.html"
mkfs.ext4 -q -F -L mallee-root -d "$disk" "$work/root.img" 8M >/dev/null

# --- bootable disk (EMI for disk boot): MBR, one FAT partition with syslinux, kernel and initramfs ---
# Built in image files with mtools and syslinux's mtools installer: no loop devices or mounts needed.
part=$work/part.img
truncate -s 32M "$part"
mkfs.vfat -n MALLEEBOOT "$part" >/dev/null
printf 'SERIAL 0 115200\nDEFAULT mallee\nPROMPT 0\nTIMEOUT 0\nLABEL mallee\n  KERNEL /vmlinuz\n  APPEND initrd=/initrd.img console=ttyS0 no_timer_check\n' > "$work/syslinux.cfg"
mcopy -i "$part" "$work/vmlinuz" ::/vmlinuz
mcopy -i "$part" "$work/initrd.img" ::/initrd.img
mcopy -i "$part" "$work/syslinux.cfg" ::/syslinux.cfg
syslinux --install "$part"
truncate -s 33M "$work/disk.img"
echo 'start=2048, type=c, bootable' | sfdisk -q "$work/disk.img"
dd if="$part" of="$work/disk.img" bs=512 seek=2048 conv=notrunc status=none
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$work/disk.img" bs=440 count=1 conv=notrunc status=none
rm -f "$part"

size() { stat -c %s "$1"; }
sum() { sha256sum "$1" | cut -d' ' -f1; }
cat > "$work/image.json" <<JSON
{
  "stamp": "$stamp",
  "kernelVersion": "$kver",
  "kernel": { "file": "vmlinuz", "bytes": $(size "$work/vmlinuz"), "sha256": "$(sum "$work/vmlinuz")" },
  "ramdisk": { "file": "initrd.img", "bytes": $(size "$work/initrd.img"), "sha256": "$(sum "$work/initrd.img")" },
  "root": { "file": "root.img", "format": "raw", "filesystem": "ext4", "bytes": $(size "$work/root.img"), "sha256": "$(sum "$work/root.img")" },
  "disk": { "file": "disk.img", "format": "raw", "boot": "mbr+syslinux", "bytes": $(size "$work/disk.img"), "sha256": "$(sum "$work/disk.img")" },
  "cmdline": "console=ttyS0 root=/dev/vda rw no_timer_check mallee.instance_id=<instance-id>",
  "builtAt": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
JSON

# image.json last: its presence with the right stamp is what says the set is complete.
for f in vmlinuz initrd.img root.img disk.img image.json; do mv -f "$work/$f" "$out/$f"; done
log "done in $((($(date +%s%N) - started) / 1000000)) ms: $(cd "$out" && ls -l vmlinuz initrd.img root.img disk.img | awk '{printf "%s %s B; ", $9, $5}')"
