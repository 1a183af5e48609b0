#!/usr/bin/env bash
# Installs Mallee on a Debian 12 host (as root) from this built checkout: the role's apt packages, a
# "mallee" system user, the run-time tree in /opt/mallee with `mallee` on PATH, /etc/mallee/mallee.conf
# (from deploy/mallee.conf.example, never overwriting one that exists), /var/lib/mallee, and one systemd
# unit per daemon plus mallee.target; on hosts without systemd, an init script that runs
# `mallee supervise`. Idempotent: a second run changes nothing and says so.
#
#   ./deploy/install.sh --role frontend|node|all [options]
#     --root DIR       install under DIR instead of / (a throwaway root; no user creation, no systemctl)
#     --prefix DIR     run-time tree (default /opt/mallee)       --etc DIR    config (default /etc/mallee)
#     --state DIR      the home: databases, keys, logs (default /var/lib/mallee)
#     --bin DIR        where the `mallee` command goes (default /usr/local/bin)
#     --unit-dir DIR   systemd units (default /etc/systemd/system)
#     --user NAME      the user clc and Walrus run as (default mallee; created when missing, unless --root)
#     --set KEY=VALUE  a mallee.conf setting for a new configuration (repeatable; e.g. --set ZONE=zone-b
#                      --set VNET_PRIVINTERFACE=eth1); an existing mallee.conf is never changed
#     --no-apt         do not install Debian packages       --no-build   use the tree as built (no npm)
#     --list-packages  print the role's Debian packages and exit
#   A new mallee.conf has VNET_MODE="MANAGED" for frontend and node hosts (set VNET_PUBINTERFACE,
#   VNET_PRIVINTERFACE, VNET_PUBLICIPS) and "USERMODE" for --role all, as `mallee up` writes it: one
#   host has no private link to its nodes, and MANAGED would rewrite its own forwarding and NAT.
set -euo pipefail
shopt -s lastpipe # `render | write_if_changed` records its changes in this shell
cd "$(dirname "$0")/.."
src=$PWD
. deploy/lib.sh

role='' root=/ prefix=/opt/mallee etc=/etc/mallee state=/var/lib/mallee bin=/usr/local/bin unitdir=/etc/systemd/system
user=mallee apt=1 build=1 list='' sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --role) role=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --etc) etc=$2; shift 2 ;;
    --state) state=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --unit-dir) unitdir=$2; shift 2 ;;
    --user) user=$2; shift 2 ;;
    --no-apt) apt=''; shift ;;
    --no-build) build=''; shift ;;
    --set)
      [[ ${2:-} =~ ^[A-Z][A-Z0-9_]*=.*$ ]] || { echo "install.sh: --set wants KEY=VALUE (a mallee.conf key), not ${2:-nothing}" >&2; exit 2; }
      sets+=("$2"); shift 2 ;;
    --list-packages) list=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$role" in frontend|node|all) ;; *) echo "install.sh: --role frontend|node|all is required" >&2; exit 2 ;; esac

# The role's Debian packages: what its daemons drive (no systemd needed for any of them).
#   frontend: the sc's iSCSI target (tgt) and LVM; the cc's MANAGED networking (iptables, dnsmasq, bridges, VXLAN).
#   node:     QEMU/KVM and libvirt for guests, iptables/bridges for their networks.
front_pkgs=(tgt lvm2 dnsmasq-base iptables iproute2 bridge-utils openssl)
node_pkgs=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients genisoimage iptables iproute2 bridge-utils)
build_pkgs=(build-essential python3 libvirt-dev)
case "$role" in
  frontend) pkgs=("${front_pkgs[@]}"); daemons=(clc walrus sc cc) ;;
  node) pkgs=("${node_pkgs[@]}"); daemons=(nc) ;;
  all) pkgs=("${front_pkgs[@]}" "${node_pkgs[@]}"); daemons=(clc walrus sc cc nc) ;;
esac
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | awk '!seen[$0]++')
if [ -n "$list" ]; then printf '%s\n' "${pkgs[@]}"; exit 0; fi

R=${root%/}
changed=()
note() { changed+=("$1"); log "$1"; }

# --- 1. packages, node, the built tree -------------------------------------------------------------
if [ -n "$apt" ]; then
  ensure_node
  apt_install "${pkgs[@]}"
fi
command -v node >/dev/null || { echo "install.sh: node (>= 20) is not on PATH; run without --no-apt as root" >&2; exit 1; }
nodebin=$(command -v node)
if [ -n "$build" ]; then
  [ -n "$apt" ] && apt_install "${build_pkgs[@]}"
  ensure_built >/dev/null
