#!/usr/bin/env bats
# The .mpuc container through the programs: round trips, independent checks
# with stock zstd and xxhsum, and every kind of bad input.

load helper

@test "every .mpuc is a sequence of zstd frames: zstd -t accepts it" {
  tiny_model a.mpuc
  tiny_model b.mpuc --store
  tiny_model c.mpuc --no-group --chunk-size 4KiB
  for f in a b c; do
    run zstd -qt "$f.mpuc"
    assert_success
  done
}

@test "tensor hashes match xxhsum -H2 of the raw bytes that zstd -d recovers" {
  # Uncompressed and ungrouped, the frames' contents are the entries' raw
  # bytes in order: slice them with the sizes inspect reports and hash them
  # with the reference xxHash tool.
  tiny_model m.mpuc --store
  zstd -qdc m.mpuc > raw.bin
  mpu inspect --json m.mpuc | jq_py 'print(o["bytes"], o["xxh3_128"]) if o["record"] == "entry" else None' > entries.txt
  off=0
  n=0
  while read -r bytes hash; do
    tail -c +$((off + 1)) raw.bin | head -c "$bytes" > piece.bin
    got=$(xxhsum -H2 piece.bin | cut -d' ' -f1)
    # xxhsum may print an "XXH128 " prefix on some versions; compare the hex
    [ "${got##* }" = "$hash" ] || { echo "entry $n: xxhsum $got, mpu $hash"; false; }
    off=$((off + bytes))
    n=$((n + 1))
  done < entries.txt
  [ "$n" -eq 23 ]   # 2 tokenizer blobs and 21 tensors
  [ "$off" -eq "$(file_size raw.bin)" ]
}

@test "import then export gives back the same tensor bytes, config and files" {
  hf_dir src
  mpu import src > m.mpuc
  mpu export -o out m.mpuc
  cmp src/model.safetensors out/model.safetensors
  cmp src/tokenizer.json out/tokenizer.json
  cmp src/generation_config.json out/generation_config.json
  cmp src/README.md out/README.md
  cmp src/config.json out/config.json
}

@test "a sharded checkpoint round-trips through its index" {
  hf_dir src
  mpu import src > m.mpuc
  mpu export --shard-size 40KB -o sharded m.mpuc
  [ -f sharded/model.safetensors.index.json ]
  n=$(ls sharded/model-*-of-*.safetensors | wc -l)
  [ "$n" -gt 3 ]
  python3 -c "
import json
idx = json.load(open('sharded/model.safetensors.index.json'))
assert len(idx['weight_map']) == 21, idx
assert idx['metadata']['total_size'] > 0"
  # Import the directory and the index alone: the same tensors either way.
  mpu import sharded > s1.mpuc
  mpu import sharded/model.safetensors.index.json > s2.mpuc
  mpu inspect --json m.mpuc | jq_py 'print(o["name"], o["xxh3_128"]) if o["record"] == "entry" and o["kind"] == "tensor" else None' > a
  mpu inspect --json s1.mpuc | jq_py 'print(o["name"], o["xxh3_128"]) if o["record"] == "entry" and o["kind"] == "tensor" else None' > b
  mpu inspect --json s2.mpuc | jq_py 'print(o["name"], o["xxh3_128"]) if o["record"] == "entry" and o["kind"] == "tensor" else None' > c
  cmp a b
  cmp a c
}

@test "a single .safetensors file and stdin import alike" {
  tiny_model m.mpuc --dtype bf16
  mpu export -o one.safetensors m.mpuc
  mpu import one.safetensors > a.mpuc
  mpu import - < one.safetensors > b.mpuc
  mpu export -o a.safetensors a.mpuc
  mpu export -o b.safetensors b.mpuc
  cmp one.safetensors a.safetensors
  cmp one.safetensors b.safetensors
}

@test "store mode, zstd levels and chunk sizes change the bytes, not the content digest" {
  tiny_model m.mpuc
  mpu convert --store m.mpuc > s.mpuc
  mpu convert --level 5 --chunk-size 8KiB m.mpuc > z.mpuc
  mpu convert --no-group m.mpuc > g.mpuc
  ! cmp -s s.mpuc z.mpuc
  d() { mpu verify --json "$1" | jq_py 'print(o["content_digest"]["xxh3_128"])'; }
  [ "$(d s.mpuc)" = "$(d z.mpuc)" ]
  [ "$(d s.mpuc)" = "$(d g.mpuc)" ]
  [ "$(file_size z.mpuc)" -lt "$(file_size s.mpuc)" ]
}

