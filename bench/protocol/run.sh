#!/usr/bin/env bash
# bench/protocol/run.sh -- the server side of an MPU round (mpu perturb, invert,
# denoise) on a Llama-shaped bf16 model of 2.25 GB: throughput as a ratio to
# `cat | cat` on the same bytes, peak memory on a model with L and one with 4L
# layers (must stay flat), a perf profile of perturb, and the same work done
# the way the official PyTorch code does it (bench/protocol/torch_round.py:
# the whole state dict in memory), time and peak memory side by side.
#
# Everything is rerun and bench/protocol/REPORT.md rewritten.  The client's
# step is simulated by handing the copies back unchanged (invert accepts
# perturb's multi-copy stream itself as the returned stream), so every update
# is exactly zero and denoise must give back the model's own tensors (checked).
# Each stage writes into a pipe read by `cat > /dev/null`; its baseline is
# `cat INPUT... | cat > /dev/null` on the same input bytes, run right before it
# in the same repetition; the report gives the median of the per-repetition
# ratios and their min-max.  Inputs a stage needs (the copies, the updates)
# are made once beforehand (`-o FILE`; those runs are reported too).
#
# Measuring machines are shared: the script runs under the benchmarks' lock
# (bench/lib/common.sh bench_lock: flock on /work/bench-scratch/bench.lock,
# taken here unless an ancestor already holds it), waiting for it at most
# LOCK_WAIT seconds (default 45 minutes; then it stops, exit 3, no report).
#
# Environment:
#   MPU_BIN        where the programs are (default: <repo>/bin); copied to a
#                  private directory first, so a rebuild cannot race us
#   BENCH_SCRATCH  scratch directory outside the repository (default
#                  /work/bench-scratch if it exists, else /var/tmp/mpu-bench);
#                  needs about 45 GB free.  The models are kept in
#                  SCRATCH/protocol/models and reused while their config is
#                  unchanged; everything else there is deleted at the end
#   THREADS        OpenMP / torch threads for the timed runs (default 2)
#   REPS           repetitions of the M = 2 measurements and of the torch
#                  comparison (default 3, >= 2)
#   REPS4          repetitions of the M = 4 measurements (default 3, >= 1)
#   BUDGET_S       optional phases (zstd, M = 4 with torch, 1 thread) are
#                  skipped once the measurements have taken this long
#                  (default 1200); the report lists what was skipped
#   DIAG=0         skip the malloc diagnostic (each M = 2 store stage run again
#                  with glibc's malloc keeping freed memory)
#   PROFILE=0      skip the perf profile
#   LOCK           the lock file (default /work/bench-scratch/bench.lock)
#   LOCK_WAIT      seconds to wait for it (default 2700)
#   KEEP=1         keep the scratch files
#   QUICK=1        tiny models, 2 repetitions (1 for M = 4), report in
#                  $BENCH_SCRATCH/protocol-REPORT-quick.md: a smoke test of
#                  this script, not a measurement
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/common.sh"
QUICK=${QUICK:-0}
bench_lock
T_LOCKED=$(date +%s)

THREADS=${THREADS:-2}
REPS=${REPS:-3}
REPS4=${REPS4:-3}
BUDGET_S=${BUDGET_S:-1200}
PROFILE=${PROFILE:-1}
KAPPA=0.01
[ "$REPS" -ge 2 ] && [ "$REPS4" -ge 1 ] || { echo "$0: REPS must be >= 2, REPS4 >= 1" >&2; exit 2; }
bench_scratch protocol
REPORT=$HERE/REPORT.md
TORCH=$HERE/torch_round.py
CFG_BIG=$HERE/config-2g.json
CFG_L=$HERE/config-mem-L.json
CFG_4L=$HERE/config-mem-4L.json
if [ "$QUICK" = 1 ]; then          # a smoke test of this script, not a measurement
  REPS=2; REPS4=1; BUDGET_S=100000
  REPORT=$BENCH_SCRATCH/protocol-REPORT-quick.md
fi

# ------------------------------------------------------------------ tools, scratch, private binaries
need_gnu_time
need_tools python3
need_torch
mkdir -p "$S/models"
scratch_cleanup_trap models # the models are kept between runs (remove SCRATCH/protocol/models to free the space)
KEEP=0 scratch_cleanup      # and all else left by an earlier run goes now
mkdir -p "$S/work"
copy_programs "$S/bin"
MPU=$S/bin/mpu
W=$S/work
"$MPU" perturb --version >/dev/null 2>&1 || die "no working mpu in $SRC_BIN (run make)"
[ "$QUICK" = 1 ] || need_free_kb 45000000

