#!/usr/bin/env bash
# reproduce.sh [PRESET] -- the paper's headline experiment, end to end, on
# data and models this project makes itself (`make reproduce PRESET=small`).
#
#   1. mpu synth: a TOFU-style benchmark (fictitious authors, forget/retain/
#      holdout splits, general facts) from a fixed seed.
#   2. Per seed: mpu init, then mpu train a "full" model (all authors + the
#      general facts) and a "retain" model (without the forget split); mpu
#      eval both (the retain model's evaluation is the reference for forget
#      quality and privleak).
#   3. Per seed and algorithm, from the full model:
#        base        the noise-free baseline: plain `mpu unlearn`, 10 epochs
#                    (OpenUnlearning's trainer: 1 warm-up epoch, linear decay)
#        k0          MPU's round structure without noise (kappa 0, M = 2)
#        k0.01 ...   MPU, M = 2, at each kappa of the preset
#        mean<K>     MPU at kappa K, but the plain mean of the two updates
#        copy<K>     MPU at kappa K, copy 1's update alone (no denoising)
#      An MPU run is R rounds of perturb -> unlearn (each copy, E epochs, a
#      fresh AdamW with constant lr and no warm-up, as the official client
#      loop) -> invert -> denoise, with R x E = 10 split per algorithm as the
#      paper's scripts split it.
#   4. mpu eval of every result; report.py writes REPORT-<preset>.md, the
#      plots and results-<preset>.json beside this script (or in REPORT_DIR).
#
# Every step's output is kept in the work directory (REPRO_DIR, default
# build/reproduce/<preset>) and skipped when it exists, so an interrupted run
# resumes where it stopped.  ONLY=models stops after step 2; REPRO_SEEDS and
# REPRO_JOBS override the preset's seeds and parallel jobs.  Each seed's server key is derived from the seed
# (this is an experiment, not a deployment), so a rerun gives the same bytes.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PRESET=${1:-${PRESET:-small}}
[ -f "$HERE/presets/$PRESET.sh" ] || {
  echo "reproduce.sh: no preset '$PRESET' (have: $(cd "$HERE/presets" && ls | sed 's/\.sh$//' | tr '\n' ' '))" >&2
  exit 2
}
# shellcheck source=/dev/null
. "$HERE/presets/$PRESET.sh"
# Overrides for a run that has more time (or cores) than the preset assumes.
SEEDS=${REPRO_SEEDS:-$SEEDS} JOBS=${REPRO_JOBS:-$JOBS}
export PATH="${MPU_BIN:-$ROOT/bin}:$PATH"
W=${REPRO_DIR:-$ROOT/build/reproduce/$PRESET}
mkdir -p "$W"
W=$(cd "$W" && pwd)
PY=${PYTHON:-python3}

# R x E per algorithm (the official scripts' get_round_epoch_pair_for_method).
rounds_of() {
  case $1 in
    simnpo | idkdpo | satimp) echo 10 ;;
    npo | wga) echo 2 ;;
    *) echo 1 ;;
  esac
}

log() { printf '%s [reproduce %s] %s\n' "$(date -u +%H:%M:%S)" "$PRESET" "$*" >&2; }

# ---- data ----
data=$W/data
if [ ! -d "$data" ]; then
  log "synth: $AUTHORS authors x $QA questions, $FACTS facts, forget$SPLIT"
  mpu synth -q --seed "${SYNTH_SEED:-0}" --authors "$AUTHORS" --qa "$QA" --facts "$FACTS" \
    --splits "$SPLIT" -o "$data"
fi
forget=$data/forget$SPLIT.jsonl
holdout=$data/holdout$SPLIT.jsonl
retain=$data/retain$((100 - SPLIT)).jsonl
# The retain side of the evaluation: the first RETAIN_EVAL items (TOFU keeps
# a subset too), so evaluating does not cost more than unlearning.
retain_eval=$data/retain_eval.jsonl
[ -f "$retain_eval" ] || head -n "${RETAIN_EVAL:-400}" "$data/retain_perturbed.jsonl" > "$retain_eval"
cat "$data/full.jsonl" "$data/general.jsonl" > "$data/train_full.jsonl"
cat "$retain" "$data/general.jsonl" > "$data/train_retain.jsonl"