@test "the same inputs give the same bytes" {
  tiny_model a.mpuc --seed 7
  tiny_model b.mpuc --seed 7
  tiny_model c.mpuc --seed 8
  cmp a.mpuc b.mpuc
  ! cmp -s a.mpuc c.mpuc
  hf_dir src
  mpu import src > i1.mpuc
  mpu import src > i2.mpuc
  cmp i1.mpuc i2.mpuc
}

@test "a stream cut anywhere is refused as truncated, exit 1" {
  tiny_model m.mpuc
  size=$(file_size m.mpuc)
  for cut in 1 7 15 16 40 200 1000 5000 50000 $((size / 2)) $((size - 2000)) $((size - 300)) $((size - 24)) $((size - 1)); do
    head -c "$cut" m.mpuc > cut.mpuc
    run mpu verify cut.mpuc
    [ "$status" -eq 1 ] || { echo "cut $cut: status $status: $output"; false; }
    [[ "$output" == *truncated* ]] || { echo "cut $cut: $output"; false; }
  done
  head -c $((size - 100)) m.mpuc > cut.mpuc
  run mpu verify cut.mpuc
  assert_output --partial "inside its trailer"
}

@test "a truncated upstream fails the downstream stage in a pipeline" {
  tiny_model m.mpuc
  run bash -c "set -o pipefail; head -c 30000 m.mpuc | mpu convert | mpu verify"
  [ "$status" -eq 1 ]
  assert_output --partial "truncated"
}

@test "a flipped bit in a chunk, a tensor record, the header or the trailer: exit 1 naming it" {
  tiny_model m.mpuc
  mpu inspect --json m.mpuc | jq_py 'print(o["offset"]) if o["record"] == "entry" and o["kind"] == "tensor" else None' > offsets
  first=$(sed -n 1p offsets)
  second=$(sed -n 2p offsets)
  size=$(file_size m.mpuc)

  cp m.mpuc x.mpuc && flip_byte x.mpuc $(( (first + second) / 2 ))
  run mpu verify x.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial "tensor 'lm_head.weight' copy 1, chunk"

  cp m.mpuc x.mpuc && flip_byte x.mpuc $((second + 20))
  run mpu verify x.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial "the tensor record is damaged"

  cp m.mpuc x.mpuc && flip_byte x.mpuc 40
  run mpu verify x.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial "the header is damaged"

  cp m.mpuc x.mpuc && flip_byte x.mpuc $((size - 60))
  run mpu verify x.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial "the trailer is damaged"
}

@test "wrong inputs are named: safetensors, GGUF, git-lfs pointer, HTML, empty, random" {
  tiny_model m.mpuc
  mpu export -o m.safetensors m.mpuc
  printf 'GGUF\003\000\000\000\000\000\000\000\000\000\000\000' > model.gguf
  printf 'version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1234\n' > lfs.mpuc
  printf '<!DOCTYPE html>\n<html><head><title>404</title></head></html>\n' > page.mpuc
  : > empty.mpuc
  head -c 4096 /dev/urandom > random.mpuc
  check() {
    run mpu verify "$1"
    [ "$status" -eq 1 ] || { echo "$1: status $status"; false; }
    [[ "$output" == *"$2"* ]] || { echo "$1: $output"; false; }
  }
  check m.safetensors "a safetensors file"
  check model.gguf "GGUF"
  check lfs.mpuc "git-lfs pointer"
  check page.mpuc "HTML page"
  check empty.mpuc "empty input"
  check random.mpuc "not an .mpuc stream"
  run mpu inspect < m.safetensors
  [ "$status" -eq 1 ]
  assert_output --partial "safetensors"
}

@test "bad safetensors files are refused: overlap, out of range, short header, bad JSON" {
  python3 "$FIXTURES/make_bad_safetensors.py" .
  for f in overlap gap out_of_range header_past_end bad_json bad_dtype wrong_size; do
    run mpu import "$f.safetensors"
    [ "$status" -eq 1 ] || { echo "$f: status $status: $output"; false; }
  done
  run mpu import overlap.safetensors
  assert_output --partial "overlap"
  run mpu import header_past_end.safetensors
  assert_output --partial "past the end"
  run mpu import bad_json.safetensors
  assert_output --partial "bad JSON"
  run mpu import out_of_range.safetensors
  assert_output --partial "truncated"
  run mpu import m.mpuc 2>/dev/null || true
  tiny_model m.mpuc
  run mpu import m.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial ".mpuc stream"
}

@test "a failed -o FILE leaves nothing behind" {
  tiny_model m.mpuc
  head -c 20000 m.mpuc > cut.mpuc
  run mpu convert -o out.mpuc cut.mpuc
  [ "$status" -eq 1 ]
  [ ! -e out.mpuc ]
  run mpu export -o outdir cut.mpuc
  [ "$status" -eq 1 ]
  [ ! -e outdir ]
  run mpu export -o out.safetensors cut.mpuc
  [ "$status" -eq 1 ]
  [ ! -e out.safetensors ]
  [ -z "$(ls | grep tmp)" ]
}

