#!/usr/bin/env bash
# The whole suite, as the README's second command and .ci/run use it: installs test dependencies if
# missing, npm ci if needed, then build, lint, typecheck, unit tests and end-to-end suites.
# Ends with one line: "N passed, N failed" (tests, plus build/lint/typecheck as one check each).
set -uo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
out=test-output
mkdir -p "$out"
passed=0 failed=0 failures=()

check() { # check NAME CMD...: a step that counts as one check
  local name=$1; shift
  log "$name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
}

suite() { # suite NAME JSON CMD...: a vitest run whose tests are counted one by one
  local name=$1 json=$2; shift 2
  log "$name"
  rm -f "$json"
  "$@" --reporter=default --reporter=json --outputFile="$PWD/$json"
  local rc=$?
  if [ -s "$json" ]; then
    read -r p f < <(node -e 'const r=require(process.argv[1]);const fails=r.testResults.flatMap(f=>f.assertionResults.filter(a=>a.status==="failed").map(a=>f.name.replace(process.cwd()+"/","")+" > "+a.fullName));for(const x of fails)console.error("FAILED: "+x);const suiteErr=r.testResults.filter(f=>f.status==="failed"&&f.assertionResults.length===0).length;console.log(r.numPassedTests,r.numFailedTests+suiteErr)' "$PWD/$json")
    passed=$((passed + p)) failed=$((failed + f))
    [ "$f" -gt 0 ] && failures+=("$name: $f failed")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); failures+=("$name (exit $rc)"); fi
  else
    failed=$((failed + 1)); failures+=("$name (no results)")
  fi
}

ensure_node
ensure_test_clients
check "libvirt + QEMU (real guests)" ensure_libvirt
check "debootstrap (the Debian test guest)" ensure_debootstrap
check "dnsmasq, iptables, ebtables (MANAGED networking)" ensure_network
check "tgt + QEMU iSCSI (EBS volumes)" ensure_tgt
check "systemd-analyze (install suite)" ensure_systemd_analyze
check "chromium (console browser tests)" ensure_chromium
check "libpq headers (PostgreSQL driver build)" ensure_libpq
check "npm ci (if needed) + npm run build" ensure_built
check "npm run lint" npm run -s lint
check "npm run typecheck" npm run -s typecheck
# Built once here (cached per host), shared by every suite that boots the Debian guest.
check "Debian 12 test guest (test/images/build-debian-image.sh)" bash test/images/build-debian-image.sh
suite "unit tests (vitest.config.ts)" "$out/unit.json" npx vitest run
suite "end-to-end suites (test/e2e)" "$out/e2e.json" npx vitest run --config test/e2e/vitest.config.ts
suite "fuzzing (test/fuzz, fixed seed)" "$out/fuzz.json" npx vitest run --config test/fuzz/vitest.config.ts
suite "fault injection (test/faults)" "$out/faults.json" npx vitest run --config test/faults/vitest.config.ts

for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
