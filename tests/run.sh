#!/usr/bin/env bash
# run.sh -- runs every test and ends with one line: "N passed, N failed".
#
# The C unit tests (MPU_UNITS, built by make) and the bats CLI tests all speak
# TAP; this script counts their "ok" and "not ok" lines.  MPU_BIN names the
# directory of the programs under test (bin/, or build/san/bin with SAN=1).
set -u
cd "$(dirname "$0")/.."
export MPU_BIN=${MPU_BIN:-$PWD/bin}
export PATH="$MPU_BIN:$PATH"
out=${TEST_OUT:-$PWD/build/test-output}
mkdir -p "$out"
log="$out/tap.log"
: > "$log"

for t in ${MPU_UNITS:-}; do
  echo "# unit: $t" >> "$log"
  "$t" >> "$log" 2>&1 || true
done

bats_files=$(ls tests/cli/*.bats 2>/dev/null)
if [ -n "$bats_files" ]; then
  # bats-core 1.8 runs files in parallel with --jobs when GNU parallel exists;
  # keep it serial for stable output.
  BATS_LIB_PATH=${BATS_LIB_PATH:-/usr/lib/bats} bats --tap $bats_files >> "$log" 2>&1 || true
fi

passed=$(grep -cE '^ok ' "$log")
failed=$(grep -cE '^not ok ' "$log")
skipped=$(grep -cE '^ok .*# ?skip' "$log")
grep -E '^not ok |^# (CHECK|\(in test file)|^#   ' "$log" | head -200
[ "$skipped" -gt 0 ] && echo "($skipped skipped; see $log)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