@test "outputs are never overwritten without --force" {
  tiny_model m.mpuc
  run tiny_model m.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "already exists"
  tiny_model m.mpuc --force --seed 3
  mpu export -o d m.mpuc
  run mpu export -o d m.mpuc
  [ "$status" -eq 2 ]
  mpu export --force -o d m.mpuc
}

@test "binary output to a terminal is refused, text input from one too" {
  command -v script >/dev/null || skip "script(1) not installed"
  run script -qec "mpu init --config $REPO/examples/tiny/config.json" /dev/null
  [ "$status" -eq 2 ]
  assert_output --partial "refusing to write binary data to a terminal"
  run script -qec "mpu verify" /dev/null
  [ "$status" -eq 2 ]
  assert_output --partial "terminal"
}

@test "provenance: a converted stream names its parent and verify --parents checks the link" {
  tiny_model m.mpuc
  tiny_model other.mpuc --seed 5
  mpu convert --dtype bf16 m.mpuc > c.mpuc
  run mpu verify --parents m.mpuc c.mpuc
  assert_success
  assert_output --partial "parent m.mpuc ok"
  run mpu verify --parents other.mpuc c.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial "is not a parent"
  id=$(mpu inspect --json m.mpuc | head -1 | jq_py 'print(o["stream_id"])')
  mpu inspect c.mpuc | grep -q "^parents   stream $id"
  # A stream that does not descend from anything is not linked to m.mpuc.
  run mpu verify --parents m.mpuc other.mpuc
  [ "$status" -eq 1 ]
}

@test "convert --dtype matches PyTorch and NumPy rounding bit for bit" {
  # fp_cases.safetensors holds F32 edge cases; the expected BF16 bytes come
  # from torch, the F16 bytes from numpy (tests/fixtures/make_fp_cases.py).
  mpu import "$FIXTURES/fp_cases.safetensors" > f32.mpuc
  mpu convert --dtype bf16 f32.mpuc | mpu export -o bf16.safetensors
  mpu convert --dtype f16 f32.mpuc | mpu export -o f16.safetensors
  tail -c "$(file_size "$FIXTURES/fp_cases.bf16.bin")" bf16.safetensors | cmp - "$FIXTURES/fp_cases.bf16.bin"
  tail -c "$(file_size "$FIXTURES/fp_cases.f16.bin")" f16.safetensors | cmp - "$FIXTURES/fp_cases.f16.bin"
  # and back: bf16 -> f32 is exact
  mpu import bf16.safetensors | mpu convert --dtype f32 | mpu export -o back.safetensors
  tail -c "$(file_size "$FIXTURES/fp_cases.bf16_f32.bin")" back.safetensors | cmp - "$FIXTURES/fp_cases.bf16_f32.bin"
}

@test "every program answers --help and --version, and the dispatcher lists and finds them" {
  run mpu --help
  assert_success
  listed=$(echo "$output" | sed -n 's/^  \([a-z]*\)  .*/\1/p' | sort)
  built=$(cd "$REPO/bin" && ls mpu-*.c | sed 's/^mpu-//; s/\.c$//' | sort)
  [ "$listed" = "$built" ]
  for v in $built; do
    run mpu "$v" --help
    assert_success
    assert_output --partial "Usage: mpu $v"
    run mpu "$v" --version
    assert_success
    assert_output --partial "mpu-$v (mpu)"
  done
  run mpu frobnicate
  [ "$status" -eq 2 ]
  assert_output --partial "not an mpu command"
  run mpu import --no-such-option x
  [ "$status" -eq 2 ]
}

@test "inspect --json is JSON Lines: header, entries, trailer" {
  tiny_model m.mpuc
  mpu inspect --json m.mpuc > out.jsonl
  python3 - <<'PY'
import json
lines = [json.loads(l) for l in open('out.jsonl')]
assert lines[0]['record'] == 'header' and lines[-1]['record'] == 'trailer'
entries = [l for l in lines if l['record'] == 'entry']
assert len(entries) == 23 and sum(e['kind'] == 'tensor' for e in entries) == 21
t = lines[-1]['trailer']
assert t['counts']['tensors'] == 21 and t['counts']['blobs'] == 2
assert [e['xxh3_128'] for e in entries] == [i['xxh3_128'] for i in t['index']]
assert lines[0]['header']['config']['hidden_size'] == 64
PY
}