# RES: label rep wall cpu maxrss_kb in_bytes out_bytes (cpu/rss: the timed processes; rss the largest)
results_init
SKIPPED=()

# ------------------------------------------------------------------ machine state
machine_facts "$S/bin/mpu-perturb"
# tracked sources of the three programs (lib/, format/, their mains) changed since they were built
fact src_newer "$(sources_newer "$S/bin/mpu-perturb" lib format bin/mpu-perturb.c bin/mpu-invert.c bin/mpu-denoise.c)"
build_facts "$S/bin/mpu-perturb"
fact threads "$THREADS"
fact reps "$REPS"
fact reps4 "$REPS4"
fact budget_s "$BUDGET_S"
fact quick "$QUICK"
fact load_start "$(machine_load)"

# ------------------------------------------------------------------ models (kept between runs)
if [ "$QUICK" = 1 ]; then
  mkdir -p "$S/quick"
  python3 - "$CFG_BIG" "$S/quick" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for name, layers in (("big", 2), ("L", 1), ("4L", 4)):
    c.update(hidden_size=256, intermediate_size=704, num_attention_heads=4, num_key_value_heads=2,
             num_hidden_layers=layers, vocab_size=1000)
    json.dump(c, open("%s/config-%s.json" % (sys.argv[2], name), "w"), indent=2)
PY
  CFG_BIG=$S/quick/config-big.json; CFG_L=$S/quick/config-L.json; CFG_4L=$S/quick/config-4L.json
fi
declare -A CFG=([big]=$CFG_BIG [L]=$CFG_L [4L]=$CFG_4L) MODEL ST
T_GEN=$(date +%s)
for m in big L 4L; do
  cfg=${CFG[$m]}
  tag=$( (cat "$cfg"; "$MPU" init --version 2>&1) | sha256sum | cut -c1-12)
  [ "$QUICK" = 1 ] && tag=quick-$tag
  MODEL[$m]=$S/models/$m-$tag.mpuc
  ST[$m]=$S/models/$m-$tag.safetensors
  if [ ! -f "${MODEL[$m]}" ] || [ ! -f "${ST[$m]}" ]; then
    rm -f "$S/models/$m-"*
    log "making model $m ($(basename "$cfg"))"
    "$MPU" init --config "$cfg" --dtype bf16 --tokenizer none --store -q -o "${MODEL[$m]}" || die "mpu init $m"
    "$MPU" export -q -o "${ST[$m]}" "${MODEL[$m]}" || die "mpu export $m"
  fi
  fact "model_bytes_$m" "$(stat -c %s "${MODEL[$m]}")"
  fact "st_bytes_$m" "$(stat -c %s "${ST[$m]}")"
  fact "config_$m" "$(realpath --relative-to="$ROOT" "$cfg" 2>/dev/null || echo "$cfg")"
  fact "params_$m" "$(python3 -c '
import json, sys
c = json.load(open(sys.argv[1])); h, i, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
kv = c["num_key_value_heads"] * h // c["num_attention_heads"]; per = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
print(2 * V * h + h + L * per, L * per, L, h, i, c["num_attention_heads"], c["num_key_value_heads"])' "$cfg")"
done
fact gen_s "$(( $(date +%s) - T_GEN ))"
"$MPU" keygen -o "$S/server.key" >/dev/null
K=$S/server.key

