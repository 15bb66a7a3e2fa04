#!/usr/bin/env bats
# The engine's programs: score, train, generate, and init's tokenizer.

load helper

ENG=$REPO/tests/fixtures/engine

# score_fixture CASE: the fixture's batch as input_ids lines, with the loss on
# the labelled positions; prints the file name.
fixture_lines() {
  python3 - "$ENG/$1/batch.json" > "$1.jsonl" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
for ids, labels in zip(b["input_ids"], b["labels"]):
    scored = [i for i, l in enumerate(labels) if l != -100]
    first, last = scored[0], scored[-1]
    assert scored == list(range(first, last + 1)), "labels must be one contiguous run"
    print(json.dumps({"input_ids": ids[: last + 1], "prompt_len": first}))
PY
}

@test "score reproduces PyTorch's loss on the fixture batches" {
  for c in llama_gqa qwen2_bias llama3_rope_scaling mistral; do
    mpu import -q "$ENG/$c" > "$c.mpuc"
    fixture_lines "$c"
    mpu score --data "$c.jsonl" "$c.mpuc" > "$c.scores"
    python3 - "$c.scores" "$ENG/$c/expected.safetensors" <<'PY'
import json, struct, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
mean = sum(r["nll"] for r in rows) / sum(r["tokens"] for r in rows)
f = open(sys.argv[2], "rb")
n = struct.unpack("<Q", f.read(8))[0]
h = json.loads(f.read(n))
b, e = h["loss"]["data_offsets"]
f.seek(8 + n + b)
ref = struct.unpack("<f", f.read(4))[0]
assert abs(mean - ref) < 1e-5 * abs(ref), (mean, ref)
PY
  done
}

@test "a model's outputs are unchanged by export and import" {
  mpu import -q "$ENG/qwen2_bias" > a.mpuc
  mpu export -o hf a.mpuc
  mpu import -q hf > b.mpuc
  fixture_lines qwen2_bias
  mpu score --data qwen2_bias.jsonl a.mpuc > a.scores
  mpu score --data qwen2_bias.jsonl b.mpuc > b.scores
  cmp a.scores b.scores
  tiny_model t.mpuc --dtype bf16
  mpu export -o thf t.mpuc
  mpu import thf > t2.mpuc
  echo '{"text": "round trips keep every bit"}' > d.jsonl
  [ "$(mpu score --data d.jsonl t.mpuc)" = "$(mpu score --data d.jsonl t2.mpuc)" ]
}

@test "score reads every data form and counts the scored tokens" {
  tiny_model m.mpuc
  cat > d.jsonl <<'EOF'
{"text": "hello world"}
{"prompt": "2+2=", "completion": "4"}
{"question": "Who?", "answer": "Me."}
{"input_ids": [256, 10, 11, 12, 13], "prompt_len": 2}

{"input_ids": [256, 10, 11, 12, 13]}
EOF
  run mpu score --data d.jsonl m.mpuc
  assert_success
  [ "${#lines[@]}" -eq 5 ]
  # text: bos + 11 bytes, 11 scored; completion "4" + eos: 2; answer "Me." + eos: 4
  python3 - "$output" <<'PY'
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines()]
assert [r["tokens"] for r in rows] == [11, 2, 4, 3, 4], rows
assert all(r["nll"] > 0 and abs(r["mean_nll"] - r["nll"] / r["tokens"]) < 1e-6 for r in rows)
PY
}

@test "train: the logged loss of a one-step epoch is the mean NLL score reports, then it falls" {
  tiny_model m.mpuc
  printf '{"text": "the quick brown fox jumps over the lazy dog"}\n{"question": "colour of the sky?", "answer": "blue"}\n' > d.jsonl
  mpu score --data d.jsonl m.mpuc > before.jsonl
  mpu train --data d.jsonl --batch 2 --epochs 5 --lr 1e-2 --no-shuffle --log log.jsonl -o t.mpuc m.mpuc
  python3 - <<'PY'
import json
before = [json.loads(l) for l in open("before.jsonl")]
log = [json.loads(l) for l in open("log.jsonl")]
assert len(log) == 5, log
mean = sum(r["nll"] for r in before) / sum(r["tokens"] for r in before)
assert abs(log[0]["loss"] - mean) < 1e-5 * mean, (log[0]["loss"], mean)
assert log[-1]["loss"] < 0.8 * log[0]["loss"], log
for k in ("step", "loss", "lr", "grad_norm"):
    assert k in log[0]
# linear decay from 1e-2 to 0 over 5 steps, the first step at the full rate
assert [round(r["lr"], 6) for r in log] == [0.01, 0.008, 0.006, 0.004, 0.002], log
PY
  mpu verify --parents m.mpuc t.mpuc
  mpu score --data d.jsonl t.mpuc > after.jsonl
  python3 -c "
import json
b = [json.loads(l)['nll'] for l in open('before.jsonl')]
a = [json.loads(l)['nll'] for l in open('after.jsonl')]
assert all(x < y for x, y in zip(a, b)), (a, b)"
}

