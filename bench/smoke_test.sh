#!/usr/bin/env bash
# The benchmark suite in miniature (compare --smoke): every workload of
# every runtime runs once with tiny sizes, and the driver checks each
# result -- skynet's sum, every count, every echoed byte -- never a timing.
# Go builds into $TEST_TMPDIR (GOCACHE included), offline.
set -euo pipefail

compare="${TEST_SRCDIR}/greenrt/bench/compare"
out="${TEST_TMPDIR}/smoke"
mkdir -p "$out"

"$compare" --smoke --out "$out" --cache-dir "${TEST_TMPDIR}/cache"

# The driver exits non-zero on any failed or wrong run; check that the
# JSON and SVG came out and name every workload (the and timeout).
for name in yield spawn-join skynet ping-pong fan-in timers idle-memory timeout \
    echo-50 echo-1000 tls-echo; do
  grep -q "\"name\": \"$name\"" "$out/smoke.json" ||
    { echo "smoke.json lacks $name" >&2; exit 1; }
done
grep -q '"name": "skynet@1w"' "$out/smoke.json"
grep -q '</svg>' "$out/smoke.svg"
echo "smoke test passed"
