# helper.bash -- shared setup for the CLI tests: a fresh directory per test,
# the programs under test on PATH, bats-assert, and small model fixtures.
bats_load_library bats-support
bats_load_library bats-assert

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
FIXTURES=$REPO/tests/fixtures
export PATH="${MPU_BIN:-$REPO/bin}:$PATH"

setup() {
  cd "$BATS_TEST_TMPDIR" || exit 1
}

# tiny_model OUT [mpu init options...]: the 2-layer Llama of examples/tiny.
tiny_model() {
  local out=$1
  shift
  mpu init --config "$REPO/examples/tiny/config.json" "$@" -o "$out"
}

# hf_dir DIR: a Hugging Face directory with weights, config and extra files.
hf_dir() {
  local dir=$1
  tiny_model tiny.src.mpuc --dtype bf16
  mpu export -o "$dir" tiny.src.mpuc
  printf '{\n  "bos_token_id": 1,\n  "eos_token_id": 2\n}\n' > "$dir/generation_config.json"
  printf '{"version":"1.0","model":{"type":"BPE"}}' > "$dir/tokenizer.json"
  printf 'a model card\n' > "$dir/README.md"
  rm -f tiny.src.mpuc
}

# file_size FILE
file_size() { stat -c %s "$1"; }

# flip_byte FILE OFFSET: inverts one bit of the byte at OFFSET.
flip_byte() {
  python3 - "$1" "$2" <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, 'rb').read())
b[off] ^= 0x10
open(p, 'wb').write(bytes(b))
PY
}

# json_field JSONL-LINE-FILTER: prints a field with python (no jq dependency).
jq_py() {
  python3 -c "import sys, json
for line in sys.stdin:
    o = json.loads(line)
    $1"
}

# Debian's Python, with numpy and scipy (the tools' test dependencies), for
# statistical checks; a python3 earlier on PATH may lack them.
SCIPY_PYTHON=/usr/bin/python3

# The tests' client with the server's secrets (tests/tools/simclient.c).
simclient() { "${MPU_TOOLS:-$REPO/build/release/tests/tools}/simclient" "$@"; }

# A round's files: server.key, model.mpuc (tiny, bf16), copies copy-1/2.mpuc.
round_setup() {
  mpu keygen -o server.key
  tiny_model model.mpuc --dtype bf16 "$@"
}