eval_opts=(--forget "$forget" --retain "$retain_eval" --holdout "$holdout" --world "$data/world_facts.jsonl"
  --max-new "$EVAL_MAX_NEW" --threads "$THREADS" --json)

# atomically FILE CMD...: CMD's standard output into FILE, only if it succeeds.
atomically() {
  local f=$1; shift
  "$@" > "$f.tmp" && mv "$f.tmp" "$f" || { rm -f "$f.tmp"; return 1; }
}

# ---- per seed: the models ----
train_model() { # seed which data
  local s=$1 which=$2 d=$W/seed$1
  [ -f "$d/$which.mpuc" ] && return 0
  log "seed $s: train $which ($TRAIN_EPOCHS epochs)"
  local t0=$SECONDS
  mpu train -q --data "$3" --lr "$TRAIN_LR" --epochs "$TRAIN_EPOCHS" --batch "$TRAIN_BATCH" \
    --warmup-steps 10 --seed "$s" --threads "$THREADS" -o "$d/$which.mpuc" "$d/init.mpuc"
  echo $((SECONDS - t0)) > "$d/$which.seconds"
}

prepare_seed() { # seed
  local s=$1 d=$W/seed$1
  mkdir -p "$d"
  if [ ! -f "$d/server.key" ]; then
    # A key derived from the seed: reruns reproduce every stream bit for bit.
    (umask 077 && printf 'mpu-server-key-v1 %s\n' \
      "$(printf 'mpu reproduce %s seed %s' "$PRESET" "$s" | sha256sum | cut -c1-64)" > "$d/server.key")
  fi
  [ -f "$d/init.mpuc" ] || mpu init -q --config "$HERE/$CONFIG" --seed "$s" -o "$d/init.mpuc"
  train_model "$s" full "$data/train_full.jsonl" &
  local p1=$!
  train_model "$s" retain "$data/train_retain.jsonl" &
  local p2=$!
  wait $p1 && wait $p2
  [ -f "$d/retain.eval.json" ] || { log "seed $s: eval retain"; atomically "$d/retain.eval.json" mpu eval -q "${eval_opts[@]}" "$d/retain.mpuc"; }
  [ -f "$d/full.eval.json" ] || { log "seed $s: eval full"; atomically "$d/full.eval.json" mpu eval -q "${eval_opts[@]}" --retain-eval "$d/retain.eval.json" "$d/full.mpuc"; }
}

# ---- per seed, algorithm and variant: one unlearning run and its eval ----
unlearn_opts() { # algo
  local o=(--algo "$1" --forget "$forget" --retain "$retain" --lr "$UNLEARN_LR" --batch "$UNLEARN_BATCH"
    --grad-accum "$UNLEARN_ACCUM" --threads "$THREADS")
  [ "$1" = idkdpo ] && o+=(--idk "$data/idk.jsonl")
  printf '%s\n' "${o[@]}"
}

