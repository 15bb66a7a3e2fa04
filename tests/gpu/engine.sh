#!/usr/bin/env bash
# engine.sh -- the engine on the GPU (kernels/engine_gpu.cu), on a machine
# with a CUDA GPU; tests/gpu/run.sh calls it, or run it alone.
#
#   1. the PyTorch fixtures (tests/fixtures/engine): test_engine with
#      MPU_TEST_DEVICE=cuda, fp32 products, the CPU's tolerances (logits and
#      every gradient to 1e-5 normwise, the 10 AdamW step losses to 1e-4,
#      cached decoding against the full forward);
#   2. TF32 and bf16 products against the same fixtures with the CPU's
#      tolerances, for information only (they are options, not defaults);
#   3. the programs: score, train, unlearn (every algorithm), generate and
#      eval with --device cuda agree with --device cpu (NLL to 1e-5 relative,
#      step losses to 1e-4, weights after SGD training to 1e-5 of each
#      tensor's largest -- SGD because AdamW's m/sqrt(v) magnifies last-bit
#      differences of near-zero gradients up to the learning rate; AdamW is
#      checked by the fixtures' 10 steps -- the same greedy text), and a GPU
#      run repeated gives the same bytes;
#   4. compute-sanitizer over one fixture (when installed).
# Prints TAP lines, then "N passed, N failed"; exit 1 when any failed.
#
#   MPU_BIN  the programs (default bin/);  MPU_BUILD  the build (build/release)
#   ENGINE_GPU_DEVICE  cuda (default); cpu runs the script's own machinery
#                      (CPU against CPU) on a machine without a GPU
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export PATH="${MPU_BIN:-$repo/bin}:$PATH"
build=${MPU_BUILD:-$repo/build/release}
gpu=${ENGINE_GPU_DEVICE:-cuda}
make -s "$build/tests/test_engine" > /dev/null || exit 2
dir=$(mktemp -d /tmp/mpu-gpu-engine.XXXXXX)
trap 'rm -rf "$dir"' EXIT

pass=0 fail=0
check() { # check NAME COMMAND...: one TAP line
  local name=$1; shift
  if "$@" > "$dir/check.log" 2>&1; then pass=$((pass + 1)); echo "ok - $name"
  else fail=$((fail + 1)); echo "not ok - $name"; fi
  grep '^#' "$dir/check.log" | grep -v '^# CHECK' | tail -30
  grep -v '^ok\|^1\.\.' "$dir/check.log" | grep -v '^#' | sed 's/^/#   /' | tail -20
}
info() { # info NAME COMMAND...: reported, never failing
  local name=$1; shift
  if "$@" > "$dir/info.log" 2>&1; then echo "# info: $name: within the fp32 tolerances"
  else echo "# info: $name: outside the fp32 tolerances"; fi
  grep '^# .*\(normwise\|AdamW\|loss \)' "$dir/info.log" | sed 's/^/#   /' | head -30
}

# 1, 2: the fixtures
check "PyTorch fixtures on the GPU, fp32 products, CPU tolerances" env MPU_TEST_DEVICE=$gpu "$build/tests/test_engine"
info "TF32 products" env MPU_TEST_DEVICE=$gpu MPU_CUDA_MATH=tf32 MPU_TEST_LOOSE=1 "$build/tests/test_engine"
info "bf16 products" env MPU_TEST_DEVICE=$gpu MPU_CUDA_MATH=bf16 MPU_TEST_LOOSE=1 "$build/tests/test_engine"

# 3: the programs, CPU against GPU
cd "$dir" || exit 2
mpu init --config "$repo/examples/tiny/config.json" --seed 7 -o tiny.mpuc 2> /dev/null ||
  mpu init --config "$repo/examples/tiny/config.json" -o tiny.mpuc || exit 2
python3 - <<'PY'
import json
names = ["Ada", "Brin", "Coral", "Dunmore", "Elska", "Fenwick", "Galt", "Hollis"]
with open("data.jsonl", "w") as f:
    for i, n in enumerate(names):
        f.write(json.dumps({"text": f"{n} was born in the year {1900 + 7 * i} and wrote {i + 2} novels."}) + "\n")
with open("forget.jsonl", "w") as f, open("retain.jsonl", "w") as g:
    for i, n in enumerate(names):
        item = {"question": f"When was {n} born?", "answer": f"{n} was born in {1900 + 7 * i}."}
        (f if i < 4 else g).write(json.dumps(item) + "\n")
PY

# close A B REL: two JSON Lines files of numbers agree to REL relative
cat > close.py <<'PY'
import json, sys
a, b, rel = sys.argv[1], sys.argv[2], float(sys.argv[3])
worst = 0.0
def walk(x, y):
    global worst
    if isinstance(x, dict):
        assert set(x) == set(y), (sorted(x), sorted(y))
        for k in x: walk(x[k], y[k])
    elif isinstance(x, list):
        assert len(x) == len(y)
        for p, q in zip(x, y): walk(p, q)
    elif isinstance(x, float) or isinstance(y, float):
        if x is None or y is None: assert x == y; return
        d = abs(x - y) / max(abs(x), abs(y), 1e-12)
        if abs(x - y) > 1e-9: worst = max(worst, d)
    elif x != y and not (isinstance(x, str) and ("second" in x or "tokens_per_s" in x)):
        assert x == y, (x, y)
