# bench/lib/common.sh -- shell helpers shared by the benchmarks' run.sh.
# Not a benchmark itself (bench/run.sh runs only directories with a run.sh).
#
#   HERE=$(cd "$(dirname "$0")" && pwd)
#   . "$HERE/../lib/common.sh"
#
# Sets ROOT (the repository), BENCH_LIB (this directory), SRC_BIN (MPU_BIN or
# ROOT/bin), TORCH_PY and LOCK, and defines the functions below.  A benchmark
# then typically calls: bench_lock "$0" "$@"; bench_scratch NAME;
# need_gnu_time; copy_programs "$S/bin"; results_init; machine_facts ...
# shellcheck shell=bash

BENCH_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_LIB/../.." && pwd)
SRC_BIN=${MPU_BIN:-$ROOT/bin}
TORCH_PY=/usr/bin/python3          # Debian's python, the one with torch and numpy
LOCK=${LOCK:-/work/bench-scratch/bench.lock}
RC="python3 $BENCH_LIB/report_common.py"   # field, lastfield, mpulog (see report_common.py)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ------------------------------------------------------------------ the lock
# bench_lock: serialise benchmarks on the shared machine with flock on $LOCK,
# held (on a file descriptor this shell and its children inherit) until the
# benchmark exits.  Waits at most LOCK_WAIT seconds (default 2700), then exits
# 3 without measuring.  Not taken again where an ancestor already holds it:
# BENCH_LOCK_HELD in the environment (set here), or an ancestor process that is
# `flock ... $LOCK ...`.  Sets LOCK_WAITED (seconds spent waiting).
lock_held_by_ancestor() {
  local p=$PPID cmd
  while [ "${p:-1}" -gt 1 ]; do
    cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || true)
    case "$cmd" in *flock*"$LOCK"*) return 0 ;; esac
    p=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $2}')
  done
  return 1
}
bench_lock() {
  LOCK_WAITED=0
  if [ "${BENCH_LOCK_HELD:-}" = "$LOCK" ] || lock_held_by_ancestor; then return 0; fi
  command -v flock >/dev/null || die "flock is missing (util-linux)"
  mkdir -p "$(dirname "$LOCK")"
  local t0 wait=${LOCK_WAIT:-2700}
  t0=$(date +%s)
  exec {BENCH_LOCK_FD}>>"$LOCK"
  if ! flock -n "$BENCH_LOCK_FD"; then
    log "waiting for $LOCK (another benchmark holds it; at most $wait s)"
    flock -w "$wait" "$BENCH_LOCK_FD" || { log "gave up after $wait s waiting for $LOCK (no measurement made)"; exit 3; }
  fi
  export BENCH_LOCK_HELD=$LOCK
  LOCK_WAITED=$(( $(date +%s) - t0 ))
  [ "$LOCK_WAITED" = 0 ] || log "waited $LOCK_WAITED s for $LOCK"
}

# ------------------------------------------------------------------ tools, scratch, programs
need_gnu_time() {
  [ -x /usr/bin/time ] && return 0
  if [ "$(id -u)" = 0 ]; then
    log "installing GNU time"
    apt-get install -y -q time >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q time >/dev/null; }
  else
    die "/usr/bin/time is missing: apt-get install time"
  fi
}
need_torch() {
  "$TORCH_PY" -c 'import torch, numpy' 2>/dev/null || die "$TORCH_PY cannot import torch and numpy (Debian: apt-get install python3-torch)"
}
need_tools() { local t; for t in "$@"; do command -v "$t" >/dev/null || die "$t is missing"; done; }

