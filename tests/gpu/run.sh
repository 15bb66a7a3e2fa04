#!/usr/bin/env bash
# run.sh -- `make test-gpu`: on a machine with a CUDA GPU, perturb, invert and
# denoise give the same bytes with --device cuda as with --device cpu (cmp),
# on a small model and on one larger than a device memory cap (MPU_GPU_MEM,
# default 4MiB here, so every stage streams through in many chunks); then the
# bench (bench/gpu/run.sh).  Without a GPU it says so and fails: it cannot pass.
#
#   MPU_BIN       the programs (default bin/)
#   GPU_TEST_CAP  the device memory cap for the large model (default 4MiB)
#   GPU_TEST_DIR  scratch directory (default: a fresh one under /tmp)
set -uo pipefail
cd "$(dirname "$0")/../.."
export PATH="${MPU_BIN:-$PWD/bin}:$PATH"
repo=$PWD
cap=${GPU_TEST_CAP:-4MiB}
dir=${GPU_TEST_DIR:-$(mktemp -d /tmp/mpu-test-gpu.XXXXXX)}
mkdir -p "$dir" && cd "$dir" || exit 2

if ! probe=$(mpu perturb --device cuda --key /dev/null --copies 2 --kappa 0 /dev/null 2>&1) &&
   grep -q "no CUDA device" <<<"$probe"; then
  echo "test-gpu: no GPU here ($probe)"
  echo "0 passed, 1 failed"
  exit 1
fi

pass=0 fail=0
check() { # check NAME COMMAND...: one TAP line
  local name=$1; shift
  if "$@" > check.log 2>&1; then pass=$((pass + 1)); echo "ok - $name"
  else fail=$((fail + 1)); echo "not ok - $name"; sed 's/^/#   /' check.log | tail -20; fi
}

# round MODEL TAG [CAP] [perturb options]: the whole round on the CPU and on
# the GPU (with a memory cap if given); every stream byte-equal.
round() {
  local model=$1 tag=$2 mem=${3:-}; shift 3
  mpu perturb --device cpu --key server.key "$@" "$model" > "$tag.p.cpu" &&
    MPU_GPU_MEM=$mem mpu perturb --device cuda --key server.key "$@" "$model" > "$tag.p.gpu" &&
    cmp "$tag.p.cpu" "$tag.p.gpu" || return 1
  # a client that moves every copy a little: unlearn's output stands in
  mpu split -o "$tag.copy-%d.mpuc" < "$tag.p.cpu" || return 1
  local copies=("$tag".copy-*.mpuc)
  mpu invert --device cpu --key server.key --onto "$model" "${copies[@]}" > "$tag.i.cpu" &&
    MPU_GPU_MEM=$mem mpu invert --device cuda --key server.key --onto "$model" "${copies[@]}" > "$tag.i.gpu" &&
    cmp "$tag.i.cpu" "$tag.i.gpu" || return 1
  mpu invert --device cpu --key server.key --onto "$model" "$tag.p.cpu" > "$tag.im.cpu" &&
    MPU_GPU_MEM=$mem mpu invert --device cuda --key server.key --onto "$model" "$tag.p.cpu" > "$tag.im.gpu" &&
    cmp "$tag.im.cpu" "$tag.im.gpu" || return 1
  mpu denoise --device cpu --key server.key --onto "$model" "$tag.i.cpu" > "$tag.d.cpu" &&
    MPU_GPU_MEM=$mem mpu denoise --device cuda --key server.key --onto "$model" "$tag.i.cpu" > "$tag.d.gpu" &&
    cmp "$tag.d.cpu" "$tag.d.gpu"
}

# updates that are not zero: unlearn one step on each copy when the engine runs
moved_round() {
  local model=$1 tag=$2 mem=$3
  round "$model" "$tag" "$mem" --copies 3 --kappa 0.05 || return 1
  printf '{"text": "the capital of nowhere is somewhere"}\n' > forget.jsonl
  for c in "$tag".copy-*.mpuc; do
    mpu unlearn -q --algo ga --forget forget.jsonl --epochs 1 --lr 1e-3 -o "${c%.mpuc}.back" "$c" || return 1
  done
  local backs=("$tag".copy-*.back)
  mpu invert --device cpu --key server.key --onto "$model" "${backs[@]}" > "$tag.u.cpu" &&
    MPU_GPU_MEM=$mem mpu invert --device cuda --key server.key --onto "$model" "${backs[@]}" > "$tag.u.gpu" &&
    cmp "$tag.u.cpu" "$tag.u.gpu" &&
    mpu denoise --device cpu --key server.key --onto "$model" "$tag.u.cpu" > "$tag.n.cpu" &&
    MPU_GPU_MEM=$mem mpu denoise --device cuda --key server.key --onto "$model" "$tag.u.cpu" > "$tag.n.gpu" &&
    cmp "$tag.n.cpu" "$tag.n.gpu"
}

mpu keygen -o server.key
mpu init --config "$repo/examples/tiny/config.json" -o tiny.mpuc
mpu init --config "$repo/examples/tiny/config.json" --dtype bf16 -o tiny-bf16.mpuc
# larger than the cap: 8 layers of hidden 256, FFN 688 (a few MiB per layer)
python3 - "$repo/examples/tiny/config.json" > big.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=256, intermediate_size=688, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2)
print(json.dumps(c))
PY
mpu init --config big.json -o big.mpuc

check "small model, M=2, every stage byte-equal" round tiny.mpuc s2 "" --copies 2 --kappa 0.01
check "small model, M=5, paper alphas, scope all" round tiny.mpuc s5 "" --copies 5 --kappa 0.1 --alphas paper --scope all
check "bf16 model, --dtype keep (rounded on the device)" round tiny-bf16.mpuc k2 "" --copies 2 --kappa 0.01 --dtype keep
check "model larger than MPU_GPU_MEM=$cap streams through" round big.mpuc b2 "$cap" --copies 2 --kappa 0.05
check "larger than the cap, M=4, --base" round big.mpuc b4 "$cap" --copies 4 --kappa 0.05 --base tiny.mpuc
check "non-zero updates (unlearned copies) byte-equal" moved_round tiny.mpuc u3 "$cap"
check "--device auto picks the GPU and gives the same bytes" \
  bash -c "mpu perturb --key server.key --copies 2 --kappa 0.01 tiny.mpuc | cmp - s2.p.cpu"
check "a cap too small for one chunk fails cleanly with exit 2" \
  bash -c "MPU_GPU_MEM=1K mpu perturb --device cuda --key server.key --copies 2 --kappa 0.01 big.mpuc > /dev/null 2> err; [ \$? -eq 2 ] && grep -q MPU_GPU_MEM err"
if command -v compute-sanitizer > /dev/null; then
  check "compute-sanitizer: no memory errors or races in perturb/invert" bash -c "
    MPU_GPU_MEM=$cap compute-sanitizer --error-exitcode 9 mpu perturb --device cuda --key server.key --copies 2 --kappa 0.05 big.mpuc > cs.p &&
    cmp cs.p b2.p.cpu &&
    MPU_GPU_MEM=$cap compute-sanitizer --tool racecheck --error-exitcode 9 mpu invert --device cuda --key server.key --onto big.mpuc b2.p.cpu > /dev/null"
fi

check "the engine on the GPU (tests/gpu/engine.sh)" "$repo/tests/gpu/engine.sh"
echo "# bench"
"$repo/bench/gpu/run.sh" || { fail=$((fail + 1)); echo "not ok - bench/gpu/run.sh"; }
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