# ------------------------------------------------------------------ one measurement
# measure LABEL REP IN_BYTES OUT_BYTES PIPELINE: runs PIPELINE under bash with
# pipefail; records the wall-clock time of the whole pipeline, and CPU time and
# peak RSS of the processes wrapped in $(tm 1), $(tm 2) (the stage or the cat
# being measured; not the `cat > /dev/null` at the end).
tm() { printf "/usr/bin/time -f '%%e %%U %%S %%M' -o %s/time.%s" "$S" "$1"; }
strip_cmd() {  # the command as the report shows it
  sed -e "s#/usr/bin/time -f '%e %U %S %M' -o [^ ]* ##g" -e "s#$S/bin/mpu#mpu#g" -e "s#$TORCH_PY $TORCH#/usr/bin/python3 bench/protocol/torch_round.py#g" \
      -e "s#$HERE/#bench/protocol/#g" -e "s#$S/models/\([a-zA-Z0-9]*\)-[a-z0-9-]*\.\(mpuc\|safetensors\)#model-\1.\2#g" -e "s#$S/work/##g" -e "s#$S/##g" <<<"$1"
}
measure() {
  local label=$1 rep=$2 inb=$3 outb=$4 cmd=$5
  grep -q "^$label	" "$CMDS" || printf '%s\t%s\n' "$label" "$(strip_cmd "$cmd")" >>"$CMDS"
  rm -f "$S/time.1" "$S/time.2"
  local t0=$EPOCHREALTIME
  if ! bash -c "set -o pipefail; $cmd"; then
    log "FAILED ($label): $(strip_cmd "$cmd")"
    printf '%s\t%s\n' "failed:$label" "$(strip_cmd "$cmd")" >>"$FACTS"
    return 0
  fi
  local t1=$EPOCHREALTIME
  local cpu=0 rss=0 tf tw tu ts tr
  for tf in "$S/time.1" "$S/time.2"; do
    [ -f "$tf" ] || continue
    read -r tw tu ts tr < <(tail -1 "$tf")
    cpu=$(awk -v a="$cpu" -v u="$tu" -v s="$ts" 'BEGIN {printf "%.2f", a + u + s}')
    if [ "$tr" -gt "$rss" ]; then rss=$tr; fi
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$rep" "$(awk "BEGIN {printf \"%.3f\", $t1 - $t0}")" "$cpu" "$rss" "$inb" "$outb" >>"$RES"
  log "  $label #$rep: $(awk "BEGIN {printf \"%.1f s\", $t1 - $t0}"), $((rss / 1024)) MB"
}
size() {  # FILE...: their bytes together (printf: mawk prints sums past 2^31 as 2.2e+09)
  stat -c %s "$@" | awk '{s += $1} END {printf "%.0f\n", s}'
}
warm() { cat "$@" >/dev/null; }
check() {  # NAME CMD...: a correctness check; its outcome goes into the report
  local name=$1; shift
  if "$@" >"$S/check.out" 2>&1; then fact "check:$name" "ok"
  else fact "check:$name" "FAILED: $(strip_cmd "$*") -> $(tail -2 "$S/check.out" | tr '\n' ' ')"; log "CHECK FAILED: $name"; fi
}
same_tensors() {  # A B: the two streams hold the same tensors (names, dtypes, shapes, XXH3 of the bytes)
  local f
  for f in "$1" "$2"; do
    "$MPU" inspect --json "$f" | python3 -c '
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    if r.get("record") == "entry" and r.get("kind") == "tensor":
        print(r["name"], r["dtype"], r["shape"], r["xxh3_128"])' >"$f.tensors"
  done
  cmp -s "$1.tensors" "$2.tensors"
}
elapsed() { echo $(( $(date +%s) - T_MEASURE )); }
budget_ok() {  # PHASE: is there time left for an optional phase?
  if [ "$(elapsed)" -ge "$BUDGET_S" ]; then
    log "skipping $1: the measurements have taken $(elapsed) s (BUDGET_S=$BUDGET_S)"
    SKIPPED+=("$1"); return 1
  fi
}
ENV="env OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS"
mpu_() { printf '%s %s %s' "$ENV" "$MPU" "$*"; }
torch_() { printf '%s %s %s --threads %s %s' "$ENV" "$TORCH_PY" "$TORCH" "$THREADS" "$*"; }
CAT="cat > /dev/null"

T_MEASURE=$(date +%s)
STAT0=$(head -1 /proc/stat)

