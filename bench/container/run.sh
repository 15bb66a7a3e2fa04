#!/usr/bin/env bash
# bench/container/run.sh [SIZE_GB] -- throughput, compression and memory of the
# .mpuc container on synthetic Llama-shaped checkpoints.
#
#   SIZE_GB   target size of the two large checkpoints, in 10^9 bytes of
#             weights (default 2.1).  A bf16 and an fp32 checkpoint of about
#             that size are made, plus a bf16 one about 4x smaller (for the
#             peak-memory comparison).
#
# Everything is rerun from scratch and bench/container/REPORT.md rewritten.
# Every speed figure is a ratio against a baseline run in the same invocation,
# interleaved (baseline, mpu, baseline, mpu, ...) and repeated; the reported
# value is the median of the per-repetition ratios.  Store mode is measured
# three ways: unpinned, both pipe stages on one CPU, one CPU per stage (taskset).
#
# Environment:
#   MPU_BIN        where the programs are (default: <repo>/bin); they are copied
#                  to a private directory first, so a rebuild cannot race us
#   BENCH_SCRATCH  scratch directory outside the repository (default
#                  /work/bench-scratch if it exists, else /var/tmp/mpu-bench);
#                  needs about 5x SIZE_GB free; emptied at the end
#   REPS           repetitions of each zstd-mode measurement (default 5)
#   STORE_REPS     repetitions of each store-mode measurement (default 7)
#   LOCK, LOCK_WAIT  the benchmarks' lock (bench/lib/common.sh; default
#                  /work/bench-scratch/bench.lock, wait at most 2700 s)
#   KEEP=1         keep the scratch files
set -euo pipefail
export LC_ALL=C

