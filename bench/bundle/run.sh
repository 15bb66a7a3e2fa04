#!/usr/bin/env bash
# bench/bundle/run.sh -- mpu pack and mpu unpack on a ~2 GB round (a bf16
# model of 0.53 GB and three perturbed copies of it, split into one stream
# each: four .mpuc files), as throughput ratios to GNU tar on the same files:
#
#   pack:    mpu pack -o B.tar FILES      vs  tar cf T.tar FILES
#   unpack:  mpu unpack -C DIR B.tar      vs  tar xf B.tar -C DIR   (the same bundle)
#
# plus `mpu verify FILES` and `b2sum FILES` alone, which say where pack's
# and unpack's extra time goes (pack verifies and hashes every byte it copies;
# unpack hashes what it writes, then reads every stream back to verify it).
# Baseline and mpu run interleaved in the same repetition (tar, mpu, tar, mpu,
# ...), inputs in the page cache, outputs to files in scratch (after a sync);
# the report gives the median of the per-repetition ratios and their range.
# Everything is rerun and bench/bundle/REPORT.md rewritten.
#
# The script runs under /work/bench-scratch/bench.lock (flock; taken here,
# waiting at most 45 minutes, unless an ancestor already holds it: bench/lib).
#
# Environment:
#   MPU_BIN        the programs (default <repo>/bin); copied to scratch first
#   BENCH_SCRATCH  scratch outside the repository (default /work/bench-scratch
#                  if it exists, else /var/tmp/mpu-bench); needs ~12 GB free;
#                  emptied at the end
#   REPS           repetitions (default 3, >= 2)
#   LOCK           the lock file (default /work/bench-scratch/bench.lock)
#   KEEP=1         keep the scratch files
#   CONFIG, REPORT the model config (default bench/bundle/config.json) and the
#                  report (default bench/bundle/REPORT.md): for smoke tests
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOCK=${LOCK:-/work/bench-scratch/bench.lock}
REPS=${REPS:-3}
CONFIG=${CONFIG:-$HERE/config.json}
REPORT=${REPORT:-$HERE/REPORT.md}
[ "$REPS" -ge 2 ] || { echo "$0: REPS must be >= 2" >&2; exit 2; }
# log, die and the lock (bench_lock) are the benchmarks' shared ones.
. "$HERE/../lib/common.sh"
bench_lock "$0" "$@"
T_START=$(date +%s)

SRC_BIN=${MPU_BIN:-$ROOT/bin}
if [ -z "${BENCH_SCRATCH:-}" ]; then
  if [ -d /work/bench-scratch ] && [ -w /work/bench-scratch ]; then BENCH_SCRATCH=/work/bench-scratch
  else BENCH_SCRATCH=/var/tmp/mpu-bench; fi
fi
S=$BENCH_SCRATCH/bundle
case "$S/" in "$ROOT"/*) echo "$0: scratch $S is inside the repository" >&2; exit 2 ;; esac
for t in tar b2sum python3 flock; do command -v $t >/dev/null || die "$t is missing"; done

rm -rf "$S"
mkdir -p "$S/bin" "$S/run"
cleanup() { if [ "${KEEP:-0}" = 1 ]; then log "kept $S"; else rm -rf "$S"; fi; }
trap cleanup EXIT
for f in "$SRC_BIN"/mpu*; do [ -f "$f" ] && [ -x "$f" ] && cp -p "$f" "$S/bin/"; done
MPU=$S/bin/mpu
"$MPU" pack --version >/dev/null || die "no mpu pack in $SRC_BIN (run make)"
free_kb=$(df -Pk "$S" | awk 'NR==2 {print $4}')
[ "$free_kb" -gt 12000000 ] || die "$S: need about 12 GB free"

RES=$S/results.tsv FACTS=$S/facts.tsv
: >"$RES"; : >"$FACTS"
fact() { printf '%s\t%s\n' "$1" "$2" >>"$FACTS"; }
measure() {  # label rep command: wall seconds (bash's clock) and CPU seconds of the children
  local label=$1 rep=$2 cmd=$3 t0 t1 c0 c1
  sync
  c0=$(awk '{print $16 + $17}' /proc/$$/stat)
  t0=$EPOCHREALTIME
  bash -c "set -o pipefail; $cmd" >/dev/null || die "$label: $cmd"
  t1=$EPOCHREALTIME
  c1=$(awk '{print $16 + $17}' /proc/$$/stat)
  printf '%s\t%s\t%s\t%s\n' "$label" "$rep" "$(awk "BEGIN {printf \"%.4f\", $t1 - $t0}")" \
    "$(awk "BEGIN {printf \"%.2f\", ($c1 - $c0) / $(getconf CLK_TCK)}")" >>"$RES"
}

fact date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
fact nproc "$(nproc)"
fact cpu "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
fact tar "$(tar --version | head -1)"
fact libarchive "$(bsdtar --version 2>/dev/null | head -1 || echo '?')"
fact mpu "$("$MPU" pack --version | head -1)"
fact git "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
fact load_start "$(uptime | sed 's/.*load average: //')"
fact reps "$REPS"

log "making the round: mpu init (bf16, 0.53 GB), perturb --copies 3 --dtype keep | split"
cd "$S/run"
t0=$(date +%s)
"$MPU" init --config "$CONFIG" --dtype bf16 -q -o model.mpuc
"$MPU" keygen -o server.key
"$MPU" perturb --key server.key --copies 3 --kappa 0.01 --dtype keep -q model.mpuc 2>/dev/null |
  "$MPU" split -q -o 'copy-%d.mpuc'
rm -f server.key
fact gen_seconds "$(( $(date +%s) - t0 ))"
FILES="model.mpuc copy-1.mpuc copy-2.mpuc copy-3.mpuc"
bytes=$(cat $FILES | wc -c)
fact files "$FILES"
fact bytes "$bytes"
"$MPU" pack -q -o bundle.tar $FILES
fact bundle_bytes "$(stat -c %s bundle.tar)"

warm() { cat "$@" >/dev/null; }
for r in $(seq "$REPS"); do
  log "repetition $r of $REPS"
  warm $FILES
  rm -f t.tar b.tar
  measure tar-cf "$r" "tar cf t.tar $FILES"
  rm -f t.tar
  measure mpu-pack "$r" "$MPU pack -q -o b.tar $FILES"
  cmp b.tar bundle.tar || die "pack is not reproducible"
  rm -f b.tar
  warm bundle.tar
  rm -rf x; mkdir x
  measure tar-xf "$r" "tar xf bundle.tar -C x"
  rm -rf x; mkdir x
  measure mpu-unpack "$r" "$MPU unpack -q -C x bundle.tar"
  cmp x/copy-3.mpuc copy-3.mpuc || die "unpack changed a stream"
  rm -rf x
  warm $FILES
  measure verify "$r" "$MPU verify -q $FILES"
  measure b2sum "$r" "b2sum $FILES"
done
fact load_end "$(uptime | sed 's/.*load average: //')"
fact total_seconds "$(( $(date +%s) - T_START ))"
python3 "$HERE/report.py" "$S" >"$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
log "done in $(( $(date +%s) - T_START )) s: $REPORT"