@test "train is deterministic for a seed and thread count" {
  tiny_model m.mpuc
  for i in 1 2 3 4 5 6; do echo "{\"text\": \"example number $i of a small set\"}"; done > d.jsonl
  mpu train --data d.jsonl --batch 2 --grad-accum 2 --epochs 2 --lr 1e-3 --seed 3 --threads 2 -o a.mpuc m.mpuc
  mpu train --data d.jsonl --batch 2 --grad-accum 2 --epochs 2 --lr 1e-3 --seed 3 --threads 2 -o b.mpuc m.mpuc
  mpu train --data d.jsonl --batch 2 --grad-accum 2 --epochs 2 --lr 1e-3 --seed 4 --threads 2 -o c.mpuc m.mpuc
  cmp a.mpuc b.mpuc
  ! cmp -s a.mpuc c.mpuc
}

@test "a model trained on a sentence generates it back (greedy, with the cache)" {
  tiny_model m.mpuc
  # prompt/completion: the completion ends with the end-of-sequence token
  for i in 1 2 3 4 5 6 7 8; do echo '{"prompt": "mpu makes", "completion": " models forget"}'; done > d.jsonl
  mpu train --data d.jsonl --batch 8 --epochs 60 --lr 3e-3 --schedule constant -q -o t.mpuc m.mpuc
  run mpu generate --prompt "mpu makes" --max-new 20 t.mpuc
  assert_success
  assert_output " models forget"
  run mpu generate --json --prompt "mpu makes" --max-new 40 t.mpuc
  assert_output --partial '"stop":"eos"'
}

@test "SGD, warm-up, weight decay and the constant schedule are applied" {
  tiny_model m.mpuc
  printf '{"text": "abc"}\n{"text": "abd"}\n' > d.jsonl
  mpu train --data d.jsonl --optimizer sgd --lr 0.5 --batch 1 --epochs 2 --warmup-steps 2 --schedule constant \
    --no-shuffle --log log.jsonl -o s.mpuc m.mpuc
  python3 - <<'PY'
import json
log = [json.loads(l) for l in open("log.jsonl")]
assert [r["lr"] for r in log] == [0.0, 0.25, 0.5, 0.5], log
PY
}

@test "bad data: not JSON, missing fields, ids outside the vocabulary, too long: exit 2 naming the line" {
  tiny_model m.mpuc
  printf '{"text": "ok"}\nnot json\n' > a.jsonl
  run mpu score --data a.jsonl m.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "a.jsonl:2: not JSON"
  printf '{"txt": "typo"}\n' > b.jsonl
  run mpu score --data b.jsonl m.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "b.jsonl:1: needs"
  printf '{"input_ids": [1, 2, 9999]}\n' > c.jsonl
  run mpu score --data c.jsonl m.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "outside the model's vocabulary"
  python3 -c "print('{\"text\": \"' + 'x' * 400 + '\"}')" > d.jsonl
  run mpu score --data d.jsonl m.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "longer than max_position_embeddings"
  run mpu score --truncate --data d.jsonl m.mpuc
  assert_success
}

@test "training that diverges stops, names the step and writes nothing" {
  tiny_model m.mpuc
  printf '{"text": "blow up"}\n{"text": "please"}\n' > d.jsonl
  run mpu train --data d.jsonl --optimizer sgd --lr 1000 --max-grad-norm 0 --batch 1 --epochs 10 -o t.mpuc m.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "training diverged"
  assert_output --partial "at step"
  [ ! -e t.mpuc ]
}

@test "bad checkpoints: wrong shape, missing tensor, unknown architecture" {
  python3 - "$ENG/llama_gqa/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
json.dump(dict(c, intermediate_size=c["intermediate_size"] + 1), open("shape.json", "w"))
json.dump(dict(c, num_hidden_layers=3), open("layers.json", "w"))
json.dump(dict(c, architectures=["FalconForCausalLM"]), open("arch.json", "w"))
PY
  echo '{"input_ids": [1, 2, 3]}' > d.jsonl
  for bad in shape layers arch; do
    mpu import -q --config "$bad.json" "$ENG/llama_gqa" > "$bad.mpuc"
  done
  run mpu score --data d.jsonl shape.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial "mlp.down_proj.weight has shape [32, 80] but the config needs [32, 81]"
  run mpu score --data d.jsonl layers.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial "lacks tensor model.layers.2"
  run mpu score --data d.jsonl arch.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "FalconForCausalLM"
}

@test "init carries a byte-level tokenizer that transformers' format describes" {
  tiny_model m.mpuc
  mpu export -o hf m.mpuc
  python3 - <<'PY'
import json
t = json.load(open("hf/tokenizer.json"))
assert t["model"]["type"] == "BPE" and len(t["model"]["vocab"]) == 256
specials = {a["content"]: a["id"] for a in t["added_tokens"]}
assert specials == {"<|bos|>": 256, "<|eos|>": 257, "<|pad|>": 258}, specials
c = json.load(open("hf/config.json"))
assert (c["bos_token_id"], c["eos_token_id"], c["pad_token_id"]) == (256, 257, 258)
tc = json.load(open("hf/tokenizer_config.json"))
assert tc["eos_token"] == "<|eos|>"
PY
  run mpu init --config "$REPO/spec/vectors/micro.json" -o small.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "too small for the byte-level tokenizer"
}
