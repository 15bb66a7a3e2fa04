#!/usr/bin/env bash
# demo.sh -- `make demo`: the main job on the embedded default model.
#
# The project makes its own small Llama (examples/tiny/config.json), writes it
# as a Hugging Face directory, and takes it through the container's round
# trip: import -> inspect -> verify -> export, checking that what comes out is
# byte for byte what went in.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="${MPU_BIN:-$here/../bin}:$PATH"
work=${DEMO_DIR:-$(mktemp -d /tmp/mpu-demo.XXXXXX)}
mkdir -p "$work"
cd "$work"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "make a model: a 2-layer Llama with random weights, written as a Hugging Face directory"
mpu init --config "$here/tiny/config.json" --dtype bf16 --seed 1 -o made.mpuc
rm -rf hf-model && mpu export -o hf-model made.mpuc
printf '{\n  "bos_token_id": 1,\n  "eos_token_id": 2\n}\n' > hf-model/generation_config.json
ls -l hf-model

step "import: Hugging Face directory -> model.mpuc"
mpu import hf-model > model.mpuc
ls -l model.mpuc

step "inspect"
mpu inspect model.mpuc

step "verify: structure, every checksum and hash, the trailer"
mpu verify model.mpuc
zstd -qt model.mpuc && echo "zstd -t: the stream is a valid sequence of zstd frames"

step "export: model.mpuc -> Hugging Face directory"
rm -rf hf-model-out && mpu export -o hf-model-out model.mpuc
for f in model.safetensors config.json generation_config.json; do
  cmp "hf-model/$f" "hf-model-out/$f"
  echo "$f: identical"
done

echo
echo "demo finished; files in $work"
