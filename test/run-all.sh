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

tally() { # tally NAME JSON RC: count a finished vitest run's tests one by one
  local name=$1 json=$2 rc=$3
  if [ -s "$json" ]; then
    read -r p f < <(node -e 'const r=require(process.argv[1]);const fails=r.testResults.flatMap(f=>f.assertionResults.filter(a=>a.status==="failed").map(a=>f.name.replace(process.cwd()+"/","")+" > "+a.fullName));for(const x of fails)console.error("FAILED: "+x);const suiteErr=r.testResults.filter(f=>f.status==="failed"&&f.assertionResults.length===0).length;console.log(r.numPassedTests,r.numFailedTests+suiteErr)' "$PWD/$json")
    passed=$((passed + p)) failed=$((failed + f))
    [ "$f" -gt 0 ] && failures+=("$name: $f failed")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); failures+=("$name (exit $rc)"); fi
  else
    failed=$((failed + 1)); failures+=("$name (no results)")
  fi
}

suite() { # suite NAME JSON CMD...: a vitest run in the foreground, counted by tally
  local name=$1 json=$2; shift 2
  log "$name"
  rm -f "$json"
  "$@" --reporter=default --reporter=json --outputFile="$PWD/$json"
  tally "$name" "$json" $?
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
# The end-to-end suites in two streams side by side (test/e2e/vitest.config.ts says why). Foreground: the
# timed netns files (guests-netns), then the other guest files (guests), one file at a time. Side: the
# simulated-cloud files, fuzzing and fault injection, then, once guests-netns is done, the guests-beside
# files; each logged to test-output/<name>.log and printed when done.
side=(
  "end-to-end suites, api group (test/e2e)|e2e-api|env MALLEE_E2E_GROUP=api npx vitest run --config test/e2e/vitest.config.ts"
  "fuzzing (test/fuzz, fixed seed)|fuzz|npx vitest run --config test/fuzz/vitest.config.ts"
  "fault injection (test/faults)|faults|npx vitest run --config test/faults/vitest.config.ts"
  "end-to-end suites, guests beside (test/e2e)|e2e-guests-beside|env MALLEE_E2E_GROUP=guests-beside npx vitest run --config test/e2e/vitest.config.ts"
)
netns_done="$out/.guests-netns-done"
rm -f "$netns_done"
log "beside the guests groups: ${#side[@]} suites, logs in $out/{e2e-api,fuzz,faults,e2e-guests-beside}.log"
(
  for entry in "${side[@]}"; do
    IFS='|' read -r _ tag cmd <<<"$entry"
    # No guest file beside the timed netns files.
    if [ "$tag" = e2e-guests-beside ]; then while [ ! -e "$netns_done" ]; do sleep 2; done; fi
    rm -f "$out/$tag.json" "$out/$tag.rc"
    # shellcheck disable=SC2086 # cmd is a word list of our own
    $cmd --reporter=default --reporter=json --outputFile="$PWD/$out/$tag.json" >"$out/$tag.log" 2>&1
    echo $? >"$out/$tag.rc"
  done
) &
side_pid=$!
suite "end-to-end suites, guests-netns group (test/e2e)" "$out/e2e-guests-netns.json" env MALLEE_E2E_GROUP=guests-netns npx vitest run --config test/e2e/vitest.config.ts
touch "$netns_done"
suite "end-to-end suites, guests group (test/e2e)" "$out/e2e-guests.json" env MALLEE_E2E_GROUP=guests npx vitest run --config test/e2e/vitest.config.ts
wait "$side_pid"
for entry in "${side[@]}"; do
  IFS='|' read -r name tag _ <<<"$entry"
  log "$name (ran beside the guests groups)"
  cat "$out/$tag.log"
  tally "$name" "$out/$tag.json" "$(cat "$out/$tag.rc" 2>/dev/null || echo 1)"
done

rm -f "$netns_done"
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