SIZE=${1:-2.1}
REPS=${REPS:-5}
STORE_REPS=${STORE_REPS:-7}
[[ $SIZE =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "usage: $0 [SIZE_GB]" >&2; exit 2; }
[ "$REPS" -ge 3 ] && [ "$STORE_REPS" -ge 3 ] || { echo "$0: REPS and STORE_REPS must be >= 3" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/common.sh"
bench_lock
bench_scratch container
REPORT=$HERE/REPORT.md
T_START=$(date +%s)

# ------------------------------------------------------------------ tools
need_gnu_time
need_tools zstd xxhsum python3

# ------------------------------------------------------------------ scratch, private binaries
rm -rf "$S"
scratch_cleanup_trap
copy_programs "$S/bin"
BIN=$S/bin
MPU=$BIN/mpu
"$MPU" --version >/dev/null 2>&1 || "$MPU" import --version >/dev/null || die "no working mpu in $SRC_BIN (run make)"
need_kb=$(python3 -c "print(int(float('$SIZE') * 5.5e6))")
need_free_kb "$need_kb"

results_init            # RES: label rep wall user sys maxrss_kb

# Runs a command once under bash with pipefail; records wall-clock time (bash's
# clock), user and system CPU time and the largest child's max RSS.
measure() {
  local label=$1 rep=$2 cmd=$3
  cmd_once "$label" "$cmd"
  local t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S %M' -o "$S/time.out" bash -c "set -o pipefail; $cmd" || die "$label: $cmd"
  local t1=$EPOCHREALTIME
  printf '%s\t%s\t%s\t%s\n' "$label" "$rep" "$(awk "BEGIN {printf \"%.4f\", $t1 - $t0}")" \
    "$(tail -1 "$S/time.out" | tr ' ' '\t')" >>"$RES"
}
warm() { cat "$@" >/dev/null; }

# ------------------------------------------------------------------ machine state
fact date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
fact nproc "$(nproc)"
fact cpu "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
fact mem "$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
fact kernel "$(uname -r)"
fact zstd "$(zstd --version | head -1 | tr -d '*' | sed 's/^ *//; s/ *$//')"
fact xxhsum "$(xxhsum --version 2>&1 | head -1 | sed 's/ *$//')"
fact mpu "$("$MPU" import --version 2>&1 | head -1)"
fact git "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -qv '^?? bench/' && echo ' (working tree differs from HEAD)')"
fact lock_wait_s "$LOCK_WAITED"
fact load_start "$(machine_load)"
STAT0=$(head -1 /proc/stat)
fact size "$SIZE"
fact reps "$REPS"
fact store_reps "$STORE_REPS"

# ------------------------------------------------------------------ configs
# Llama shapes (head_dim 64, GQA 4:1, untied embeddings, vocab 32000); the
# number of layers brings the weights to the target size.  The configs are
# kept beside this script; the checkpoints only in scratch.
python3 - "$SIZE" "$ROOT/examples/tiny/config.json" "$HERE" >"$S/configs.tsv" <<'PY'
import json, sys
size, base, out = float(sys.argv[1]) * 1e9, sys.argv[2], sys.argv[3]
def params(h, i, kv, layers, vocab=32000):
    per = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h   # q,o + k,v + mlp + 2 norms
    return 2 * vocab * h + layers * per + h, per      # embed + lm_head + final norm
def cfg(name, dtype, h, i, heads, kvh, width, target):
    fixed, per = params(h, i, kvh * 64, 0)
    layers = max(1, round((target / width - fixed) / per))
    c = json.load(open(base))
    c.update(vocab_size=32000, hidden_size=h, intermediate_size=i, num_hidden_layers=layers,
             num_attention_heads=heads, num_key_value_heads=kvh, max_position_embeddings=4096,
             torch_dtype={2: "bfloat16", 4: "float32"}[width])
    with open(f"{out}/config-{name}.json", "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    n, _ = params(h, i, kvh * 64, layers)
    print(f"{name}\t{dtype}\t{n}\t{n * width}\t{layers}\t{h}\t{i}\t{heads}\t{kvh}")
cfg("bf16", "bf16", 2048, 5632, 32, 8, 2, size)
cfg("fp32", "f32", 1536, 4096, 24, 8, 4, size)
cfg("bf16-small", "bf16", 2048, 5632, 32, 8, 2, size / 4)
PY

# ------------------------------------------------------------------ checkpoints
# mpu init (random N(0, 0.02) weights, norms 1) -> mpu export -> safetensors.
# Weights only: no tokenizer files, where this mpu init would add one.
tok=()
"$MPU" init --help 2>&1 | grep -q -- '--tokenizer' && tok=(--tokenizer none)
gen() {
  local name=$1 dtype=$2
  "$MPU" init --config "$HERE/config-$name.json" --dtype "$dtype" "${tok[@]}" --store -q -o "$S/$name.init.mpuc"
  "$MPU" export -q -o "$S/ckpt-$name" "$S/$name.init.mpuc"
  rm -f "$S/$name.init.mpuc"
}
log "making checkpoints (mpu init + mpu export; about 2 min for 2 GB)"
t0=$EPOCHREALTIME
pids=()
while IFS=$'\t' read -r name dtype _; do
  gen "$name" "$dtype" </dev/null &
  pids+=($!)
  [ ${#pids[@]} -lt 2 ] || { wait "${pids[0]}" || die "making checkpoint"; pids=("${pids[@]:1}"); }
done <"$S/configs.tsv"
for p in "${pids[@]}"; do wait "$p" || die "making checkpoint"; done
fact gen_seconds "$(awk "BEGIN {printf \"%.0f\", $EPOCHREALTIME - $t0}")"
while IFS=$'\t' read -r name _; do
  fact "$name.file_bytes" "$(cat "$S/ckpt-$name"/*.safetensors | wc -c)"
done <"$S/configs.tsv"

# ------------------------------------------------------------------ measurements
bytes_of() { stat -c %s "$1"; }
raw_of() { # tensor bytes of safetensors files, from their headers
  python3 - "$@" <<'PY'
import json, struct, sys
n = 0
for f in sys.argv[1:]:
    with open(f, "rb") as fh:
        (hlen,) = struct.unpack("<Q", fh.read(8))
        h = json.loads(fh.read(hlen))
    n += sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in h.items() if k != "__metadata__")
print(n)
PY
}

rss_set() { # name: peak memory of import, verify, export on one checkpoint
  local name=$1 ck=$S/ckpt-$1 st=$S/$1.g.mpuc
  [ -f "$st" ] || "$MPU" import -q "$ck" >"$st"
  measure "$name/rss/import" 1 "$MPU import -q $ck > /dev/null"
  measure "$name/rss/verify" 1 "$MPU verify -q < $st"
  rm -rf "$S/export-out"
  measure "$name/rss/export" 1 "$MPU export -q -o $S/export-out $st"
  rm -rf "$S/export-out"
}

# CPUs for the pinned runs: the first two this process may use.
mapfile -t cpus < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0))[:2])))')
PLACEMENTS=(free)
if command -v taskset >/dev/null && [ ${#cpus[@]} -ge 1 ]; then
  CPU_A=${cpus[0]}
  PLACEMENTS+=(same)
  if [ ${#cpus[@]} -ge 2 ]; then CPU_B=${cpus[1]}; PLACEMENTS+=(split); fi
fi
fact placements "${PLACEMENTS[*]}"

for d in bf16 fp32; do
  ck=$S/ckpt-$d
  files=$(echo "$ck"/*.safetensors)

  # Unpinned (the scheduler chooses), and pinned with taskset: both stages on
  # one CPU, or one CPU each.  Where the two stages of a pipe run changes what
  # the pipe costs, and on a small shared machine the scheduler's choice
  # follows the other load, so the pinned pairs are the steadier figures.
  log "$d: store mode, import | verify against cat | cat"
  warm $files
  for r in $(seq "$STORE_REPS"); do
    for pl in "${PLACEMENTS[@]}"; do
      case $pl in
        free) a=; b= ;;
        same) a="taskset -c $CPU_A "; b="taskset -c $CPU_A " ;;
        split) a="taskset -c $CPU_A "; b="taskset -c $CPU_B " ;;
      esac
      measure "$d/store/cat-pipe-$pl" "$r" "${a}cat $files | ${b}cat > /dev/null"
      measure "$d/store/mpu-pipe-$pl" "$r" "${a}$MPU import --store -q $ck | ${b}$MPU verify -q"
    done
  done

  log "$d: store mode, each side alone"
  "$MPU" import --store -q "$ck" >"$S/$d.store.mpuc"
  fact "$d.store_bytes" "$(bytes_of "$S/$d.store.mpuc")"
  warm $files "$S/$d.store.mpuc"
  for r in $(seq "$STORE_REPS"); do
    measure "$d/store/cat-null" "$r" "cat $files > /dev/null"
    measure "$d/store/import-null" "$r" "$MPU import --store -q $ck > /dev/null"
    measure "$d/store/verify-file" "$r" "$MPU verify -q < $S/$d.store.mpuc"
  done
  rm -f "$S/$d.store.mpuc"

  log "$d: zstd mode, import and verify with and without byte grouping, against zstd -1"
  "$MPU" import -q "$ck" >"$S/$d.g.mpuc"
  "$MPU" import -q --no-group "$ck" >"$S/$d.ng.mpuc"
  zstd -1 -q -c $files >"$S/$d.zst"
  fact "$d.raw_bytes" "$(raw_of $files)"
  fact "$d.g_bytes" "$(bytes_of "$S/$d.g.mpuc")"
  fact "$d.ng_bytes" "$(bytes_of "$S/$d.ng.mpuc")"
  fact "$d.zst_bytes" "$(bytes_of "$S/$d.zst")"
  warm $files "$S/$d.g.mpuc" "$S/$d.ng.mpuc" "$S/$d.zst"
  for r in $(seq "$REPS"); do
    measure "$d/zstd/zstd-c" "$r" "zstd -1 -q -c $files > /dev/null"
    measure "$d/zstd/import-g" "$r" "$MPU import -q $ck > /dev/null"
    measure "$d/zstd/import-ng" "$r" "$MPU import -q --no-group $ck > /dev/null"
    measure "$d/zstd/zstd-d" "$r" "zstd -d -q -c $S/$d.zst > /dev/null"
    measure "$d/zstd/verify-g" "$r" "$MPU verify -q < $S/$d.g.mpuc"
    measure "$d/zstd/verify-ng" "$r" "$MPU verify -q < $S/$d.ng.mpuc"
  done
  rm -f "$S/$d.ng.mpuc" "$S/$d.zst"

  log "$d: peak memory"
  rss_set "$d"
  rm -rf "$S/$d.g.mpuc" "$ck"
done

log "bf16-small: peak memory"
rss_set bf16-small

# ------------------------------------------------------------------ profile
# Where the CPU time goes, on the small checkpoint (perf, if it works here).
: >"$S/profile.txt"
if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then
  log "profiling on bf16-small"
  ck=$S/ckpt-bf16-small
  "$MPU" import --store -q "$ck" >"$S/small.store.mpuc"
  warm "$ck"/*.safetensors "$S/small.store.mpuc" "$S/bf16-small.g.mpuc"
  prof() {
    local title=$1 cmd=$2
    perf record -q -o "$S/perf.data" -- bash -c "$cmd" >/dev/null 2>&1 || return 0
    {
      printf '### %s\n\n`%s`\n\n```\n' "$title" "$cmd"
      perf report -i "$S/perf.data" --stdio --sort dso,sym 2>/dev/null |
        awk '!/^#/ && NF && $1 + 0 >= 1.0' | head -12
      printf '```\n\n'
    } >>"$S/profile.txt"
  }
  prof "import --store" "$MPU import --store -q $ck > /dev/null"
  prof "verify (store stream)" "$MPU verify -q < $S/small.store.mpuc"
  prof "import (zstd -1, grouped)" "$MPU import -q $ck > /dev/null"
  prof "verify (zstd -1, grouped)" "$MPU verify -q < $S/bf16-small.g.mpuc"
  {
    printf '### import --store | verify (perf stat, whole pipeline)\n\n```\n'
    perf stat -e task-clock,context-switches,cpu-migrations,page-faults -- \
      bash -c "set -o pipefail; $MPU import --store -q $ck | $MPU verify -q" 2>&1 >/dev/null |
      awk 'NF && !/Performance counter/'
    printf '```\n\n'
  } >>"$S/profile.txt"
  rm -f "$S"/perf.data* "$S/small.store.mpuc"
else
  log "perf not usable here; no profile"
fi

# CPU time the rest of the machine used while we ran: all busy time minus ours.
ours=$(times | tail -1 | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } print s }')
fact others_cpu "$(others_cpu "$STAT0" "$ours" "$(( $(date +%s) - T_START ))")"
fact load_end "$(machine_load)"
fact total_seconds "$(( $(date +%s) - T_START ))"

# ------------------------------------------------------------------ report
write_report "$REPORT" python3 "$HERE/report.py" "$S" "$HERE" "$SIZE"
log "done in $(( $(date +%s) - T_START )) s"
