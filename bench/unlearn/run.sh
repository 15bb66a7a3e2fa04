#!/usr/bin/env bash
# bench/unlearn/run.sh -- unlearning-step throughput and peak memory of
# `mpu unlearn --algo npo` and `--algo graddiff` against the same losses in
# eager float32 PyTorch (bench/unlearn/torch_unlearn.py, on the plain-torch
# Llama of tests/fixtures/engine/make_fixtures.py and the losses of
# tests/fixtures/unlearn/make_fixtures.py), same model weights, same batches,
# same thread count: the ~10M Llama of bench/engine with 1 and 2 threads, and
# the ~100M one with 1 thread.
#
# Method as bench/engine (the helpers are bench/lib's): everything is rerun from
# scratch and bench/unlearn/REPORT.md rewritten; every speed figure is a ratio
# against the torch baseline measured in the same invocation, interleaved
# (torch, mpu, torch, mpu, ...) and repeated; the report gives the median of the
# per-repetition ratios and their min-max.  It runs under the benchmarks' lock
# (bench/lib/common.sh bench_lock: flock on /work/bench-scratch/bench.lock), so
# no other benchmark measures at the same time.
#
# Environment:
#   MPU_BIN        where the programs are (default: <repo>/bin); they are copied
#                  to a private directory first, so a rebuild cannot race us
#   BENCH_SCRATCH  scratch directory outside the repository (default
#                  /work/bench-scratch if it exists, else /var/tmp/mpu-bench);
#                  needs about 1.5 GB free; emptied at the end
#   REPS           repetitions of each (model, threads, algorithm) (default 3, >= 3)
#   BIG=0          skip the 100M model (about 4 of the run's ~11 minutes)
#   PROFILE=0      skip the perf profile of mpu (default: profile if perf works)
#   LOCK_WAIT      seconds to wait for the lock before giving up (exit 3;
#                  default 2700)
#   KEEP=1         keep the scratch files
#   QUICK=1        tiny workloads, to smoke-test this script (not a measurement);
#                  the report goes to $BENCH_SCRATCH/unlearn-REPORT-quick.md
set -euo pipefail
export LC_ALL=C

