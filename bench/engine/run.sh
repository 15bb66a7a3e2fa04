#!/usr/bin/env bash
# bench/engine/run.sh -- throughput and peak memory of mpu's CPU training
# engine (`mpu train`, `mpu score`) against an eager float32 PyTorch baseline
# (bench/engine/torch_step.py, the plain-torch Llama of
# tests/fixtures/engine/make_fixtures.py) on a ~10M and a ~100M parameter
# Llama, with 1 and 2 threads.
#
# Everything is rerun from scratch and bench/engine/REPORT.md rewritten.  Every
# speed figure is a ratio against the torch baseline measured in the same
# invocation, interleaved (torch, mpu, torch, mpu, ...) and repeated; the
# report gives the median of the per-repetition ratios and their min-max.
# With 2 threads each repetition also runs both engines under
# OMP_WAIT_POLICY=PASSIVE (torch, mpu, torch+passive, mpu+passive).
#
# Environment:
#   MPU_BIN        where the programs are (default: <repo>/bin); they are copied
#                  to a private directory first, so a rebuild cannot race us
#   BENCH_SCRATCH  scratch directory outside the repository (default
#                  /work/bench-scratch if it exists, else /var/tmp/mpu-bench);
#                  needs about 1.5 GB free; emptied at the end
#   REPS           repetitions of the 100M measurements (default 3, >= 3)
#   REPS_SMALL     repetitions of the 10M measurements (default 5, >= 3)
#   PROFILE=0      skip the perf profiles of mpu (default: profile if perf works)
#   LOCK, LOCK_WAIT  the benchmarks' lock (bench/lib/common.sh: flock on
#                  /work/bench-scratch/bench.lock, so that no two benchmarks
#                  measure at once; wait at most LOCK_WAIT s, default 2700)
#   KEEP=1         keep the scratch files
#   QUICK=1        tiny workloads, to smoke-test this script (not a measurement);
#                  the report goes to $BENCH_SCRATCH/engine-REPORT-quick.md
set -euo pipefail
export LC_ALL=C