fi

# --- 2. the user the clc and Walrus run as ---------------------------------------------------------
if ! getent passwd "$user" >/dev/null; then
  [ "$R" = "" ] || { echo "install.sh: user $user does not exist; --root installs do not create users (give --user)" >&2; exit 1; }
  useradd --system --user-group --home-dir "$state" --no-create-home --shell /usr/sbin/nologin --comment 'Mallee cloud' "$user"
  note "created system user $user"
fi
group=$(id -gn "$user")
if [ "$R" = "" ] && [ "$role" != frontend ]; then
  # The nc itself runs as root; the user reads guests' consoles and disks libvirt hands to QEMU.
  for g in libvirt kvm; do
    if getent group "$g" >/dev/null && ! id -nG "$user" | tr ' ' '\n' | grep -qx "$g"; then usermod -a -G "$g" "$user"; note "added $user to group $g"; fi
  done
fi

# --- 3. the run-time tree and the command ----------------------------------------------------------
tree=$(node deploy/install-tree.mjs "$src" "$R$prefix")
case "$tree" in "tree: 0 written, 0 removed"*) ;; *) note "$tree" ;; esac

# write_if_changed FILE MODE: stdin becomes FILE unless it already holds exactly that.
write_if_changed() {
  local file=$1 mode=$2 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
    [ "$(stat -c %a "$file")" = "$mode" ] || chmod "$mode" "$file"
    return 1
  fi
  mkdir -p "$(dirname "$file")"
  install -m "$mode" "$tmp" "$file"
  rm -f "$tmp"
  note "wrote $file"
}

write_if_changed "$R$bin/mallee" 755 <<EOF || true
#!/bin/sh
# Installed by Mallee's deploy/install.sh: the mallee command, with this host's home and node.
: "\${MALLEE_HOME:=$state}"
export MALLEE_HOME
exec $nodebin $prefix/packages/cli/dist/src/main.js "\$@"
EOF

# --- 4. the home and the configuration -------------------------------------------------------------
# ensure_dir DIR MODE OWNER: create or correct, saying so only when something changed.
ensure_dir() {
  local dir=$1 mode=$2 owner=$3
  if [ ! -d "$dir" ]; then install -d -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$dir"; note "created $dir"; return; fi
  [ "$(stat -c %a "$dir")" = "$mode" ] || { chmod "$mode" "$dir"; note "chmod $mode $dir"; }
  [ "$(stat -c %U:%G "$dir")" = "$owner" ] || { chown "$owner" "$dir"; note "chown $owner $dir"; }
}
ensure_dir "$R$etc" 755 root:root
# The home and run/ are o+x (passed through, not listed): on a front end the cc's dnsmasq, which drops to its own
# user, reads its hosts files under run/dnsmasq (with 750 it answered no guest's DHCP); on a node libvirt's QEMU user
# (libvirt-qemu) reaches the instances and the image cache (the nc widened it at its start, a later install run
# narrowed it again under running guests). keys/ stays 700.
ensure_dir "$R$state" 751 "$user:$group"
for d in keys run log; do ensure_dir "$R$state/$d" "$(case $d in keys) echo 700 ;; run) echo 751 ;; *) echo 750 ;; esac)" "$user:$group"; done
[ "$role" = frontend ] || ensure_dir "$R$state/instances" 751 root:root

