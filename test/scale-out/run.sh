#!/usr/bin/env bash
# npm run test:scale-out: the clc, Walrus, sc and store suites and the EC2/S3/EBS end-to-end suites
# again, with every daemon's durable state in a throwaway PostgreSQL and Walrus's object bytes in a
# throwaway Ceph (radosgw), plus the suites that need those backends (two clcs on one database).
# The tests are the default suite's, unchanged: the MALLEE_TEST_* hooks move each test cloud (each
# home) into its own PostgreSQL schema and radosgw prefix. Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
. deploy/lib.sh
out=test-output/scale-out
mkdir -p "$out"
passed=0 failed=0 failures=()

suite() { # suite NAME CMD...: a vitest run whose tests are counted one by one
  local name=$1; shift
  local json="$out/$(echo "$name" | tr -c 'a-z0-9' '-').json"
  log "$name"
  rm -f "$json"
  "$@" --reporter=default --reporter=json --outputFile="$PWD/$json"
  local rc=$?
  if [ -s "$json" ]; then
    read -r p f < <(node -e 'const r=require(process.argv[1]);for(const t of r.testResults)for(const a of t.assertionResults)if(a.status==="failed")console.error("FAILED: "+a.fullName);console.log(r.numPassedTests,r.numFailedTests+r.testResults.filter(t=>t.status==="failed"&&t.assertionResults.length===0).length)' "$PWD/$json")
    passed=$((passed + p)) failed=$((failed + f))
    [ "$f" -gt 0 ] && failures+=("$name: $f failed")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); failures+=("$name (exit $rc)"); fi
  else
    failed=$((failed + 1)); failures+=("$name (no results)")
  fi
}

ensure_node
ensure_test_clients
ensure_libvirt >/dev/null 2>&1 || true
ensure_tgt
ensure_postgresql && ensure_ceph && ensure_libpq && ensure_built || { echo "0 passed, 1 failed"; exit 1; }

# Its own backends in a directory of this run: nothing of a developer's own `backends.sh up` is touched.
export MALLEE_SCALEOUT_DIR=${MALLEE_SCALEOUT_RUN_DIR:-$(mktemp -d /tmp/mallee-scaleout-run-XXXXXX)}
# Commits need not wait for PostgreSQL's WAL flush here: the suites kill daemons, never PostgreSQL.
export MALLEE_SCALEOUT_PG_FAST=1
trap 'test/scale-out/backends.sh down' EXIT
if ! test/scale-out/backends.sh up all >"$out/backends.env"; then
  log "the scale-out backends did not start: see ${MALLEE_SCALEOUT_DIR:-/tmp/mallee-scaleout}/setup.log"
  echo "0 passed, 1 failed"; exit 1
fi
. "$out/backends.env"
export MALLEE_TEST_DB_URL=$MALLEE_TEST_PG_URL
export MALLEE_TEST_WALRUS_S3_ENDPOINT=$MALLEE_TEST_RGW_URL MALLEE_TEST_WALRUS_S3_ACCESS_KEY=$MALLEE_TEST_RGW_ACCESS_KEY MALLEE_TEST_WALRUS_S3_SECRET_KEY=$MALLEE_TEST_RGW_SECRET_KEY

# Three Walrus tests look at the files of the fs backend (walrus/data, walrus/tmp); with the bytes in
# radosgw there are none to look at. Everything else runs as in the default suite.
not_fs_layout='^(?!.*(nothing lands outside the store|leaves no temp file and no object|kill -9 during 20 parallel uploads)).*'
# Every daemon a test starts also creates and migrates its PostgreSQL schema: set-up hooks get 30 s, not 10.
suite "daemon suites on PostgreSQL + radosgw (store, clc, walrus, sc)" npx vitest run packages/store services/clc services/walrus services/sc -t "$not_fs_layout" --hookTimeout=30000
suite "EC2/S3/EBS end-to-end suites on PostgreSQL + radosgw" npx vitest run --config test/e2e/vitest.config.ts awscli.test.ts boto.test.ts euca2ools.test.ts errors.test.ts images.test.ts volumes.test.ts
suite "scale-out suites (two clcs on one database)" npx vitest run --config test/scale-out/vitest.config.ts

for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
