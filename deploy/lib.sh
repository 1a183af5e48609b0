# Shared by deploy/aio.sh and test/run-all.sh: idempotent setup of a Debian 12 host (run as root).
# Each ensure_* does nothing when what it provides is already there.

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_updated=
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then log "missing Debian packages: ${missing[*]} (run as root, or apt-get install them)"; return 1; fi
  log "apt-get install ${missing[*]}"
  [ -n "$apt_updated" ] || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Node.js >= 20 (Debian 12's own nodejs is 18: use NodeSource's Node 20 repository when needed).
ensure_node() {
  if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then return 0; fi
  log "installing Node.js 20 from deb.nodesource.com"
  apt_install ca-certificates curl gnupg
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor --yes -o /etc/apt/keyrings/nodesource.gpg
  echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_20.x nodistro main" >/etc/apt/sources.list.d/nodesource.list
  apt_updated=
  apt_install nodejs
}

# npm ci when node_modules is missing or older than package-lock.json; then build.
ensure_built() {
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "npm ci"
    apt_install build-essential python3
    npm ci --no-audit --no-fund
  fi
  log "npm run build"
  npm run -s build
}

# The clients the end-to-end suites drive: awscli v1 + boto3 (pip, unless already on PATH), boto 2 and
# s3cmd (Debian), euca2ools' Debian deps, moto_server for the benchmark.
ensure_test_clients() {
  apt_install python3-boto s3cmd python3-lxml python3-requests python3-six python3-yaml python3-setuptools
  if ! command -v aws >/dev/null || ! python3 -c 'import boto3' 2>/dev/null || ! command -v moto_server >/dev/null; then
    local venv=/opt/mallee-test-venv
    if [ ! -x "$venv/bin/aws" ]; then
      apt_install python3-venv
      log "installing awscli v1, boto3 and moto[server] into $venv"
      python3 -m venv "$venv"
      "$venv/bin/pip" install -q 'awscli<2' boto3 'moto[server]'
    fi
    export PATH="$venv/bin:$PATH"
  fi
}

# QEMU + libvirt for real guests (and the headers @unraid/libvirt builds against, so before npm ci),
# then the daemons started by hand: there is no systemd as PID 1 on these hosts.
ensure_libvirt() {
  apt_install qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libvirt-dev genisoimage
  pgrep -x virtlogd >/dev/null || virtlogd -d
  if ! pgrep -x libvirtd >/dev/null; then
    libvirtd -d
    for _ in $(seq 1 50); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.2; done
  fi
  [ -S /run/libvirt/libvirt-sock ] || { log "libvirtd did not start: see /var/log/libvirt/libvirtd.log"; return 1; }
}

# MANAGED networking (the cc: dnsmasq for DHCP and DNS, iptables; the nc: ebtables, bridges and VXLAN with
# iproute2; nftables for SYSTEM mode's address learning) and what the network suite drives from its `internet`
# namespace (curl).
ensure_network() {
  apt_install dnsmasq-base iptables iproute2 nftables curl
  # Debian 12's iptables package provides ebtables (nft); the ebtables package is the legacy one.
  command -v ebtables >/dev/null || apt_install ebtables
}

# systemd-analyze, to verify the units deploy/install.sh writes (no systemd runs as PID 1 here).
ensure_systemd_analyze() {
  command -v systemd-analyze >/dev/null || apt_install systemd
}

# Debian's Chromium for the console's browser tests (driven by playwright-core, which never downloads a browser).
ensure_chromium() {
  apt_install chromium
  [ -x /usr/bin/chromium ] || { log "chromium is not at /usr/bin/chromium"; return 1; }
}

# tgt, the iSCSI target the sc exports volumes with, and qemu-block-extra (QEMU's own iSCSI initiator,
# so nodes need no kernel initiator); tgtd started by hand (no systemd). Other users may share tgtd:
# each sc only touches targets under its own IQN prefix.
ensure_tgt() {
  apt_install tgt qemu-block-extra
  if ! tgtadm --lld iscsi --mode target --op show >/dev/null 2>&1; then
    tgtd
    for _ in $(seq 1 50); do tgtadm --lld iscsi --mode target --op show >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  tgtadm --lld iscsi --mode target --op show >/dev/null 2>&1 || { log "tgtd did not start"; return 1; }
}

# PostgreSQL 15 (Debian's) for DB_URL=postgres://… and the scale-out suite; libpq-dev so the libpq
# binding (@mallee/store's PostgreSQL driver) builds at npm ci. No cluster is started here: the
# scale-out harness (test/scale-out/backends.sh) runs its own throwaway one.
ensure_postgresql() {
  apt_install postgresql-15 postgresql-client-15 libpq-dev
}

# libpq's headers and pg_config, needed before npm ci builds the libpq binding.
ensure_libpq() {
  apt_install libpq-dev
}

# Ceph 16 (Debian's) for the scale-out backends: a mon, a mgr, OSDs, radosgw and the rbd tool; QEMU's
# rbd driver is in qemu-block-extra (ensure_tgt installs it too).
ensure_ceph() {
  apt_install ceph-mon ceph-osd ceph-mgr radosgw ceph-common qemu-block-extra uuid-runtime
}

# debootstrap for the Debian 12 test guest (test/images/build-debian-image.sh, `mallee test-image --debian`).
ensure_debootstrap() {
  apt_install debootstrap qemu-utils e2fsprogs
}
