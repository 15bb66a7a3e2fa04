#!/usr/bin/env bash
# bench/run.sh [NAME]... -- runs the benchmarks bench/NAME/run.sh (all of them
# by default, in name order); each writes its own bench/NAME/REPORT.md.
# `make bench` calls this with MPU_BIN set to the freshly built programs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if [ $# -gt 0 ]; then
  scripts=()
  for n in "$@"; do
    [ -x "$HERE/$n/run.sh" ] || { echo "bench/run.sh: no benchmark '$n' (bench/$n/run.sh)" >&2; exit 2; }
    scripts+=("$HERE/$n/run.sh")
  done
else
  scripts=("$HERE"/*/run.sh)
fi
failed=0
for s in "${scripts[@]}"; do
  name=$(basename "$(dirname "$s")")
  echo "== bench/$name" >&2
  start=$(date +%s)
  if "$s"; then
    echo "== bench/$name: ok in $(( $(date +%s) - start )) s; report in bench/$name/REPORT.md" >&2
  else
    echo "== bench/$name: FAILED" >&2
    failed=1
  fi
done
exit $failed