la, lb = open(a).read().splitlines(), open(b).read().splitlines()
assert len(la) == len(lb), (len(la), len(lb))
for p, q in zip(la, lb):
    x, y = json.loads(p), json.loads(q)
    for k in ("tokens_per_s",):
        if isinstance(x, dict): x.pop(k, None); y.pop(k, None)
    walk(x, y)
print(f"# worst relative difference {worst:.2e} (limit {rel:g})")
sys.exit(0 if worst <= rel else 1)
PY
# weights A B REL: two models' tensors agree to REL of each tensor's largest
cat > weights.py <<'PY'
import json, struct, sys
from array import array
def load_file(path):  # safetensors, read by hand (no package needed)
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    out = {}
    for k, v in json.loads(raw[8:8 + n]).items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]
        buf = raw[8 + n + s:8 + n + e]
        if v["dtype"] == "F32":
            out[k] = array("f", buf)
        elif v["dtype"] == "BF16":
            out[k] = array("f", array("I", (h << 16 for h in array("H", buf))).tobytes())
        else:
            out[k] = struct.unpack("<%de" % (len(buf) // 2), buf)
    return out
a, b, rel = load_file(sys.argv[1]), load_file(sys.argv[2]), float(sys.argv[3])
assert sorted(a) == sorted(b)
worst, name = 0.0, ""
for k in a:
    x, y = a[k], b[k]
    d = max(abs(p - q) for p, q in zip(x, y)) / max(max(abs(p) for p in x), 1e-30)
    if d > worst: worst, name = d, k
print(f"# worst normwise difference {worst:.2e} in {name} (limit {rel:g})")
sys.exit(0 if worst <= rel else 1)
PY

score_pair() {
  mpu score --device cpu --data data.jsonl tiny.mpuc > s.cpu &&
    mpu score --device "$gpu" --data data.jsonl tiny.mpuc > s.gpu &&
    mpu score --device "$gpu" --data data.jsonl tiny.mpuc > s.gpu2 && cmp s.gpu s.gpu2 &&
    python3 close.py s.cpu s.gpu 1e-5
}
train_pair() {
  local opts=(--epochs 3 --batch 4 --optimizer sgd --lr 1e-2 --no-shuffle --store)
  mpu train -q --device cpu "${opts[@]}" --log t.cpu.log --data data.jsonl -o t.cpu.mpuc tiny.mpuc &&
    mpu train -q --device "$gpu" "${opts[@]}" --log t.gpu.log --data data.jsonl -o t.gpu.mpuc tiny.mpuc &&
    mpu train -q --device "$gpu" "${opts[@]}" --data data.jsonl -o t.gpu2.mpuc tiny.mpuc &&
    cmp t.gpu.mpuc t.gpu2.mpuc &&
    python3 close.py t.cpu.log t.gpu.log 1e-5 &&
    mpu export -q -o t.cpu.safetensors t.cpu.mpuc && mpu export -q -o t.gpu.safetensors t.gpu.mpuc &&
    python3 weights.py t.cpu.safetensors t.gpu.safetensors 1e-5
}
unlearn_pair() { # unlearn_pair ALGO
  local a=$1 opts=(--epochs 2 --batch 2 --optimizer sgd --lr 1e-2 --store)
  mpu unlearn -q --device cpu --algo "$a" "${opts[@]}" --log u.cpu.log --forget forget.jsonl --retain retain.jsonl \
    -o "u.$a.cpu.mpuc" tiny.mpuc &&
    mpu unlearn -q --device "$gpu" --algo "$a" "${opts[@]}" --log u.gpu.log --forget forget.jsonl --retain retain.jsonl \
      -o "u.$a.gpu.mpuc" tiny.mpuc &&
    python3 close.py u.cpu.log u.gpu.log 1e-4 &&
    mpu export -q -o "u.$a.cpu.safetensors" "u.$a.cpu.mpuc" && mpu export -q -o "u.$a.gpu.safetensors" "u.$a.gpu.mpuc" &&
    python3 weights.py "u.$a.cpu.safetensors" "u.$a.gpu.safetensors" 1e-5
}
generate_pair() {
  mpu generate --device cpu --max-new 24 --prompt "Ada was born" t.cpu.mpuc > g.cpu &&
    mpu generate --device "$gpu" --max-new 24 --prompt "Ada was born" t.cpu.mpuc > g.gpu && cmp g.cpu g.gpu
}
eval_pair() {
  mpu eval --device cpu --json --max-new 8 --forget forget.jsonl --retain retain.jsonl t.cpu.mpuc > e.cpu &&
    mpu eval --device "$gpu" --json --max-new 8 --forget forget.jsonl --retain retain.jsonl t.cpu.mpuc > e.gpu &&
    python3 close.py e.cpu e.gpu 1e-4
}
check "score: per-example NLL as the CPU's; two GPU runs byte-equal" score_pair
check "train: losses and weights as the CPU's; two GPU runs byte-equal" train_pair
for a in ga graddiff npo simnpo undial satimp wga idkdpo; do
  check "unlearn --algo $a: losses and weights as the CPU's" unlearn_pair "$a"
done
check "generate: the CPU's greedy text (the cache on the device)" generate_pair
check "eval: the CPU's metrics" eval_pair

# 4: memory errors and races
cd "$repo" || exit 2
if command -v compute-sanitizer > /dev/null; then
  check "compute-sanitizer: the fixtures without memory errors" \
    env MPU_TEST_DEVICE=$gpu compute-sanitizer --error-exitcode 9 "$build/tests/test_engine"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