conf="$R$etc/mallee.conf"
# set_conf FILE KEY VALUE: the key's line becomes KEY="VALUE" (appended when the example has no such key).
set_conf() {
  local file=$1 key=$2 value=${3//\\/\\\\}
  value=${value//\"/\\\"}
  if grep -q "^$key=" "$file"; then
    KEY=$key VALUE=$value awk 'BEGIN { k = ENVIRON["KEY"]; v = ENVIRON["VALUE"] } index($0, k "=") == 1 { print k "=\"" v "\""; next } { print }' "$file" >"$file.tmp" && mv "$file.tmp" "$file"
  else
    printf '%s="%s"\n' "$key" "$value" >>"$file"
  fi
}
if [ ! -e "$conf" ]; then
  {
    echo "# mallee.conf for this host (role $role), written by deploy/install.sh from mallee.conf.example."
    echo "# Yours now: install.sh never overwrites it. Keys and defaults: $prefix/deploy/mallee.conf.example"
    sed -e "s|^MALLEE_HOME=.*|MALLEE_HOME=\"$state\"|" -e "s|^INSTANCE_PATH=.*|INSTANCE_PATH=\"$state/instances\"|" deploy/mallee.conf.example
  } >"$conf"
  # One host alone has no private link to tunnel over: user-mode networking, as `mallee up` writes it.
  [ "$role" = all ] && set_conf "$conf" VNET_MODE USERMODE
  for kv in "${sets[@]}"; do set_conf "$conf" "${kv%%=*}" "${kv#*=}"; done
  chmod 644 "$conf"
  note "wrote $conf"
elif [ ${#sets[@]} -gt 0 ]; then
  log "$conf exists: --set applies to a new mallee.conf only (edit this one by hand)"
fi
# The daemons get --conf; the mallee command reads <home>/mallee.conf: one file for both.
if [ ! -e "$R$state/mallee.conf" ] && [ ! -L "$R$state/mallee.conf" ]; then
  ln -s "$(realpath -m --relative-to="$state" "$etc/mallee.conf")" "$R$state/mallee.conf"
  note "linked $state/mallee.conf -> $etc/mallee.conf"
fi

# --- 5. systemd units, or the supervisor for hosts without systemd -------------------------------
render() { # render TEMPLATE: the unit with this install's paths
  sed -e "s|@NODE@|$nodebin|g" -e "s|@PREFIX@|$prefix|g" -e "s|@ETC@|$etc|g" -e "s|@STATE@|$state|g" \
      -e "s|@USER@|$user|g" -e "s|@GROUP@|$group|g" "deploy/systemd/$1"
}
units=(mallee.target)
for d in "${daemons[@]}"; do
  # A daemon not in this build (the sc, while it is being written) gets its unit once it is built.
  if [ -f "$R$prefix/services/$d/dist/src/main.js" ]; then units+=("mallee-$d.service"); else log "$d is not built here: mallee-$d.service is not installed"; fi
done
units_changed=''
for u in "${units[@]}"; do
  render "$u" | write_if_changed "$R$unitdir/$u" 644 && units_changed=1
done
# Units of daemons this host no longer runs (the role changed) go.
for f in "$R$unitdir"/mallee-*.service; do
  [ -e "$f" ] || continue
  name=$(basename "$f")
  printf '%s\n' "${units[@]}" | grep -qx "$name" && continue
  grep -q 'Written by deploy/install.sh (Mallee)' "$f" || continue
  rm -f "$f"
  note "removed $f (not part of role $role)"
  units_changed=1
done

write_if_changed "$R/etc/init.d/mallee" 755 <<EOF || true
#!/bin/sh
### BEGIN INIT INFO
# Provides:          mallee
# Required-Start:    \$network \$remote_fs
# Required-Stop:     \$network \$remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: Mallee cloud daemons (role $role) under mallee supervise
### END INIT INFO
# Written by deploy/install.sh (Mallee) for hosts without systemd.
MALLEE="$bin/mallee --home $state"
case "\$1" in
  start) exec \$MALLEE supervise --role $role --user $user --conf $etc/mallee.conf --detach ;;
  stop) exec \$MALLEE supervise --stop ;;
  restart) \$MALLEE supervise --stop; exec \$MALLEE supervise --role $role --user $user --conf $etc/mallee.conf --detach ;;
  status) exec \$MALLEE status ;;
  *) echo "usage: \$0 start|stop|restart|status" >&2; exit 2 ;;
esac
EOF

systemd_running=''
[ "$R" = "" ] && [ -d /run/systemd/system ] && systemd_running=1
if [ -n "$systemd_running" ]; then
  if [ -n "$units_changed" ]; then systemctl daemon-reload; fi
  for u in "${units[@]}"; do systemctl is-enabled --quiet "$u" 2>/dev/null || { systemctl enable --quiet "$u"; note "enabled $u"; }; done
fi

# --- 6. what changed, and what to do next ----------------------------------------------------------
if [ ${#changed[@]} -eq 0 ]; then
  echo "install.sh: nothing changed (role $role, $R$prefix, $R$etc/mallee.conf, $R$state)"
else
  echo "install.sh: ${#changed[@]} changes (role $role)"
fi
cat <<EOF
Next:
  edit $etc/mallee.conf (BIND_ADDRESS, ports, ZONE, HYPERVISOR, networking)
EOF
if [ -n "$systemd_running" ]; then
  echo "  systemctl start mallee.target          # journalctl -u 'mallee-*' for the logs"
else
  echo "  $bin/mallee supervise --role $role --user $user --home $state --conf $etc/mallee.conf --detach"
  echo "  (or /etc/init.d/mallee start; the logs are in $state/log/)"
fi
case "$role" in
  frontend|all) echo "  mallee register-cluster <zone> http://<cc host>:8774, then mallee register-nodes --cluster <zone> http://<node>:8775" ;;
esac
