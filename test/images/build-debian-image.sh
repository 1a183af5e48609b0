#!/usr/bin/env bash
# Builds Mallee's Debian 12 test guest from Debian apt only (debootstrap from the mirror this host's
# apt uses), and does nothing when an up-to-date build exists:
#   vmlinuz      EKI  the guest's own Debian cloud kernel (linux-image-cloud-amd64)
#   initrd.img   ERI  the guest's own Debian initramfs (initramfs-tools, zstd): mounts root=/dev/vda
#   root.qcow2   EMI  the root file system (ext4 on the whole disk, label mallee-debian, 2 GiB virtual,
#                     qcow2 so it stays small): systemd, udev, cloud-init (NoCloud config drive, then the
#                     EC2 metadata service), qemu-guest-agent, openssh-server, e2fsprogs, sudo,
#                     systemd-networkd DHCP on the NIC, serial console on ttyS0, and a unit printing
#                     "mallee: debian boot done <instance-id>" on the console at the end of every boot
#   image.json        what was built (kernel version, package versions, sizes, sha256, input stamp)
# Usage: test/images/build-debian-image.sh [OUTDIR]       (root: debootstrap, chroot, mounts)
# Without OUTDIR it builds into a cache shared by every checkout and test suite on this host:
# ${MALLEE_IMAGE_CACHE:-/var/cache/mallee/test-images}/debian-12-<stamp>. The directory is printed
# on stdout (progress goes to stderr). Downloaded .debs are kept in <cache>/debs for the next build.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MALLEE_IMAGE_CACHE:-/var/cache/mallee/test-images}
mirror=${MALLEE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${MALLEE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
suite=bookworm
# What the guest gets on top of debootstrap's minbase (apt resolves the dependencies, no recommends).
packages=(systemd systemd-sysv udev dbus linux-image-cloud-amd64 initramfs-tools zstd cloud-init
  qemu-guest-agent openssh-server e2fsprogs sudo iproute2)
host_packages=(debootstrap qemu-utils e2fsprogs)
root_size=2G

log() { printf 'build-debian-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Rebuild only when an input changed: this script, the files it puts into the guest, or the versions
# the mirror offers for the packages that matter (as this host's apt lists, same mirror, see them).
stamp=$( {
  cat "$0"
  (cd "$here/debian" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  echo "$suite $mirror ${packages[*]}"
  apt-cache policy linux-image-cloud-amd64 systemd cloud-init qemu-guest-agent openssh-server 2>/dev/null | grep -E '^[a-z]|Candidate'
} | sha256sum | cut -c1-16)
out=${1:-$cache/debian-12-$stamp}
mkdir -p "$out"
out=$(cd "$out" && pwd)

complete() { [[ -f $out/image.json && -f $out/vmlinuz && -f $out/initrd.img && -f $out/root.qcow2 ]] && grep -q "\"stamp\": \"$stamp\"" "$out/image.json"; }
up_to_date() {
  log "up to date in $out"
  echo "$out"
  exit 0
}
complete && up_to_date
[[ $(id -u) -eq 0 ]] || die "run as root to build (debootstrap and chroot need it)"
# One builder at a time per output (parallel suites and checkouts share the cache); the first one builds.
exec 9>"$out/.lock"
flock 9
complete && up_to_date

missing=()
for p in "${host_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || { apt-get update -qq >&2; apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; }
fi

started=$(date +%s)
step() { log "$(($(date +%s) - started)) s: $*"; }
# The build runs in a tmpfs: dpkg's fsyncs cost nothing there, and nothing is left on disk on failure.
work=$(mktemp -d /tmp/mallee-debian-build.XXXXXX)
root=$work/root
mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  umount -l "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# set -e stops at the first failing command: say which (a failed build otherwise ends without a word).
trap 'log "error: line $LINENO: \`$BASH_COMMAND\` exited $?; free space in the build tmpfs: $(df -h --output=avail "$work" 2>/dev/null | tail -n 1)"' ERR
mount -t tmpfs -o size=4G,mode=0755 mallee-debian-build "$work"
debs=$cache/debs
mkdir -p "$debs/partial" "$root"

step "debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase --cache-dir="$debs" "$suite" "$root" "$mirror" > "$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

# The guest's own files first: dpkg excludes docs, initramfs-tools reads its configuration, etc.
cp -a "$here/debian/rootfs/." "$root/"
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$root/etc/apt/apt.conf.d/90-mallee-norecommends"
# Nothing may start in the chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Never the host's /dev: package scripts chgrp/chmod device nodes (systemd-tmpfiles gives /dev/kvm the
# guest's kvm gid, which is another group on the host). The guest gets private nodes on a tmpfs.
mount -t proc proc "$root/proc"
mounts+=("$root/proc")
mount -t sysfs -o ro sysfs "$root/sys"
mounts+=("$root/sys")
mount -t tmpfs -o mode=0755,size=16M mallee-debian-dev "$root/dev"
mounts+=("$root/dev")
for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read -r name major minor <<< "$node"
  mknod -m 0666 "$root/dev/$name" c "$major" "$minor"
done
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
mounts+=("$root/dev/pts")
ln -s pts/ptmx "$root/dev/ptmx"
mkdir -p "$root/var/cache/apt/archives"
mount --bind "$debs" "$root/var/cache/apt/archives"
mounts+=("$root/var/cache/apt/archives")
in_root() { LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"; }

step "apt-get install ${packages[*]}"
in_root apt-get -qq update >&2
in_root apt-get install -y -qq -o Dpkg::Options::=--force-unsafe-io "${packages[@]}" > "$work/apt.log" 2>&1 ||
  { tail -n 30 "$work/apt.log" >&2; die "apt-get install failed in the guest"; }

step "configuring the guest"
in_root systemctl enable -q systemd-networkd.service systemd-networkd-wait-online.service mallee-boot-done.service
# No VGA console, no timers that wake up apt or scrub disks in a short-lived test guest.
in_root systemctl mask -q getty@tty1.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer 2>/dev/null || true
kver=$(basename "$(ls -d "$root"/lib/modules/*-cloud-amd64 | sort -V | tail -n 1)")
versions=$(in_root dpkg-query -W -f='${Package} ${Version}\n' linux-image-"$kver" systemd cloud-init qemu-guest-agent openssh-server)

# Per-instance identity is made at first boot: machine id, SSH host keys (cloud-init), hostname.
rm -f "$root"/etc/ssh/ssh_host_* "$root/var/lib/dbus/machine-id" "$root/usr/sbin/policy-rc.d"
: > "$root/etc/machine-id"
echo debian > "$root/etc/hostname"
: > "$root/etc/resolv.conf"
for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[$i]}"; done
mounts=()
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives \
  "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/* "$root"/debootstrap \
  "$root"/usr/share/man/* "$root"/usr/share/info/*
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
mkdir -p "$root/var/cache/apt/archives/partial"

step "kernel $kver; making the root file system ($root_size ext4, $(du -sh "$root" | cut -f1) used)"
install -m 0644 "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
install -m 0644 "$root/boot/initrd.img-$kver" "$work/initrd.img"
mkfs.ext4 -q -F -L mallee-debian -E lazy_itable_init=1,lazy_journal_init=1 -d "$root" "$work/root.raw" "$root_size" >/dev/null
rm -rf "$root"
qemu-img convert -q -f raw -O qcow2 "$work/root.raw" "$work/root.qcow2"
rm -f "$work/root.raw"

size() { stat -c %s "$1"; }
sum() { sha256sum "$1" | cut -d' ' -f1; }
json_versions=$(printf '%s\n' "$versions" | awk 'NF==2 { printf "%s\"%s\": \"%s\"", (n++ ? ", " : ""), $1, $2 }')
cat > "$work/image.json" <<JSON
{
  "stamp": "$stamp",
  "distribution": "debian $suite",
  "kernelVersion": "$kver",
  "packages": { $json_versions },
  "kernel": { "file": "vmlinuz", "bytes": $(size "$work/vmlinuz"), "sha256": "$(sum "$work/vmlinuz")" },
  "ramdisk": { "file": "initrd.img", "bytes": $(size "$work/initrd.img"), "sha256": "$(sum "$work/initrd.img")" },
  "root": { "file": "root.qcow2", "format": "qcow2", "filesystem": "ext4", "label": "mallee-debian", "virtualBytes": $(qemu-img info --output=json "$work/root.qcow2" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'), "bytes": $(size "$work/root.qcow2"), "sha256": "$(sum "$work/root.qcow2")" },
  "cmdline": "console=ttyS0 root=/dev/vda rw no_timer_check mallee.instance_id=<instance-id>",
  "marker": "mallee: debian boot done <instance-id>",
  "defaultUser": "debian",
  "buildSeconds": $(($(date +%s) - started)),
  "builtAt": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
JSON

# image.json last: its presence with the right stamp is what says the build is complete.
for f in vmlinuz initrd.img root.qcow2 image.json; do mv -f "$work/$f" "$out/$f"; done
# Older builds in the shared cache: keep the two newest besides this one.
if [[ -z ${1:-} ]]; then
  # (grep finds nothing on a host whose cache holds only this build: not an error)
  ls -dt "$cache"/debian-12-* 2>/dev/null | { grep -vx "$out" || true; } | tail -n +3 | xargs -r rm -rf
fi
step "done in $out: $(cd "$out" && ls -l vmlinuz initrd.img root.qcow2 | awk '{printf "%s %s B; ", $9, $5}')"
echo "$out"
