#!/usr/bin/env bash
# All-in-one Mallee on this host (Debian 12, as root): installs what is missing, builds, and starts
# clc + cc + nc in the background with `mallee up --detach`. Safe to run again.
#   ./deploy/aio.sh [--home DIR] [--hypervisor simulated|libvirt] [--port-base N]
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
ensure_node
# Real guests need libvirt; without it `mallee up` falls back to the simulated hypervisor.
ensure_libvirt || log "continuing without libvirt: the cloud will use the simulated hypervisor"
# MANAGED networking needs dnsmasq, iptables and ebtables (the all-in-one default, USERMODE, does not).
ensure_network || log "continuing without dnsmasq/iptables/ebtables: only VNET_MODE=USERMODE works"
ensure_tgt || log "continuing without tgt: EBS volumes can be created but not attached"
ensure_libpq || log "continuing without libpq-dev: DB_URL (PostgreSQL) will not be available"
ensure_built
exec node packages/cli/dist/src/main.js up --detach "$@"