REPS=${REPS:-3}
BIG=${BIG:-1}
PROFILE=${PROFILE:-1}
[ "$REPS" -ge 3 ] || { echo "$0: REPS must be >= 3" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/common.sh"
ENGINE=$ROOT/bench/engine          # the configs shared with bench/engine
bench_lock
bench_scratch unlearn
REPORT=$HERE/REPORT.md
[ "${QUICK:-0}" = 1 ] && REPORT=$BENCH_SCRATCH/unlearn-REPORT-quick.md
T_START=$(date +%s)

# ------------------------------------------------------------------ the workloads
# name  config  B (forget rows per step; as many retain rows)  T  warm-up steps  timed steps  threads...
SMALL=(10m "$ENGINE/config-10m.json" 2 256 2 4)
SMALL_THREADS=(1 2)
BIGW=(100m "$ENGINE/config-100m.json" 1 256 1 2)
BIG_THREADS=(1)
PROF_STEPS=6                      # steps of the profiled run (10m, npo, 1 thread)
if [ "${QUICK:-0}" = 1 ]; then    # a smoke test of this script, not a measurement
  SMALL=(10m "$ENGINE/config-10m.json" 1 32 1 1)
  BIGW=(100m "$ENGINE/config-100m.json" 1 16 1 1)
  PROF_STEPS=2
fi
ALGOS=(npo graddiff)
LR=1e-5
WD=0.01
MODELS=(10m)
[ "$BIG" = 1 ] && MODELS+=(100m)

# ------------------------------------------------------------------ tools, scratch, private binaries
need_gnu_time
need_tools python3
need_torch
[ -f "$ENGINE/torch_step.py" ] || die "bench/engine/torch_step.py is missing"
rm -rf "$S"
mkdir -p "$S/runs"
scratch_cleanup_trap
copy_programs "$S/bin"
MPU=$S/bin/mpu
"$MPU" unlearn --version >/dev/null 2>&1 || die "no working mpu unlearn in $SRC_BIN (run make)"
need_free_kb 1500000

# RES: model threads algo engine rep tokens_per_s wall user sys maxrss_kb first_loss last_loss ref_s outside_s
results_init
H="python3 $HERE/report.py"

# ------------------------------------------------------------------ machine state
machine_facts "$S/bin/mpu-unlearn"
build_facts "$S/bin/mpu-unlearn"
fact load_start "$(machine_load)"
STAT0=$(head -1 /proc/stat)
fact reps "$REPS"
fact quick "${QUICK:-0}"

# ------------------------------------------------------------------ models and data
declare -A MODEL WEIGHTS
for m in "${MODELS[@]}"; do
  cfg=$ENGINE/config-$m.json
  "$MPU" init --config "$cfg" --dtype f32 --tokenizer none --store -q -o "$S/m$m.mpuc" || die "mpu init $m"
  # the same weights for PyTorch
  "$MPU" export -q -o "$S/m$m.safetensors" "$S/m$m.mpuc" || die "mpu export $m"
  fact "params_$m" "$(fixture_params "$cfg")"
  MODEL[$m]=$S/m$m.mpuc
  WEIGHTS[$m]=$S/m$m.safetensors
done
cmd_once init "mpu init --config bench/engine/config-MODEL.json --dtype f32 --tokenizer none --store -o mMODEL.mpuc && mpu export -o mMODEL.safetensors mMODEL.mpuc"
# forget and retain sets: exactly B x (W + K) rows each, so one epoch is W + K steps
set -- "${SMALL[@]}"; V=$(vocab_of "$2")
gen_tokens "$V" $(( $3 * ($5 + $6) )) "$4" 11 >"$S/forget-$1.jsonl"; gen_tokens "$V" $(( $3 * ($5 + $6) )) "$4" 12 >"$S/retain-$1.jsonl"
if [ "$BIG" = 1 ]; then
  set -- "${BIGW[@]}"; V=$(vocab_of "$2")
  gen_tokens "$V" $(( $3 * ($5 + $6) )) "$4" 21 >"$S/forget-$1.jsonl"; gen_tokens "$V" $(( $3 * ($5 + $6) )) "$4" 22 >"$S/retain-$1.jsonl"
fi

torch_import_rss

# ------------------------------------------------------------------ one measurement each
run_torch() {  # algo name cfg B T W K N rep
  local out=$S/runs/$2-$1-torch-$8-$9.json
  cmd_once "torch $2" "OMP_NUM_THREADS=N OPENBLAS_NUM_THREADS=N MKL_NUM_THREADS=N /usr/bin/python3 bench/unlearn/torch_unlearn.py --algo ALGO --config bench/engine/config-$2.json --weights m$2.safetensors --forget forget-$2.jsonl --retain retain-$2.jsonl --batch $4 --warmup $6 --steps $7 --threads N --lr $LR --weight-decay $WD"
  timed env OMP_NUM_THREADS="$8" OPENBLAS_NUM_THREADS="$8" MKL_NUM_THREADS="$8" "$TORCH_PY" "$HERE/torch_unlearn.py" --algo "$1" \
    --config "$3" --weights "${WEIGHTS[$2]}" --forget "$S/forget-$2.jsonl" --retain "$S/retain-$2.jsonl" \
    --batch "$4" --warmup "$6" --steps "$7" --threads "$8" --lr $LR --weight-decay $WD >"$out" || die "torch $1 $2 N=$8"
  local ref; ref=$($RC field "$out" ref_seconds)
  record "$2" "$8" "$1" torch "$9" "$($RC field "$out" tokens_per_s)" -- "$($RC field "$out" losses.0)" \
    "$($RC field "$out" losses.$(( $6 + $7 - 1 )))" "${ref/None/NA}" NA
}
run_mpu() {  # algo name cfg B T W K N rep
  local lg=$S/runs/$2-$1-mpu-$8-$9.log
  cmd_once "mpu $2" "mpu unlearn -q --algo ALGO --forget forget-$2.jsonl --retain retain-$2.jsonl --batch $4 --grad-accum 1 --epochs 1 --lr $LR --weight-decay $WD --max-grad-norm 1 --schedule constant --warmup-steps 0 --no-shuffle --pairing cycle --threads N --log LOG.jsonl --store --force -o out.mpuc m$2.mpuc"
  timed "$MPU" unlearn -q --algo "$1" --forget "$S/forget-$2.jsonl" --retain "$S/retain-$2.jsonl" --batch "$4" --grad-accum 1 \
    --epochs 1 --lr $LR --weight-decay $WD --max-grad-norm 1 --schedule constant --warmup-steps 0 --no-shuffle --pairing cycle \
    --threads "$8" --log "$lg" --store --force -o "$S/out.mpuc" "${MODEL[$2]}" || die "mpu unlearn $1 $2 N=$8"
  local wall; wall=$(awk '{print $1}' "$S/time.out")
  record "$2" "$8" "$1" mpu "$9" "$($H mpurate "$lg" "$6" "$7" $(( 2 * $4 * $5 )))" -- "$($RC field "$lg" loss)" \
    "$($RC lastfield "$lg" loss)" NA "$($H outside "$lg" "$wall")"
  rm -f "$S/out.mpuc"
}

block() {  # reps name cfg B T W K -- threads...
  local reps=$1; shift
  local args=("$1" "$2" "$3" "$4" "$5" "$6"); shift 7
  for n in "$@"; do
    log "${args[0]} (B=${args[2]} forget + ${args[2]} retain rows, T=${args[3]}, ${args[4]} warm-up + ${args[5]} timed steps), threads $n: $reps x (torch, mpu) x (${ALGOS[*]})"
    for r in $(seq 1 "$reps"); do
      for algo in "${ALGOS[@]}"; do
        run_torch "$algo" "${args[@]}" "$n" "$r"
        run_mpu "$algo" "${args[@]}" "$n" "$r"
        log "  rep $r $algo: $(tail -2 "$RES" | awk -F'\t' '{printf "%s %.1f tok/s %.0f MB  ", $4, $6, $10 / 1024}')"
      done
    done
  done
}
T_MEASURE=$(date +%s)
block "$REPS" "${SMALL[@]}" -- "${SMALL_THREADS[@]}"
[ "$BIG" = 1 ] && block "$REPS" "${BIGW[@]}" -- "${BIG_THREADS[@]}"
# the CPU time the rest of the machine used while we measured (ours: user + sys)
measurements_done "$T_MEASURE" "8 9"

# ------------------------------------------------------------------ profile
# perf with DWARF call graphs, one thread, npo on the 10M model: the reference
# pass (unlearn_init) and the steps (train_run) are both in it.
PROF=$S/prof
mkdir -p "$PROF"
if [ "$PROFILE" = 1 ] && perf_usable "$PROF"; then
  set -- "${SMALL[@]}"
  name="unlearn-npo-$1"
  head -n $(( $3 * PROF_STEPS )) "$S/forget-$1.jsonl" >"$PROF/forget.jsonl"
  head -n $(( $3 * PROF_STEPS )) "$S/retain-$1.jsonl" >"$PROF/retain.jsonl"
  perf_profile "$PROF" "$name" 499 "$S/bin/mpu-unlearn" -q --algo npo \
    --forget "$PROF/forget.jsonl" --retain "$PROF/retain.jsonl" --batch "$3" --grad-accum 1 --epochs 1 --lr $LR \
    --weight-decay $WD --schedule constant --warmup-steps 0 --no-shuffle --pairing cycle --threads 1 \
    --store --force -o "$S/out.mpuc" "${MODEL[$1]}"
  rm -f "$S/out.mpuc"
  fact profile "OMP_WAIT_POLICY=PASSIVE perf record -F 499 --call-graph dwarf,16384: mpu unlearn --algo npo, ${1} model, B=$3 forget + $3 retain rows, $PROF_STEPS steps, 1 thread"
  fact profile_name "$name"
else
  fact profile "skipped"
fi

# ------------------------------------------------------------------ report
fact total_s "$(( $(date +%s) - T_START ))"
write_report "$REPORT" python3 "$HERE/report.py" write --results "$RES" --facts "$FACTS" --commands "$CMDS" --prof "$PROF" \
  --root "$ROOT" --small "${SMALL[*]}" --big "${BIGW[*]}"
log "done in $(( $(date +%s) - T_START )) s"