# ------------------------------------------------------------------ 1. peak memory, L vs 4L layers
# One run of each stage on each model (store encoding, to a file), mpu and the
# torch baseline; every output verified.
log "peak memory: models with L and 4L layers, M = 2 and 4"
for m in L 4L; do
  mod=${MODEL[$m]}; st=${ST[$m]}; cfg=${CFG[$m]}
  warm "$mod" "$st"
  for M in 2 4; do
    c=$W/copies.mpuc u=$W/updates.mpuc n=$W/next.mpuc
    measure "mem/$m/M$M/perturb" 1 "$(size "$mod")" 0 "$(tm 1) $(mpu_ perturb -q --key "$K" --copies $M --kappa $KAPPA --store -o "$c" "$mod")"
    measure "mem/$m/M$M/invert" 1 "$(size "$mod" "$c")" 0 "$(tm 1) $(mpu_ invert -q --key "$K" --onto "$mod" --store -o "$u" "$c")"
    measure "mem/$m/M$M/denoise" 1 "$(size "$mod" "$u")" 0 "$(tm 1) $(mpu_ denoise -q --key "$K" --onto "$mod" --store -o "$n" "$u")"
    check "mem-$m-M$M-verify" "$MPU" verify -q "$c" "$u" "$n"
    check "mem-$m-M$M-parents" "$MPU" verify -q -p "$mod" -p "$u" "$n"
    check "mem-$m-M$M-next-is-model" same_tensors "$mod" "$n"
    rm -f "$c" "$u" "$n" "$W"/*.tensors
    tc=$W/copies.st tn=$W/next.st
    measure "mem/$m/M$M/torch-perturb" 1 "$(size "$st")" 0 "$(tm 1) $(torch_ perturb --model "$st" --config "$cfg" --copies $M --kappa $KAPPA -o "$tc") 2>>$S/torch.log"
    measure "mem/$m/M$M/torch-post" 1 "$(size "$st" "$tc")" 0 "$(tm 1) $(torch_ post --model "$st" --config "$cfg" --copies $M --kappa $KAPPA --returned "$tc" -o "$tn") 2>>$S/torch.log"
    rm -f "$tc" "$tn"
  done
done
# The processes' fixed cost: the programs started and stopped with nothing to do.
torch_import_rss
/usr/bin/time -f '%M' -o "$S/rss0" "$MPU" perturb --version >/dev/null
fact mpu_empty_rss_kb "$(tail -1 "$S/rss0")"

# ------------------------------------------------------------------ 2. profile of perturb (perf, 1 thread)
PROF=$S/prof
mkdir -p "$PROF"
if [ "$PROFILE" = 1 ] && perf_usable "$PROF"; then
  log "profile: perturb M=2 on model 4L, 1 thread"
  warm "${MODEL[4L]}"
  pcmd="env OMP_NUM_THREADS=1 $MPU perturb -q --key $K --copies 2 --kappa $KAPPA --store ${MODEL[4L]}"
  fact profile_cmd "perf record -g -F 999 -- $(strip_cmd "$pcmd") > /dev/null"
  /usr/bin/time -f '%e %U %S %M' -o "$PROF/time.txt" perf record -q -g -F 999 -o "$PROF/perturb.data" -- $pcmd >/dev/null 2>"$PROF/perturb.err" || true
  if [ -s "$PROF/perturb.data" ]; then
    perf report -i "$PROF/perturb.data" --stdio --no-children --sort dso -g none 2>/dev/null >"$PROF/dso.txt" || true
    perf report -i "$PROF/perturb.data" --stdio --no-children --sort dso,sym -g none 2>/dev/null >"$PROF/self.txt" || true
    perf report -i "$PROF/perturb.data" --stdio --no-children --sort srcline -g none 2>/dev/null >"$PROF/srcline.txt" || true
    cp "$ROOT/lib/rng.h" "$ROOT/lib/reparam.h" "$ROOT/lib/protocol.c" "$PROF/" 2>/dev/null || true
  fi
  # the same run without perf: user and system time
  /usr/bin/time -f '%e %U %S %M' -o "$PROF/time-plain.txt" $pcmd >/dev/null
fi

# ------------------------------------------------------------------ 3. the ratio table: store encoding, M = 2 and 4
BIG=${MODEL[big]}
BIGB=$(size "$BIG")
# With DIAG (M = 2, store), each repetition also runs the stage with glibc's
# malloc told to keep freed memory (TUNED below): a diagnostic of how much of
# the time goes to page faults on buffers freed and allocated again.
TUNED="env GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296"
stage_block() {  # ENC M REPS [DIAG]: perturb | cat, invert | cat, denoise | cat, each against cat of its input
  local enc=$1 M=$2 reps=$3 diag=${4:-0} encf
  [ "$enc" = store ] && encf=--store || encf="--level 1"
  local c=$W/copies-$enc-M$M.mpuc u=$W/updates-$enc-M$M.mpuc n=$W/next-$enc-M$M.mpuc
  log "big model, $enc, M=$M: perturb ($reps reps)"
  warm "$BIG"
  # the inputs the later stages need, made once (to files; timed as one run each)
  measure "big/$enc/M$M/perturb/file" 1 "$BIGB" 0 "$(tm 1) $(mpu_ perturb -q --key "$K" --copies $M --kappa $KAPPA $encf -o "$c" "$BIG")"
  local cb; cb=$(size "$c")
  for r in $(seq "$reps"); do
    measure "big/$enc/M$M/perturb/cat" "$r" "$BIGB" "$BIGB" "$(tm 1) cat $BIG | $CAT"
    measure "big/$enc/M$M/perturb/mpu" "$r" "$BIGB" "$cb" "$(tm 1) $(mpu_ perturb -q --key "$K" --copies $M --kappa $KAPPA $encf "$BIG") | $CAT"
    if [ "$diag" = 1 ]; then measure "big/$enc/M$M/perturb/tuned" "$r" "$BIGB" "$cb" "$(tm 1) $TUNED $(mpu_ perturb -q --key "$K" --copies $M --kappa $KAPPA $encf "$BIG") | $CAT"; fi
  done
  log "big model, $enc, M=$M: invert ($reps reps)"
  measure "big/$enc/M$M/invert/file" 1 "$((BIGB + cb))" 0 "$(tm 1) $(mpu_ invert -q --key "$K" --onto "$BIG" $encf -o "$u" "$c")"
  local ub; ub=$(size "$u")
  check "big-$enc-M$M-copies-verify" "$MPU" verify -q "$c"
  check "big-$enc-M$M-updates-verify" "$MPU" verify -q -p "$BIG" -p "$c" "$u"
  warm "$BIG" "$c"
  for r in $(seq "$reps"); do
    measure "big/$enc/M$M/invert/cat" "$r" "$((BIGB + cb))" "$((BIGB + cb))" "$(tm 1) cat $BIG $c | $CAT"
    measure "big/$enc/M$M/invert/mpu" "$r" "$((BIGB + cb))" "$ub" "$(tm 1) $(mpu_ invert -q --key "$K" --onto "$BIG" $encf "$c") | $CAT"
    if [ "$diag" = 1 ]; then measure "big/$enc/M$M/invert/tuned" "$r" "$((BIGB + cb))" "$ub" "$(tm 1) $TUNED $(mpu_ invert -q --key "$K" --onto "$BIG" $encf "$c") | $CAT"; fi
  done
  rm -f "$c"
  log "big model, $enc, M=$M: denoise ($reps reps)"
  measure "big/$enc/M$M/denoise/file" 1 "$((BIGB + ub))" 0 "$(tm 1) $(mpu_ denoise -q --key "$K" --onto "$BIG" $encf -o "$n" "$u")"
  local nb; nb=$(size "$n")
  check "big-$enc-M$M-next-verify" "$MPU" verify -q -p "$BIG" -p "$u" "$n"
  check "big-$enc-M$M-next-is-model" same_tensors "$BIG" "$n"
  rm -f "$n" "$W"/*.tensors
  warm "$BIG" "$u"
  for r in $(seq "$reps"); do
    measure "big/$enc/M$M/denoise/cat" "$r" "$((BIGB + ub))" "$((BIGB + ub))" "$(tm 1) cat $BIG $u | $CAT"
    measure "big/$enc/M$M/denoise/mpu" "$r" "$((BIGB + ub))" "$nb" "$(tm 1) $(mpu_ denoise -q --key "$K" --onto "$BIG" $encf "$u") | $CAT"
    if [ "$diag" = 1 ]; then measure "big/$enc/M$M/denoise/tuned" "$r" "$((BIGB + ub))" "$nb" "$(tm 1) $TUNED $(mpu_ denoise -q --key "$K" --onto "$BIG" $encf "$u") | $CAT"; fi
  done
  rm -f "$u"
  fact "bytes:big/$enc/M$M" "$cb $ub $nb"
}
stage_block store 2 "$REPS" "${DIAG:-1}"
stage_block store 4 "$REPS4"

# ------------------------------------------------------------------ 4. torch side by side (M = 2)
# The official code keeps the copies in the model's dtype (bf16), so mpu runs
# with --dtype keep here: both sides write M bf16 copies, and both go on to
# the next model (invert | denoise for mpu, one process for torch).
torch_block() {  # M REPS
  local M=$1 reps=$2 stb; stb=$(size "${ST[big]}")
  local ck=$W/copies-keep-M$M.mpuc tk=$W/copies-torch-M$M.st
  log "big model, torch side by side, M=$M ($reps reps)"
  warm "$BIG" "${ST[big]}"
  measure "torch/M$M/perturb-mpu/file" 1 "$BIGB" 0 "$(tm 1) $(mpu_ perturb -q --key "$K" --copies $M --kappa $KAPPA --dtype keep --store -o "$ck" "$BIG") 2>/dev/null"
  measure "torch/M$M/perturb-torch/file" 1 "$stb" 0 "$(tm 1) $(torch_ perturb --model "${ST[big]}" --config "$CFG_BIG" --copies $M --kappa $KAPPA -o "$tk") 2>>$S/torch.log"
  check "torch-M$M-keep-copies-verify" "$MPU" verify -q "$ck"
  local ckb tkb; ckb=$(size "$ck"); tkb=$(size "$tk")
  for r in $(seq "$reps"); do
    # the torch post-process holds several GB: bring the inputs back into the page cache first
    warm "$BIG" "${ST[big]}" "$ck" "$tk"
    measure "torch/M$M/perturb-mpu" "$r" "$BIGB" "$ckb" "$(tm 1) $(mpu_ perturb -q --key "$K" --copies $M --kappa $KAPPA --dtype keep --store "$BIG") 2>/dev/null | $CAT"
    measure "torch/M$M/perturb-torch" "$r" "$stb" "$tkb" "$(tm 1) $(torch_ perturb --model "${ST[big]}" --config "$CFG_BIG" --copies $M --kappa $KAPPA -o -) 2>>$S/torch.log | $CAT"
    warm "$BIG" "$ck"
    measure "torch/M$M/post-mpu" "$r" "$((BIGB + ckb))" "$BIGB" "$(tm 1) $(mpu_ invert -q --key "$K" --onto "$BIG" --store "$ck") | $(tm 2) $(mpu_ denoise -q --key "$K" --onto "$BIG" --store) | $CAT"
    warm "${ST[big]}" "$tk"
    measure "torch/M$M/post-torch" "$r" "$((stb + tkb))" "$stb" "$(tm 1) $(torch_ post --model "${ST[big]}" --config "$CFG_BIG" --copies $M --kappa $KAPPA --returned "$tk" -o -) 2>>$S/torch.log | $CAT"
  done
  rm -f "$ck" "$tk"
}
torch_block 2 "$REPS"

# ------------------------------------------------------------------ 5. optional: zstd, torch M = 4, 1 thread
if budget_ok "zstd level 1, M = 2"; then stage_block zstd 2 "$REPS"; fi
if budget_ok "1 thread, store, M = 2, perturb"; then
  log "big model, 1 thread: perturb M=2 ($REPS4 reps)"
  warm "$BIG" "${ST[big]}"
  E1="env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1"
  for r in $(seq "$REPS4"); do
    measure "t1/store/M2/perturb/cat" "$r" "$BIGB" "$BIGB" "$(tm 1) cat $BIG | $CAT"
    measure "t1/store/M2/perturb/mpu" "$r" "$BIGB" 0 "$(tm 1) $E1 $MPU perturb -q --key $K --copies 2 --kappa $KAPPA --store $BIG | $CAT"
    measure "t1/store/M2/perturb/mpu-keep" "$r" "$BIGB" 0 "$(tm 1) $E1 $MPU perturb -q --key $K --copies 2 --kappa $KAPPA --dtype keep --store $BIG 2>/dev/null | $CAT"
    measure "t1/store/M2/perturb/torch" "$r" "$(size "${ST[big]}")" 0 "$(tm 1) $E1 $TORCH_PY $TORCH --threads 1 perturb --model ${ST[big]} --config $CFG_BIG --copies 2 --kappa $KAPPA -o - 2>>$S/torch.log | $CAT"
  done
fi
# torch M = 4 on the big model: its post-process holds about nine model-sized
# state dicts (20 GB here); run only where that fits.
need_kb=$(( $(size "${ST[big]}") * 10 / 1024 ))
avail_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
if [ "$avail_kb" -lt "$need_kb" ]; then
  SKIPPED+=("torch side by side, M = 4 (needs about $((need_kb / 1048576)) GiB, $((avail_kb / 1048576)) GiB available)")
elif budget_ok "torch side by side, M = 4"; then
  torch_block 4 1
fi
if budget_ok "zstd level 1, M = 4"; then stage_block zstd 4 "$REPS4"; fi

measurements_done "$T_MEASURE" 4 "; includes the untimed cat > /dev/null, checks and warm-up reads"
for s in "${SKIPPED[@]}"; do fact skipped "$s"; done
fact total_s "$(( $(date +%s) - T_LOCKED ))"

# ------------------------------------------------------------------ report
write_report "$REPORT" python3 "$HERE/report.py" --scratch "$S" --root "$ROOT"