# variant_steps seed algo variant dir: the unlearning run itself; stops at
# the first failing command (set -e does not reach into a function whose
# status is tested, hence the explicit returns).
variant_steps() {
  local s=$1 algo=$2 v=$3 d=$4 opts key=$W/seed$1/server.key full=$W/seed$1/full.mpuc t0=$SECONDS
  mapfile -t opts < <(unlearn_opts "$algo")
  if [ "$v" = base ]; then
    mpu unlearn -q "${opts[@]}" --epochs 10 --seed "$s" -o "$d/model.mpuc" "$full" || return
  else
    local kappa agg R E cur=$full r
    case $v in
      k*) kappa=${v#k} agg=harmonic ;;
      mean*) kappa=${v#mean} agg=mean ;;
      copy*) kappa=${v#copy} agg=copy:1 ;;
    esac
    R=$(rounds_of "$algo") E=$((10 / R))
    for ((r = 1; r <= R; r++)); do
      mpu perturb -q --key "$key" --copies 2 --kappa "$kappa" --round $r -o "$d/copies.mpuc" "$cur" || return
      mpu unlearn -q "${opts[@]}" --epochs $E --schedule constant --warmup-steps 0 --seed $((s * 100 + r)) \
        -o "$d/returned.mpuc" "$d/copies.mpuc" || return
      mpu invert -q --key "$key" --onto "$cur" -o "$d/updates.mpuc" "$d/returned.mpuc" || return
      mpu denoise -q --key "$key" --onto "$cur" --aggregate "$agg" -o "$d/round$r.mpuc" "$d/updates.mpuc" || return
      rm -f "$d/copies.mpuc" "$d/returned.mpuc" "$d/updates.mpuc"
      [ "$cur" = "$full" ] || rm -f "$cur"
      cur=$d/round$r.mpuc
    done
    mv "$cur" "$d/model.mpuc" || return
  fi
  echo $((SECONDS - t0)) > "$d/unlearn.seconds"
  atomically "$d/eval.json" mpu eval -q "${eval_opts[@]}" --retain-eval "$W/seed$s/retain.eval.json" "$d/model.mpuc"
}

run_variant() { # seed algo variant
  local s=$1 algo=$2 v=$3
  local d=$W/seed$s/$algo/$v
  [ -f "$d/eval.json" ] && return 0
  rm -rf "$d" && mkdir -p "$d"
  log "seed $s: $algo $v"
  if ! variant_steps "$s" "$algo" "$v" "$d" 2> "$d/log.txt"; then
    # A failed run (e.g. unlearning diverged) is a result too: the report
    # shows it, and its log says why.
    log "seed $s: $algo $v FAILED: $(tail -n 1 "$d/log.txt")"
    tail -n 1 "$d/log.txt" > "$d/failed"
    rm -f "$d"/*.mpuc "$d"/*.tmp
  fi
  return 0
}
export -f run_variant variant_steps unlearn_opts rounds_of log atomically
export W PRESET forget retain holdout retain_eval data UNLEARN_LR UNLEARN_BATCH UNLEARN_ACCUM THREADS
export EVAL_MAX_NEW PATH
# Arrays do not cross `export`; run_variant rebuilds eval_opts from these.
run_job() {
  eval_opts=(--forget "$forget" --retain "$retain_eval" --holdout "$holdout" --world "$data/world_facts.jsonl"
    --max-new "$EVAL_MAX_NEW" --threads "$THREADS" --json)
  run_variant "$@"
}
export -f run_job

start=$SECONDS load0=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo null)
for s in $SEEDS; do prepare_seed "$s"; done
[ "${ONLY:-}" = models ] && { log "models ready in $W (ONLY=models)"; exit 0; }

variants="base k0"
for k in $KAPPAS; do variants="$variants k$k"; done
variants="$variants mean$ABLATION_KAPPA copy$ABLATION_KAPPA"
# The slowest algorithms first (ten rounds each), so the parallel jobs end together.
jobs=()
for s in $SEEDS; do
  for a in $ALGOS; do
    for v in $variants; do jobs+=("$(rounds_of "$a") $s $a $v"); done
  done
done
printf '%s\n' "${jobs[@]}" | sort -k1,1nr -s | cut -d' ' -f2- |
  xargs -P "$JOBS" -L 1 bash -c 'run_job "$@"' _
# What this invocation took, with the load around it (the machine may be shared).
printf '{"seeds": "%s", "jobs": %s, "threads": %s, "seconds": %s, "loadavg_start": %s, "loadavg_end": %s, "nproc": %s}\n' \
  "$SEEDS" "$JOBS" "$THREADS" $((SECONDS - start)) "$load0" "$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo null)" \
  "$(nproc)" >> "$W/timings.jsonl"
log "done in $((SECONDS - start)) s; writing the report"

"$PY" "$HERE/report.py" --preset "$PRESET" --work "$W" --out "${REPORT_DIR:-$HERE}"