# bench_scratch NAME: S=$BENCH_SCRATCH/NAME, or NAME-quick with QUICK=1 (so a
# smoke test never empties a measurement's scratch); BENCH_SCRATCH defaults to
# /work/bench-scratch if writable, else /var/tmp/mpu-bench; never inside the
# repository.
bench_scratch() {
  if [ -z "${BENCH_SCRATCH:-}" ]; then
    if [ -d /work/bench-scratch ] && [ -w /work/bench-scratch ]; then BENCH_SCRATCH=/work/bench-scratch
    else BENCH_SCRATCH=/var/tmp/mpu-bench; fi
  fi
  S=$BENCH_SCRATCH/$1
  if [ "${QUICK:-0}" = 1 ]; then S=$S-quick; fi
  case "$S/" in "$ROOT"/*) echo "$0: scratch $S is inside the repository" >&2; exit 2 ;; esac
}
# scratch_cleanup_trap [KEEP_PATTERN...]: on exit empty $S (but the names
# matching a pattern), unless KEEP=1.
scratch_cleanup_trap() {
  SCRATCH_KEEP=("$@")
  trap scratch_cleanup EXIT
}
scratch_cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then log "kept scratch files in $S"; return; fi
  if [ ${#SCRATCH_KEEP[@]} = 0 ]; then rm -rf "$S"; return; fi
  local args=() k
  for k in "${SCRATCH_KEEP[@]}"; do args+=(! -name "$k"); done
  find "$S" -mindepth 1 -maxdepth 1 "${args[@]}" -exec rm -rf {} +
}
# copy_programs DIR: a private copy of $SRC_BIN/mpu*, so a rebuild cannot race us
copy_programs() {
  local f
  mkdir -p "$1"
  for f in "$SRC_BIN"/mpu*; do
    if [ -f "$f" ] && [ -x "$f" ]; then cp -p "$f" "$1/"; fi
  done
}
need_free_kb() {  # KB: at least that much free in $S
  local free_kb
  free_kb=$(df -Pk "$S" | awk 'NR==2 {print $4}')
  [ "$free_kb" -gt "$1" ] || die "$S: need about $(( $1 / 1000000 )) GB free, have $(( free_kb / 1000000 )) GB"
}

# ------------------------------------------------------------------ results, facts, commands
# RES (one row per run), FACTS (key<TAB>value), CMDS (label<TAB>command)
results_init() {
  RES=$S/results.tsv; FACTS=$S/facts.tsv; CMDS=$S/commands.txt
  : >"$RES"; : >"$FACTS"; : >"$CMDS"
}
fact() { printf '%s\t%s\n' "$1" "$2" >>"$FACTS"; }
cmd_once() { awk -F'\t' -v k="$1" '$1 == k {f = 1} END {exit !f}' "$CMDS" || printf '%s\t%s\n' "$1" "$2" >>"$CMDS"; }

# timed CMD...: runs CMD under GNU time; leaves "wall user sys maxrss_kb" in $S/time.out
timed() { /usr/bin/time -f '%e %U %S %M' -o "$S/time.out" "$@"; }
# record FIELD... [-- FIELD...]: appends to $RES the fields, then wall, user,
# sys, maxrss_kb from $S/time.out, then the fields after --
record() {
  local pre=() post=() seen=0 x
  for x in "$@"; do
    if [ "$seen" = 0 ] && [ "$x" = -- ]; then seen=1; continue; fi
    if [ "$seen" = 0 ]; then pre+=("$x"); else post+=("$x"); fi
  done
  local IFS=$'\t'
  printf '%s\t%s%s\n' "${pre[*]}" "$(tail -1 "$S/time.out" | tr ' ' '\t')" "${post[*]:+	${post[*]}}" >>"$RES"
}

# ------------------------------------------------------------------ the machine
# machine_load: % of all CPUs busy over 2 s, and the processes using >= 20% now
machine_load() {
  local a b
  a=$(head -1 /proc/stat); sleep 2; b=$(head -1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { n = split(a, x); split(b, y); t = 0
    for (i = 2; i <= n; i++) t += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6]); printf "%.0f%% of all CPUs busy", t ? 100 * (t - idle) / t : 0 }'
  top -b -n 2 -d 1 -w 200 | awk '/^top -/ {f++} f == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 20 {printf ", %s %s%%", $12, $9}'
}
# machine_facts PROGRAM: the facts every report's Machine table shows (PROGRAM:
# the private copy of the mpu program whose version and build time to give)
machine_facts() {
  local prog=$1
  fact date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  fact nproc "$(nproc)"
  fact cpu "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
  fact cpu_flags "$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|fma|avx512f|avx512_bf16' | tr '\n' ' ' | sed 's/ $//')"
  fact mem "$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  fact mem_available "$(awk '/^MemAvailable:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  fact kernel "$(uname -r)"
  fact mpu "$("$prog" --version 2>&1 | head -1)"
  fact git "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  fact git_dirty "$(git -C "$ROOT" status --porcelain 2>/dev/null | awk '$1 != "??" {printf "%s ", $2} $1 == "??" && $2 !~ /^bench\// {u++} END {if (u) printf "(+ %d untracked)", u}')"
  fact bin_mtime "$(date -u -r "$prog" '+%Y-%m-%d %H:%M:%S UTC')"
  fact lock_wait_s "${LOCK_WAITED:-0}"
}
# build_facts PROGRAM: compiler, flags, torch and the BLAS libraries
build_facts() {
  local prog=$1
  fact cc "$(${CC:-cc} --version 2>/dev/null | head -1)"
  fact cflags "$(make -s -C "$ROOT" --no-print-directory --eval='bench-print-cflags: ; @echo $(CFLAGS)' bench-print-cflags 2>/dev/null || echo '?')"
  fact torch "$("$TORCH_PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
  fact python "$("$TORCH_PY" --version 2>&1)"
  local mine; mine=$(ldd "$prog" | awk '/openblas/ {print $3}' | xargs -r readlink -f)
  fact openblas "${mine:-none} (mpu); $(ldd /usr/lib/python3/dist-packages/torch/lib/libtorch_cpu.so 2>/dev/null | awk '/libblas|openblas/ {print $3}' | xargs -r readlink -f | tr '\n' ' ')(torch)"
}
# sources_newer PROGRAM PATH...: the tracked files under PATHs changed after PROGRAM was built
sources_newer() {
  local prog=$1 newer; shift
  newer=$(cd "$ROOT" && git ls-files "$@" 2>/dev/null | while read -r f; do if [ "$f" -nt "$prog" ]; then printf '%s ' "$f"; fi; done || true)
  echo "${newer:-none}"
}
# others_cpu STAT0 OURS_S WALL_S [NOTE]: CPU time the rest of the machine used
# since the /proc/stat line STAT0 (all busy time minus OURS_S CPU-seconds of ours)
others_cpu() {
  awk -v a="$1" -v b="$(head -1 /proc/stat)" -v ours="$2" -v hz="$(getconf CLK_TCK)" -v wall="$3" -v ncpu="$(nproc)" \
    -v note="${4:-}" 'BEGIN { split(a, x); split(b, y); busy = 0
    for (i = 2; i <= 9; i++) if (i != 5 && i != 6) busy += y[i] - x[i]
    o = busy / hz - ours; if (o < 0) o = 0
    printf "%.0f CPU-s (%.0f%% of the %d CPUs over the measurements%s)", o, wall ? 100 * o / (wall * ncpu) : 0, ncpu, note }'
}
# measurements_done T_MEASURE "COL..." [NOTE]: the facts measure_s, other_cpu
# (our CPU time: the sum of those columns of $RES) and load_end
measurements_done() {
  local wall=$(( $(date +%s) - $1 ))
  fact measure_s "$wall"
  # shellcheck disable=SC2086
  fact other_cpu "$(others_cpu "$STAT0" "$(sum_columns "$RES" $2)" "$wall" "${3:-}")"
  fact load_end "$(machine_load)"
}
# sum_columns FILE COL...: the sum of those tab-separated columns over all rows
sum_columns() {
  local f=$1; shift
  awk -F'\t' -v cols="$*" 'BEGIN { n = split(cols, c, " ") } { for (i = 1; i <= n; i++) s += $(c[i]) } END { printf "%.2f", s }' "$f"
}

# ------------------------------------------------------------------ models and data (engine, unlearn)
gen_tokens() {  # V ROWS T SEED > file: random token ids 3..V-1, every sequence exactly T, scored from position 1
  python3 -c '
import json, random, sys
V, n, T, seed = map(int, sys.argv[1:5]); r = random.Random(seed)
for _ in range(n):
    print(json.dumps({"input_ids": [r.randrange(3, V) for _ in range(T)], "prompt_len": 1}))' "$@"
}
vocab_of() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$1"; }
fixture_params() {  # CONFIG: parameters of the plain-torch Llama of tests/fixtures/engine
  "$TORCH_PY" -c '
import json, math, sys; sys.dont_write_bytecode = True; sys.path.insert(0, sys.argv[2]); import make_fixtures as mf
c = json.load(open(sys.argv[1])); c.setdefault("tie_word_embeddings", False)
print(sum(math.prod(s) for _, s in mf.param_shapes(c)))' "$1" "$ROOT/tests/fixtures/engine"
}
torch_import_rss() {  # the baseline process's fixed cost: python + torch + numpy imported, nothing else
  /usr/bin/time -f '%M' -o "$S/rss0" "$TORCH_PY" -c 'import torch, numpy, json; torch.set_num_threads(1)'
  fact torch_import_rss_kb "$(tail -1 "$S/rss0")"
}

# ------------------------------------------------------------------ perf
perf_usable() {  # DIR: can perf record here?
  command -v perf >/dev/null && perf record -q -o "$1/probe.data" true >/dev/null 2>&1 && rm -f "$1/probe.data"
}
# perf_profile DIR NAME FREQ CMD...: perf record with DWARF call graphs, then
# DIR/NAME.children (inclusive, by symbol), .self (dso, symbol), .srcline, and
# the annotated instructions of the two busiest OpenMP regions (.topfnN,
# .annotateN).  OMP_WAIT_POLICY=PASSIVE in the environment: what mpu would set
# itself, but without its re-exec of /proc/self/exe (lib/cli.c), which breaks
# perf's unwinding.
perf_profile() {
  local dir=$1 name=$2 freq=$3; shift 3
  log "profile $name"
  env OMP_WAIT_POLICY=PASSIVE \
    perf record -q -F "$freq" --call-graph dwarf,16384 -o "$dir/$name.data" "$@" >/dev/null 2>"$dir/$name.err" \
    || die "perf record $name (see $dir/$name.err)"
  perf report -i "$dir/$name.data" --stdio --children --sort symbol -g none 2>/dev/null >"$dir/$name.children"
  perf report -i "$dir/$name.data" --stdio --no-children --sort dso,symbol -g none 2>/dev/null >"$dir/$name.self"
  perf report -i "$dir/$name.data" --stdio --no-children --sort symbol,srcline -g none 2>/dev/null >"$dir/$name.srcline"
  local top i=0
  for top in $(awk '$3 == "[.]" && $4 ~ /_omp_fn/ && $1 + 0 >= 2 {print $4}' "$dir/$name.self" | head -2); do
    i=$((i + 1))
    printf '%s\n' "$top" >"$dir/$name.topfn$i"
    perf annotate -i "$dir/$name.data" --stdio -s "$top" 2>/dev/null >"$dir/$name.annotate$i" || true
  done
  rm -f "$dir/$name.data"
}

# ------------------------------------------------------------------ the report
# write_report REPORT CMD...: CMD's standard output becomes REPORT (atomically)
write_report() {
  local out=$1; shift
  "$@" >"$out.tmp" || { rm -f "$out.tmp"; die "writing $out"; }
  mv "$out.tmp" "$out"
  log "report in $out"
}