REPS=${REPS:-3}
REPS_SMALL=${REPS_SMALL:-5}
PROFILE=${PROFILE:-1}
[ "$REPS" -ge 3 ] && [ "$REPS_SMALL" -ge 3 ] || { echo "$0: REPS and REPS_SMALL must be >= 3" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/common.sh"
bench_lock
bench_scratch engine
REPORT=$HERE/REPORT.md
[ "${QUICK:-0}" = 1 ] && REPORT=$BENCH_SCRATCH/engine-REPORT-quick.md
T_START=$(date +%s)

# ------------------------------------------------------------------ the workloads
# name  config  B  T  warm-up steps  timed steps
TRAIN_SMALL=(10m "$HERE/config-10m.json" 4 256 2 6)
TRAIN_BIG=(100m "$HERE/config-100m.json" 2 256 2 3)
# scoring: the 100M model, B x T per forward pass, warm-up batches, timed batches
SCORE=(100m "$HERE/config-100m.json" 4 256 1 3)
if [ "${QUICK:-0}" = 1 ]; then   # a smoke test of this script, not a measurement
  TRAIN_SMALL=(10m "$HERE/config-10m.json" 2 64 1 1)
  TRAIN_BIG=(100m "$HERE/config-100m.json" 1 32 1 1)
  SCORE=(100m "$HERE/config-100m.json" 1 32 1 1)
fi
THREADS=(1 2)
LR=1e-5

# ------------------------------------------------------------------ tools, scratch, private binaries
need_gnu_time
need_tools python3 stdbuf
need_torch
rm -rf "$S"
mkdir -p "$S/runs"
scratch_cleanup_trap
copy_programs "$S/bin"
MPU=$S/bin/mpu
# the sources beside the programs, for the profile's source lines
mkdir -p "$S/src/lib"
cp -p "$ROOT"/lib/*.c "$ROOT"/lib/*.h "$S/src/lib/" 2>/dev/null || true
"$MPU" train --version >/dev/null 2>&1 || die "no working mpu in $SRC_BIN (run make)"
need_free_kb 1500000

# RES: bench model threads engine rep tokens_per_s wall user sys maxrss_kb first_loss
results_init
H="python3 $HERE/report.py"

# ------------------------------------------------------------------ machine state
machine_facts "$S/bin/mpu-train"
fact src_newer "$(sources_newer "$S/bin/mpu-train" lib)"
if grep -aq 'OMP_WAIT_POLICY' "$S/bin/mpu-train"; then fact mpu_passive "yes (sets OMP_WAIT_POLICY=PASSIVE unless the user set it or GOMP_SPINCOUNT)"
else fact mpu_passive "no"; fi
build_facts "$S/bin/mpu-train"
fact load_start "$(machine_load)"
STAT0=$(head -1 /proc/stat)
fact reps "$REPS"
fact reps_small "$REPS_SMALL"
fact quick "${QUICK:-0}"

# ------------------------------------------------------------------ models and data
declare -A MODEL
for m in 10m 100m; do
  cfg=$HERE/config-$m.json
  t0=$EPOCHREALTIME
  "$MPU" init --config "$cfg" --dtype f32 --tokenizer none --store -q -o "$S/m$m.mpuc" || die "mpu init $m"
  fact "init_s_$m" "$(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $t0}")"
  fact "params_$m" "$(fixture_params "$cfg")"
  fact "file_bytes_$m" "$(stat -c %s "$S/m$m.mpuc")"
  MODEL[$m]=$S/m$m.mpuc
done
cmd_once init "mpu init --config bench/engine/config-MODEL.json --dtype f32 --tokenizer none --store -o mMODEL.mpuc"
set -- "${TRAIN_SMALL[@]}"; gen_tokens "$(vocab_of "$2")" $(( $3 * ($5 + $6) )) "$4" 1 >"$S/train-$1.jsonl"
set -- "${TRAIN_BIG[@]}";   gen_tokens "$(vocab_of "$2")" $(( $3 * ($5 + $6) )) "$4" 2 >"$S/train-$1.jsonl"
set -- "${SCORE[@]}";       gen_tokens "$(vocab_of "$2")" $(( $3 * ($5 + $6) )) "$4" 3 >"$S/score-$1.jsonl"

torch_import_rss

# ------------------------------------------------------------------ one measurement each
train_torch() {  # name cfg B T W K N rep
  local out=$S/runs/train-$1-torch$VTAG-$7-$8.json
  cmd_once "train torch $1" "OMP_NUM_THREADS=N OPENBLAS_NUM_THREADS=N MKL_NUM_THREADS=N /usr/bin/python3 bench/engine/torch_step.py train --config bench/engine/config-$1.json --data train-$1.jsonl --batch $3 --warmup $5 --steps $6 --threads N --lr $LR"
  timed env "${VENV[@]}" OMP_NUM_THREADS="$7" OPENBLAS_NUM_THREADS="$7" MKL_NUM_THREADS="$7" "$TORCH_PY" "$HERE/torch_step.py" train --config "$2" --data "$S/train-$1.jsonl" \
    --batch "$3" --warmup "$5" --steps "$6" --threads "$7" --lr $LR >"$out" || die "torch train $1 N=$7"
  record train "$1" "$7" torch$VTAG "$8" "$($RC field "$out" tokens_per_s)" -- "$($RC field "$out" losses.0)"
}
train_mpu() {  # name cfg B T W K N rep
  local lg=$S/runs/train-$1-mpu$VTAG-$7-$8.log
  cmd_once "train mpu $1" "mpu train -q --data train-$1.jsonl --batch $3 --epochs 1 --lr $LR --no-shuffle --threads N --log LOG.jsonl --store --force -o out.mpuc m$1.mpuc"
  timed env "${VENV[@]}" "$MPU" train -q --data "$S/train-$1.jsonl" --batch "$3" --epochs 1 --lr $LR --no-shuffle --threads "$7" \
    --log "$lg" --store --force -o "$S/out.mpuc" "${MODEL[$1]}" || die "mpu train $1 N=$7"
  record train "$1" "$7" mpu$VTAG "$8" "$($RC mpulog "$lg" "$5" "$6")" -- "$($RC field "$lg" loss)"
  rm -f "$S/out.mpuc"
}
score_torch() {  # name cfg B T W K N rep
  local out=$S/runs/score-$1-torch$VTAG-$7-$8.json
  cmd_once "score torch $1" "OMP_NUM_THREADS=N OPENBLAS_NUM_THREADS=N MKL_NUM_THREADS=N /usr/bin/python3 bench/engine/torch_step.py score --config bench/engine/config-$1.json --data score-$1.jsonl --batch $3 --warmup $5 --threads N"
  timed env "${VENV[@]}" OMP_NUM_THREADS="$7" OPENBLAS_NUM_THREADS="$7" MKL_NUM_THREADS="$7" "$TORCH_PY" "$HERE/torch_step.py" score --config "$2" --data "$S/score-$1.jsonl" \
    --batch "$3" --warmup "$5" --threads "$7" >"$out" || die "torch score $1 N=$7"
  record score "$1" "$7" torch$VTAG "$8" "$($RC field "$out" tokens_per_s)" -- "$($RC field "$out" mean_nll)"
}
score_mpu() {  # name cfg B T W K N rep
  local st=$S/runs/score-$1-mpu$VTAG-$7-$8.tsv
  cmd_once "score mpu $1" "stdbuf -oL mpu score --data score-$1.jsonl --batch $3 --threads N m$1.mpuc | report.py stamp"
  # stdbuf makes mpu's stdout line-buffered, so each batch's lines arrive when
  # that batch is done; report.py stamp timestamps them as they come.
  set -o pipefail
  timed env "${VENV[@]}" stdbuf -oL "$MPU" score --data "$S/score-$1.jsonl" --batch "$3" --threads "$7" "${MODEL[$1]}" \
    | $H stamp >"$st" || die "mpu score $1 N=$7"
  record score "$1" "$7" mpu$VTAG "$8" "$($H stamprate "$st" "$3" "$4" "$5")" -- "$($H stampnll "$st" "$4")"
}

VENV=(); VTAG=
block() {  # kind reps name cfg B T W K
  local kind=$1 reps=$2; shift 2
  for n in "${THREADS[@]}"; do
    log "$kind $1 (B=$3 T=$4, $5 warm-up + $6 timed), threads $n: $reps x (torch, mpu)"
    for r in $(seq 1 "$reps"); do
      # with more than one thread, also both engines with OMP_WAIT_POLICY=PASSIVE
      # (OpenMP's idle threads sleep instead of spinning: see the report)
      local variants=default
      [ "$n" -gt 1 ] && variants="default passive"
      for v in $variants; do
        if [ $v = passive ]; then VENV=(OMP_WAIT_POLICY=PASSIVE); VTAG=+passive; else VENV=(); VTAG=; fi
        "${kind}_torch" "$@" "$n" "$r"
        "${kind}_mpu" "$@" "$n" "$r"
        log "  rep $r$VTAG: $(tail -2 "$RES" | awk -F'\t' '{printf "%s %.1f tok/s %.0f MB  ", $4, $6, $10 / 1024}')"
      done
    done
  done
}
T_MEASURE=$(date +%s)
cmd_once "2 threads, passive" "the same commands with OMP_WAIT_POLICY=PASSIVE added to the environment"
block train "$REPS_SMALL" "${TRAIN_SMALL[@]}"
block train "$REPS" "${TRAIN_BIG[@]}"
block score "$REPS" "${SCORE[@]}"
# the CPU time the rest of the machine used while we measured (ours: user + sys)
measurements_done "$T_MEASURE" "8 9"

# ------------------------------------------------------------------ profiles
# perf with DWARF call graphs, one thread, so each op's share of the run can
# be read off as "children" time of its function in lib/ops.c / lib/model.c.
PROF=$S/prof
mkdir -p "$PROF"
if [ "$PROFILE" = 1 ] && perf_usable "$PROF"; then
  set -- "${TRAIN_SMALL[@]}"
  head -n $(( $3 * 6 )) "$S/train-$1.jsonl" >"$PROF/train-$1.jsonl"
  perf_profile "$PROF" "train-$1" 499 "$S/bin/mpu-train" -q --data "$PROF/train-$1.jsonl" --batch "$3" --epochs 1 --lr $LR --no-shuffle \
    --threads 1 --store --force -o "$S/out.mpuc" "${MODEL[$1]}"
  set -- "${TRAIN_BIG[@]}"
  head -n $(( $3 * 4 )) "$S/train-$1.jsonl" >"$PROF/train-$1.jsonl"
  perf_profile "$PROF" "train-$1" 99 "$S/bin/mpu-train" -q --data "$PROF/train-$1.jsonl" --batch "$3" --epochs 1 --lr $LR --no-shuffle \
    --threads 1 --store --force -o "$S/out.mpuc" "${MODEL[$1]}"
  set -- "${SCORE[@]}"
  head -n $(( $3 * 3 )) "$S/score-$1.jsonl" >"$PROF/score-$1.jsonl"
  perf_profile "$PROF" "score-$1" 199 "$S/bin/mpu-score" --data "$PROF/score-$1.jsonl" --batch "$3" --threads 1 "${MODEL[$1]}"
  rm -f "$S/out.mpuc"
  fact profile "OMP_WAIT_POLICY=PASSIVE perf record -F FREQ --call-graph dwarf,16384 (1 thread): train-10m 6 steps at 499 Hz, train-100m 4 steps at 99 Hz, score-100m 3 batches at 199 Hz"
else
  fact profile "skipped"
fi

# ------------------------------------------------------------------ report
fact total_s "$(( $(date +%s) - T_START ))"
write_report "$REPORT" python3 "$HERE/report.py" write --results "$RES" --facts "$FACTS" --commands "$CMDS" --prof "$PROF" \
  --root "$ROOT" --src "$S/src" --train-small "${TRAIN_SMALL[*]}" --train-big "${TRAIN_BIG[*]}" --score "${SCORE[*]}"
log "done in $(( $(date +%s) - T_START )) s"