@test "export refuses a stream cut between entries or inside its trailer, and writes nothing" {
  tiny_model m.mpuc
  # cut exactly where entry 10 begins: every entry before it is complete
  off=$(mpu inspect --json m.mpuc | jq_py 'print(o["offset"]) if o["record"] == "entry" and o["index"] == 9 else None')
  head -c "$off" m.mpuc > between.mpuc
  size=$(file_size m.mpuc)
  head -c $((size - 30)) m.mpuc > trailer.mpuc
  for f in between trailer; do
    run mpu export -o "out-$f" "$f.mpuc"
    [ "$status" -eq 1 ] || { echo "$f: status $status: $output"; false; }
    assert_output --partial "truncated"
    [ ! -e "out-$f" ]
    run mpu export -o "out-$f.safetensors" "$f.mpuc"
    [ "$status" -eq 1 ]
    [ ! -e "out-$f.safetensors" ]
  done
  [ -z "$(ls | grep tmp)" ]
}

@test "export --force replaces a file or a whole directory tree, leaving nothing else" {
  tiny_model m.mpuc
  echo "not a model" > target
  mpu export --force -o target m.mpuc
  [ -f target/model.safetensors ]
  mkdir -p target/sub/deeper && touch target/sub/deeper/x
  mpu export --force -o target m.mpuc
  [ ! -e target/sub ]
  [ -z "$(ls | grep -E 'old|tmp')" ]
}

@test "mpu help VERB shows that program's help" {
  run mpu help verify
  assert_success
  assert_output --partial "Usage: mpu verify"
}

@test "config files: unreadable is a usage error (2), invalid is bad input (1)" {
  hf_dir src
  run mpu import --config missing.json src
  [ "$status" -eq 2 ]
  echo '{"vocab_size": 5,' > broken.json
  run mpu import --config broken.json src
  [ "$status" -eq 1 ]
  assert_output --partial "bad JSON"
  run mpu init --config missing.json
  [ "$status" -eq 2 ]
  run mpu init --config broken.json
  [ "$status" -eq 1 ]
  echo '{"architectures": ["GPT2LMHeadModel"], "vocab_size": 5}' > gpt2.json
  run mpu init --config gpt2.json
  [ "$status" -eq 2 ]
  assert_output --partial "GPT2LMHeadModel"
}

@test "a dtype change is reflected in config.json's torch_dtype" {
  tiny_model m.mpuc
  mpu convert --dtype bf16 m.mpuc | mpu export -o out
  grep -q '"torch_dtype": "bfloat16"' out/config.json
  tiny_model h.mpuc --dtype f16
  mpu export -o out16 h.mpuc
  grep -q '"torch_dtype": "float16"' out16/config.json
}

@test "a stage whose reader goes away reports it and exits 2" {
  run bash -c "mpu init --config $REPO/examples/tiny/config.json | head -c 100 > /dev/null; echo \${PIPESTATUS[0]}"
  assert_output --partial "output closed early"
  [ "${lines[-1]}" = "2" ]
}

@test "import notes what it leaves out" {
  tiny_model m.mpuc
  mpu export --shard-size 100KB -o idx m.mpuc
  mpu export -o one.safetensors m.mpuc
  cp one.safetensors idx/consolidated.safetensors
  mkdir idx/subdir
  run mpu import idx
  assert_success
  assert_output --partial "skipped consolidated.safetensors (not listed in model.safetensors.index.json)"
  assert_output --partial "skipped the subdirectory subdir/"
  run bash -c "mpu import -q idx > /dev/null"
  assert_success
  assert_output ""
}

@test "entries of many chunks, in a stream larger than one read, are read whole by every stage" {
  # ~9 MB of tensors in 64 KiB chunks: the reader runs dry inside entries
  python3 -c "
import json; c = json.load(open('$REPO/examples/tiny/config.json'))
c.update(vocab_size=4096, hidden_size=256, intermediate_size=688, num_attention_heads=8, num_key_value_heads=4)
json.dump(c, open('mid.json', 'w'))"
  mpu init --config mid.json -o m.mpuc
  for enc in "--store" "--level 1"; do
    mpu convert $enc --chunk-size 64KiB m.mpuc > small.mpuc
    [ "$(mpu inspect --json small.mpuc | jq_py 'print(o["chunks"]) if o["record"] == "entry" else None' | sort -n | tail -1)" -gt 10 ]
    timeout 60 mpu export -o "out$enc.safetensors" small.mpuc
    timeout 60 mpu convert --dtype bf16 small.mpuc > b.mpuc
    echo '{"text": "many chunks"}' > d.jsonl
    timeout 60 mpu score --data d.jsonl small.mpuc > s1
    mpu score --data d.jsonl m.mpuc > s2
    cmp s1 s2
    timeout 60 mpu inspect --stats small.mpuc > /dev/null
  done
  mpu export -o ref.safetensors m.mpuc
  cmp ref.safetensors "out--store.safetensors"
}
