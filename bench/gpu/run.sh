#!/usr/bin/env bash
# run.sh -- GPU throughput of the server stages against the yardstick of a
# plain pinned host -> device -> host copy of the same bytes, measured in
# the same run (mpu-gpubench's copy, tests/tools/gpubench.c), and against the
# CPU.  Prints a short table last.  Needs a GPU.
#
#   MPU_BIN       the programs (default bin/);  MPU_TOOLS  the test tools
#   BENCH_LAYERS  layers of the generated model (default 8: ~0.4 GB in f32)
#   BENCH_COPIES  M (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export PATH="${MPU_BIN:-$repo/bin}:$PATH"
tools=${MPU_TOOLS:-$repo/build/release/tests/tools}
layers=${BENCH_LAYERS:-8}
M=${BENCH_COPIES:-2}
dir=$(mktemp -d /tmp/mpu-bench-gpu.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"

python3 - "$repo/examples/tiny/config.json" "$layers" > cfg.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=2048, intermediate_size=5632, num_hidden_layers=int(sys.argv[2]),
         num_attention_heads=16, num_key_value_heads=4, vocab_size=272)
print(json.dumps(c))
PY
mpu keygen -o k
mpu init --config cfg.json -o model.mpuc
mpu perturb --device cpu --store --key k --copies "$M" --kappa 0.01 model.mpuc > copies.mpuc
mpu invert --device cpu --store --key k --onto model.mpuc copies.mpuc > updates.mpuc
bytes=$(python3 -c "import os; print(os.path.getsize('model.mpuc'))")

t() { local s e; s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
rows=()
for stage in perturb invert denoise; do
  case $stage in
    perturb) args=(--key k --copies "$M" --kappa 0.01 model.mpuc) ;;
    invert) args=(--key k --onto model.mpuc copies.mpuc) ;;
    denoise) args=(--key k --onto model.mpuc updates.mpuc) ;;
  esac
  cpu=$(t mpu "$stage" --store --device cpu "${args[@]}")
  gpu=$(t mpu "$stage" --store --device cuda "${args[@]}")
  rows+=("$stage $cpu $gpu")
done
copy=$("$tools/gpubench" copy "$bytes")   # bytes per second, pinned round trip

echo
echo "model: $layers layers, $((bytes / 1048576)) MiB of f32; M = $M; $(nproc) CPU threads"
echo "pinned host<->device round trip of the model's bytes: $(echo "$copy / 1e9" | bc -l | xargs printf '%.2f') GB/s"
printf '%-8s %10s %10s %12s %10s\n' stage "cpu s" "gpu s" "gpu MB/s" "gpu/copy"
for r in "${rows[@]}"; do
  set -- $r
  mbs=$(echo "$bytes / $3 / 1e6" | bc -l)
  printf '%-8s %10.2f %10.2f %12.0f %9.1f%%\n' "$1" "$2" "$3" "$mbs" "$(echo "100 * $bytes / $3 / $copy" | bc -l)"
done
