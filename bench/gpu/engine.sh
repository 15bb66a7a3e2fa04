#!/usr/bin/env bash
# engine.sh -- the GPU engine's training and unlearning throughput and peak
# device memory against PyTorch eager (transformers' LlamaForCausalLM, eager
# attention, torch.optim.AdamW, clip_grad_norm_) on the same GPU, with a
# ~1.2B-parameter Llama (Llama-3.2-1B's shape, random weights), the same
# batch and sequence length.  Prints a short table last.  Needs a GPU and
# torch + transformers in python3.
#
#   mpu rows: --device cuda with MPU_CUDA_MATH fp32, tf32 and bf16 (weights,
#   gradients and moments stay fp32; bf16 is only how cuBLAS multiplies).
#   torch rows: fp32 master weights with bf16 autocast (mpu bf16's memory
#   model), and pure bf16 weights (the usual eager bf16 run), and fp32.
#   tokens/s: steady state, warm-up steps left out, the mpu steps timed from
#   its --log; memory: peak of nvidia-smi's used memory minus the idle level
#   (the same yardstick for both), and torch's own max_memory_allocated.
#
#   MPU_BIN        the programs (default bin/)
#   BENCH_B, BENCH_T, BENCH_STEPS   batch rows, tokens per row, timed steps (4, 512, 6)
#   BENCH_LAYERS   layers (default 16, Llama-3.2-1B's)
#   BENCH_SMOKE=1  a tiny model on --device cpu, mpu rows only: checks this
#                  script's machinery on a machine without a GPU
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
export PATH="${MPU_BIN:-$repo/bin}:$PATH"
B=${BENCH_B:-4} T=${BENCH_T:-512} S=${BENCH_STEPS:-6} L=${BENCH_LAYERS:-16} W=2
smoke=${BENCH_SMOKE:-0} dev=cuda V=128256
[ "$smoke" = 1 ] && { dev=cpu; B=2; T=16; S=2; V=272; }
dir=$(mktemp -d /tmp/mpu-bench-engine.XXXXXX)
trap 'kill $(jobs -p) 2> /dev/null; rm -rf "$dir"' EXIT
cd "$dir"

if [ "$smoke" = 1 ]; then cp "$repo/examples/tiny/config.json" cfg.json; else cat > cfg.json <<EOF
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
 "intermediate_size": 8192, "num_hidden_layers": $L, "num_attention_heads": 32, "num_key_value_heads": 8,
 "head_dim": 64, "max_position_embeddings": 2048, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
 "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16",
 "hidden_act": "silu", "initializer_range": 0.02}
EOF
fi
mpu init --config cfg.json --dtype bf16 --store -o model.mpuc
python3 - "$B" "$T" "$S" "$W" "$V" <<'PY'
import json, random, sys
B, T, S, W, V = map(int, sys.argv[1:])
random.seed(0)
def rows(path, n):
    with open(path, "w") as f:
        for _ in range(n):
            f.write(json.dumps({"input_ids": [random.randrange(3, V) for _ in range(T)]}) + "\n")
rows("train.jsonl", B * (S + W))
rows("forget.jsonl", B * (S + W))
rows("retain.jsonl", B * (S + W))
PY

# peak_of OUT COMMAND...: runs COMMAND > OUT; prints the peak GPU memory in
# use meanwhile (GB) above the idle level ("-" without nvidia-smi)
smi=$(command -v nvidia-smi || true)
idle=$([ -n "$smi" ] && nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1 || echo 0)
peak_of() {
  local out=$1 pid=""
  shift
  if [ -n "$smi" ]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > mem.log &
    pid=$!
  fi
  local rc=0
  "$@" > "$out" || rc=$?
  [ -n "$pid" ] && { kill "$pid" 2> /dev/null; wait "$pid" 2> /dev/null || true; }
  if [ -n "$pid" ]; then sort -n mem.log | tail -1 | awk -v idle="$idle" '{printf "%.2f", ($1 - idle) / 1024}'
  else printf -- "-"; fi
  return $rc
}
# steady tokens/s from an mpu --log: steps after the warm-up, ROWS x T tokens each
steady() {
  python3 - "$1" "$2" "$W" <<'PY'
import json, sys
log, tokens_per_step, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
steps = [json.loads(l) for l in open(log)]
cum, t = 0, []
for s in steps:
    cum += s["tokens"]
    t.append(cum / s["tokens_per_s"])  # seconds since the run's start
n = len(steps) - warm
print(f"{tokens_per_step * n / (t[-1] - t[warm - 1]):.0f}")
PY
}

rows=()
for math in fp32 tf32 bf16; do
  export MPU_CUDA_MATH=$math
  mem=$(peak_of /dev/null mpu train -q --device "$dev" --epochs 1 --batch "$B" --grad-accum 1 --no-shuffle --max-grad-norm 1 \
        --log "train.$math.log" --data train.jsonl model.mpuc)
  rows+=("mpu $dev $math|train|$(steady "train.$math.log" $((B * T)))|$mem|")
  mem=$(peak_of /dev/null mpu unlearn -q --device "$dev" --algo npo --epochs 1 --batch "$B" --grad-accum 1 --max-grad-norm 1 \
        --log "unlearn.$math.log" --forget forget.jsonl --retain retain.jsonl model.mpuc)
  rows+=("mpu $dev $math|unlearn (npo)|$(steady "unlearn.$math.log" $((2 * B * T)))|$mem|")
  [ "$smoke" = 1 ] && break
done
unset MPU_CUDA_MATH
[ "$smoke" = 1 ] || for prec in autocast bf16 fp32; do
  for mode in train unlearn; do
    out=$(mktemp)
    mem=$(peak_of "$out" python3 "$repo/bench/gpu/torch_llama.py" cfg.json "$mode" "$prec" "$B" "$T" "$S" || echo "-")
    read -r tps alloc < <(python3 -c "import json,sys; r=json.load(open('$out')); print(f\"{r['tokens_per_s']:.0f} {r['peak_allocated_gb']:.2f}\")" ||
      echo "- -")
    rows+=("torch eager $prec|$mode$([ "$mode" = unlearn ] && echo ' (npo)')|$tps|$mem|$alloc")
  done
done

echo
echo "Llama $(python3 -c "import json; c=json.load(open('cfg.json')); print(f\"{c['num_hidden_layers']} layers, hidden {c['hidden_size']}, vocab {c['vocab_size']}\")"); B=$B rows x T=$T tokens (unlearn: B forget + B retain); $S timed steps"
printf '%-22s %-14s %12s %14s %16s\n' "engine" "step" "tokens/s" "peak GPU GB" "torch alloc GB"
for r in "${rows[@]}"; do
  IFS='|' read -r a b c d e <<< "$r"
  printf '%-22s %-14s %12s %14s %16s\n' "$a" "$b" "$c" "$d" "${e:--}"
done
