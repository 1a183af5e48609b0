#!/usr/bin/env bash
# Throwaway scale-out backends for tests and benchmarks: a PostgreSQL 15 (initdb into a temp dir,
# its own port on 127.0.0.1) and a single-host Ceph cluster (one mon, one mgr, OSDs with bluestore on
# sparse files as Ceph's vstart.sh does, one radosgw on 127.0.0.1), from Debian's own packages.
#
#   test/scale-out/backends.sh up [pg|ceph|all]   start what is not running (idempotent), print env lines
#   test/scale-out/backends.sh env                 print the env lines of what runs (eval "$(… env)")
#   test/scale-out/backends.sh status              exit 0 when everything started is healthy
#   test/scale-out/backends.sh down                stop every process it started, remove every file
#
# State lives in $MALLEE_SCALEOUT_DIR (default /tmp/mallee-scaleout): pid files, data, logs, and env.sh.
# Modest on a shared 2-core host: small caches, low osd_memory_target, one replica, no dashboard.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../deploy/lib.sh"

dir=${MALLEE_SCALEOUT_DIR:-/tmp/mallee-scaleout}
osds=${MALLEE_SCALEOUT_OSDS:-1}
osd_size=${MALLEE_SCALEOUT_OSD_SIZE:-20G}
pgbin=/usr/lib/postgresql/15/bin
quiet() { "$@" >>"$dir/setup.log" 2>&1; }

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() { # wait_for SECONDS WHAT CMD...: poll until CMD succeeds
  local t=$1 what=$2; shift 2
  for _ in $(seq 1 $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "$what did not come up in ${t}s (logs in $dir)"; return 1
}

# ---------------------------------------------------------------- PostgreSQL
pg_up() {
  ensure_postgresql
  local d=$dir/pg
  if [ -f "$d/port" ] && runuser -u postgres -- "$pgbin/pg_ctl" -D "$d/data" status >/dev/null 2>&1; then return 0; fi
  mkdir -p "$d"; chown postgres: "$d"
  if [ ! -f "$d/data/PG_VERSION" ]; then
    rm -rf "$d/data"
    quiet runuser -u postgres -- "$pgbin/initdb" -D "$d/data" -U postgres --auth=trust --no-instructions -E UTF8 --locale=C.UTF-8
  fi
  local port; port=$(cat "$d/port" 2>/dev/null || free_port); echo "$port" >"$d/port"
  # Small: a few daemons and tests connect. Durable as deployed (benchmarks), unless MALLEE_SCALEOUT_PG_FAST=1
  # (the test runner: commits do not wait for the WAL flush; the suites kill daemons, never PostgreSQL).
  local fast=; [ "${MALLEE_SCALEOUT_PG_FAST:-}" = 1 ] && fast="-c synchronous_commit=off -c fsync=off -c full_page_writes=off"
  quiet runuser -u postgres -- "$pgbin/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w -t 60 start -o \
    "-p $port -c listen_addresses=127.0.0.1 -k $d -c shared_buffers=64MB -c max_connections=200 -c work_mem=4MB -c max_wal_size=256MB -c log_min_messages=warning $fast"
  quiet runuser -u postgres -- "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc 'CREATE DATABASE mallee' || true
}
pg_down() {
  local d=$dir/pg
  [ -d "$d/data" ] && runuser -u postgres -- "$pgbin/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null 2>&1 || true
}
pg_env() {
  [ -f "$dir/pg/port" ] || return 0
  echo "export MALLEE_TEST_PG_URL=postgres://postgres@127.0.0.1:$(cat "$dir/pg/port")/mallee"
}

# ---------------------------------------------------------------- Ceph
c() { ceph -c "$dir/ceph/ceph.conf" "$@"; }
ceph_healthy() { c health 2>/dev/null | grep -q '^HEALTH_OK'; }

ceph_conf() {
  local d=$dir/ceph fsid=$1 mon=$2 rgw=$3
  cat >"$d/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $d/keyring
run dir = $d/run
log file = $d/log/\$name.log
pid file = $d/run/\$name.pid
crash dir = $d/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
mon osd full ratio = .95
mon osd backfillfull ratio = .90
mon osd nearfull ratio = .85
debug ms = 0
[mon]
admin socket = $d/run/\$name.asok
mon data = $d/mon/\$name
mon cluster log file = $d/log/cluster.log
[mgr]
admin socket = $d/run/\$name.asok
mgr data = $d/mgr/\$name
keyring = $d/mgr/\$name/keyring
mgr initial modules =
[osd]
admin socket = $d/run/\$name.asok
osd data = $d/osd/\$id
keyring = $d/osd/\$id/keyring
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $(numfmt --from=iec "$osd_size")
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 64M
osd memory target = 939524096
osd op num shards = 1
osd op num threads per shard = 2
osd max object size = 134217728
[client.rgw.a]
admin socket = $d/run/\$name.asok
rgw frontends = beast endpoint=127.0.0.1:$rgw
rgw data = $d/rgw
keyring = $d/rgw/keyring
rgw enable usage log = false
rgw thread pool size = 16
rgw dns name = localhost
EOF
}

ceph_up() {
  ensure_ceph
  local d=$dir/ceph
  if [ -f "$d/env.sh" ] && alive "$d/run/mon.a.pid" && alive "$d/run/mgr.x.pid" && alive "$d/run/client.rgw.a.pid" && ceph_healthy; then return 0; fi
  if [ ! -f "$d/ceph.conf" ]; then
    rm -rf "$d"; mkdir -p "$d"/{run,log,crash,mon,mgr/mgr.x,rgw}
    local fsid mon rgw; fsid=$(uuidgen); mon=$(free_port); rgw=$(free_port)
    ceph_conf "$fsid" "$mon" "$rgw"
    quiet ceph-authtool --create-keyring "$d/keyring" --gen-key -n mon. --cap mon 'allow *'
    quiet ceph-authtool "$d/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *'
    quiet monmaptool --create --clobber --addv a "[v2:127.0.0.1:$mon]" --fsid "$fsid" "$d/monmap"
    quiet ceph-mon -c "$d/ceph.conf" -i a --mkfs --monmap "$d/monmap" --keyring "$d/keyring"
  fi
  alive "$d/run/mon.a.pid" || quiet ceph-mon -c "$d/ceph.conf" -i a
  wait_for 60 "ceph-mon" c -s
  if [ ! -f "$d/mgr/mgr.x/keyring" ]; then
    c auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' -o "$d/mgr/mgr.x/keyring" >/dev/null 2>&1
  fi
  alive "$d/run/mgr.x.pid" || quiet ceph-mgr -c "$d/ceph.conf" -i x
  local i
  for i in $(seq 0 $((osds - 1))); do
    if [ ! -f "$d/osd/$i/ready" ]; then
      # As vstart.sh: the mon learns the OSD's key with its id (osd new), the OSD is made with it.
      local uuid key; uuid=$(uuidgen); key=$(ceph-authtool --gen-print-key); mkdir -p "$d/osd/$i"
      printf '{"cephx_secret": "%s"}' "$key" >"$d/osd/$i/new.json"
      local id; id=$(c osd new "$uuid" -i "$d/osd/$i/new.json" 2>>"$dir/setup.log")
      [ "$id" = "$i" ] || { log "ceph osd new gave id $id, expected $i"; return 1; }
      quiet ceph-authtool --create-keyring "$d/osd/$i/keyring" --name "osd.$i" --add-key "$key"
      quiet ceph-osd -c "$d/ceph.conf" -i "$i" --mkfs --key "$key" --osd-uuid "$uuid"
      touch "$d/osd/$i/ready"
    fi
    alive "$d/run/osd.$i.pid" || quiet ceph-osd -c "$d/ceph.conf" -i "$i"
  done
  wait_for 120 "ceph osds" bash -c "ceph -c '$d/ceph.conf' osd stat -f json | grep -q '\"num_up_osds\":$osds'"
  # rbd pool for EBS volumes; radosgw makes its own pools at start.
  if ! c osd pool ls | grep -qx rbd; then
    quiet c osd pool create rbd 16 16
    quiet c osd pool application enable rbd rbd
    quiet rbd -c "$d/ceph.conf" pool init rbd
  fi
  if [ ! -f "$d/rgw/keyring" ]; then
    c auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' mgr 'allow rw' -o "$d/rgw/keyring" >/dev/null 2>&1
  fi
  if ! alive "$d/run/client.rgw.a.pid"; then
    quiet radosgw -c "$d/ceph.conf" -n client.rgw.a
  fi
  local rgwport; rgwport=$(sed -n 's/^rgw frontends = beast endpoint=127.0.0.1://p' "$d/ceph.conf")
  wait_for 120 "radosgw" curl -sf "http://127.0.0.1:$rgwport/"
  # The S3 user Walrus stores object bytes as; its keys are made here, not guessed.
  if [ ! -f "$d/rgw/user.json" ]; then
    radosgw-admin -c "$d/ceph.conf" user create --uid=mallee --display-name="Mallee Walrus" >"$d/rgw/user.json" 2>>"$dir/setup.log"
  fi
  # A client key for EBS (the sc and the nodes' libvirt secret), limited to the rbd pool.
  if [ ! -f "$d/client.mallee.keyring" ]; then
    c auth get-or-create client.mallee mon 'profile rbd' osd 'profile rbd pool=rbd' mgr 'profile rbd pool=rbd' -o "$d/client.mallee.keyring" >/dev/null 2>&1
  fi
  wait_for 180 "ceph HEALTH_OK" ceph_healthy
  local ak sk
  ak=$(node -e 'const u=require(process.argv[1]);console.log(u.keys[0].access_key)' "$d/rgw/user.json")
  sk=$(node -e 'const u=require(process.argv[1]);console.log(u.keys[0].secret_key)' "$d/rgw/user.json")
  cat >"$d/env.sh" <<EOF
export MALLEE_TEST_CEPH_CONF=$d/ceph.conf
export MALLEE_TEST_CEPH_KEYRING=$d/client.mallee.keyring
export MALLEE_TEST_CEPH_ID=mallee
export MALLEE_TEST_CEPH_POOL=rbd
export MALLEE_TEST_RGW_URL=http://127.0.0.1:$rgwport
export MALLEE_TEST_RGW_ACCESS_KEY=$ak
export MALLEE_TEST_RGW_SECRET_KEY=$sk
EOF
}

ceph_down() {
  local d=$dir/ceph f
  [ -d "$d/run" ] || return 0
  for f in "$d"/run/client.rgw.*.pid "$d"/run/osd.*.pid "$d"/run/mgr.*.pid "$d"/run/mon.*.pid; do
    [ -f "$f" ] || continue
    local pid; pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

env_lines() { pg_env; [ -f "$dir/ceph/env.sh" ] && cat "$dir/ceph/env.sh"; return 0; }

what=${2:-all}
case "${1:-}" in
  up)
    mkdir -p "$dir"; chmod 755 "$dir" # PostgreSQL runs as user postgres
    case "$what" in pg) pg_up ;; ceph) ceph_up ;; all) pg_up; ceph_up ;; *) echo "up pg|ceph|all" >&2; exit 2 ;; esac
    env_lines >"$dir/env.sh"
    cat "$dir/env.sh"
    ;;
  env) env_lines ;;
  status)
    ok=0
    if [ -f "$dir/pg/port" ]; then runuser -u postgres -- "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$(cat "$dir/pg/port")" || ok=1; fi
    if [ -f "$dir/ceph/env.sh" ]; then ceph_healthy || ok=1; fi
    exit $ok
    ;;
  down)
    ceph_down; pg_down
    rm -rf "$dir"
    ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
