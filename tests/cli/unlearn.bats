#!/usr/bin/env bats
# mpu unlearn: the client's stage.

load helper

UNL=$REPO/tests/fixtures/unlearn
FACTS=$REPO/examples/facts

# The PyTorch fixture as a stream (pad id 0, as the fixture pads) and its
# batch as forget/retain/idk files of input_ids.
fixture_setup() {
  python3 - "$UNL" <<'PY'
import json, sys
d = sys.argv[1]
cfg = json.load(open(d + "/config.json"))
cfg["pad_token_id"] = 0
json.dump(cfg, open("config.json", "w"))
b = json.load(open(d + "/batch.json"))
def rows(g):
    out = []
    for ids, labels in zip(b[g]["input_ids"], b[g]["labels"]):
        scored = [i for i, l in enumerate(labels) if l != -100]
        out.append((ids[: scored[-1] + 1], scored[0]))
    return out
for g in ("forget", "retain"):
    with open(g + ".jsonl", "w") as f:
        for ids, p in rows(g):
            f.write(json.dumps({"input_ids": ids, "prompt_len": p}) + "\n")
ids, p = rows("win")[0]
with open("idk.jsonl", "w") as f:
    f.write(json.dumps({"input_ids": ids[p:-1]}) + "\n")   # the answer, without its eos
PY
  mpu import -q --config config.json "$UNL/model.safetensors" > theta.mpuc
}

# mean_nll DATA MODEL: the mean NLL per scored token.
mean_nll() {
  mpu score --data "$1" "$2" | python3 -c "import sys, json
r = [json.loads(l) for l in sys.stdin]
print(sum(x['nll'] for x in r) / sum(x['tokens'] for x in r))"
}

# In the python checks: load(FILE) reads `mpu inspect --json` (JSON Lines)
# into its header and its entries keyed by (name, copy); copy -1 is shared.
INSPECT_PY='
import json
def load(path):
    recs = [json.loads(l) for l in open(path)]
    head = [r for r in recs if r["record"] == "header"][0]
    ents = {(r["name"], r["copy"]): r for r in recs if r["record"] == "entry"}
    return head, ents
'

# facts_model OUT: the tiny model trained on examples/facts, once per file.
facts_model() {
  local cache=$BATS_FILE_TMPDIR/facts.mpuc
  if [ ! -f "$cache" ]; then
    tiny_model "$BATS_FILE_TMPDIR/init.mpuc" --seed 1
    cat "$FACTS/forget.jsonl" "$FACTS/retain.jsonl" > "$BATS_FILE_TMPDIR/all.jsonl"
    mpu train -q --data "$BATS_FILE_TMPDIR/all.jsonl" --lr 3e-3 --epochs 60 --batch 8 --warmup-steps 10 \
      -o "$cache" "$BATS_FILE_TMPDIR/init.mpuc"
  fi
  cp "$cache" "$1"
}

SGD="--optimizer sgd --lr 0.01 --epochs 1 --batch 2 --grad-accum 1 --max-grad-norm 0 --weight-decay 0
     --warmup-steps 0 --schedule constant --no-shuffle --pairing cycle --dtype f32"

@test "one SGD step of every algorithm is theta - lr * grad of PyTorch's loss" {
  fixture_setup
  for a in ga graddiff npo simnpo undial satimp wga idkdpo; do
    idk=
    [ "$a" = idkdpo ] && idk="--idk idk.jsonl"
    # shellcheck disable=SC2086
    mpu unlearn -q --algo $a --forget forget.jsonl --retain retain.jsonl $idk $SGD --store -o "$a.mpuc" theta.mpuc
    mpu export -q -o "$a.safetensors" "$a.mpuc"
    python3 - "$a.safetensors" "$UNL/sgd_self.json" "$a" <<'PY'
import json, struct, sys
path, ref, algo = sys.argv[1:]
f = open(path, "rb")
n = struct.unpack("<Q", f.read(8))[0]
h = json.loads(f.read(n))
base = 8 + n
exp = json.load(open(ref))
lr = exp["lr"]
els = exp["algorithms"][algo]["elements"]
gmax = {}
for e in els:
    gmax[e["name"]] = max(gmax.get(e["name"], 0), abs(e["grad"]))
worst = 0
for e in els:
    t = h[e["name"]]
    assert t["dtype"] == "F32"
    f.seek(base + t["data_offsets"][0] + 4 * e["index"])
    got = struct.unpack("<f", f.read(4))[0]
    tol = lr * 2e-5 * gmax[e["name"]] + 2e-7
    err = abs(got - e["after"])
    worst = max(worst, err / tol)
    assert err <= tol, (algo, e["name"], e["index"], got, e["after"], tol)
print(algo, len(els), "elements, worst error / tolerance", round(worst, 3))
PY
  done
}

@test "forgetting: the forget set's NLL rises well above the retain set's (graddiff, npo, simnpo)" {
  facts_model m.mpuc
  f0=$(mean_nll "$FACTS/forget.jsonl" m.mpuc)
  r0=$(mean_nll "$FACTS/retain.jsonl" m.mpuc)
  # simnpo with the paper's gamma 1 (OpenUnlearning's 0.125 barely moves a model this small)
  for a in graddiff npo "simnpo --gamma 1"; do
    # shellcheck disable=SC2086
    mpu unlearn -q --algo $a --forget "$FACTS/forget.jsonl" --retain "$FACTS/retain.jsonl" \
      --lr 1e-3 --epochs 10 --batch 4 --grad-accum 1 -o "${a%% *}.mpuc" m.mpuc
    a=${a%% *}
    f1=$(mean_nll "$FACTS/forget.jsonl" "$a.mpuc")
    r1=$(mean_nll "$FACTS/retain.jsonl" "$a.mpuc")
    echo "$a: forget $f0 -> $f1, retain $r0 -> $r1"
    python3 -c "
f0, r0, f1, r1 = $f0, $r0, $f1, $r1
assert f0 < 0.5 and r0 < 0.5, 'the model has learnt the facts'
assert f1 > 3 * r1 and f1 > 5 * f0 and f1 > f0 + 1, 'the forget set is forgotten'
assert r1 < r0 + 1 and r1 - r0 < (f1 - f0) / 4, 'the retain set is kept'"
  done
}

@test "each copy is unlearned on its own; the output names its input and keeps the layout" {
  facts_model m.mpuc
  mpu keygen -o server.key
  mpu perturb -q --key server.key --copies 2 --kappa 0.01 m.mpuc > both.mpuc
  mpu unlearn -q --algo graddiff --forget "$FACTS/forget.jsonl" --retain "$FACTS/retain.jsonl" \
    --lr 1e-3 --epochs 2 --batch 4 --log log.jsonl both.mpuc > un.mpuc
  mpu verify -q un.mpuc
  mpu inspect --json both.mpuc > in.json
  mpu inspect --json un.mpuc > out.json
  python3 - <<PY
$INSPECT_PY
(hi, ei), (ho, eo) = load("in.json"), load("out.json")
assert ho["header"]["copies"] == 2
assert ho["header"]["parents"][0]["stream_id"] == hi["stream_id"]
assert ho["header"]["stage"]["name"] == "unlearn"
names = sorted({n for n, _ in ei})
assert names == sorted({n for n, _ in eo})
for (n, c), e in eo.items():
    if e["kind"] == "blob":
        assert e["xxh3_128"] == ei[(n, c)]["xxh3_128"], n   # blobs pass through
# every trained tensor differs from its input in each copy
src = lambda n, c: ei.get((n, c), ei.get((n, -1)))
tensors = [(n, c) for (n, c), e in eo.items() if e["kind"] == "tensor"]
assert all(c in (0, 1) for _, c in tensors)   # every tensor trained, in each copy
assert all(eo[t]["xxh3_128"] != src(*t)["xxh3_128"] for t in tensors)
PY
  # the log names the copies, with the forget and retain losses
  python3 - <<'PY'
import json
rows = [json.loads(l) for l in open("log.jsonl")]
assert {r["run"] for r in rows} == {"copy 1/2", "copy 2/2"}
assert all("forget_loss" in r and "retain_loss" in r for r in rows)
PY
  # the server takes the copies back
  mpu invert -q --key server.key --onto m.mpuc un.mpuc > updates.mpuc
  mpu denoise -q --key server.key --onto m.mpuc updates.mpuc > next.mpuc
  mpu verify -q next.mpuc
  # one copy at a time out of the same stream: the same updates
  for k in 1 2; do
    mpu unlearn -q --algo graddiff --forget "$FACTS/forget.jsonl" --retain "$FACTS/retain.jsonl" \
      --lr 1e-3 --epochs 2 --batch 4 --copy $k -o "un-$k.mpuc" both.mpuc
  done
  mpu invert -q --key server.key --onto m.mpuc un-2.mpuc un-1.mpuc > updates-2.mpuc
  diff <(mpu inspect --json updates.mpuc | grep -o '"name":"[^"]*","record":"entry".*"xxh3_128":"[0-9a-f]*"' | sed 's/"offset":[0-9]*,//') \
       <(mpu inspect --json updates-2.mpuc | grep -o '"name":"[^"]*","record":"entry".*"xxh3_128":"[0-9a-f]*"' | sed 's/"offset":[0-9]*,//')
}

@test "--freeze: frozen tensors pass through bit for bit, shared ones stay shared" {
  facts_model m.mpuc
  mpu keygen -o server.key
  mpu perturb -q --key server.key --copies 2 --kappa 0.01 m.mpuc > both.mpuc
  # three steps: AdamW's first step is lr * sign(grad), often the same in both copies
  mpu unlearn -q --algo ga --forget "$FACTS/forget.jsonl" --lr 1e-3 --epochs 3 --batch 4 --grad-accum 1 \
    --freeze 'model.embed_tokens.*' --freeze 'model.layers.0.*' both.mpuc > un.mpuc
  mpu inspect --json both.mpuc > in.json
  mpu inspect --json un.mpuc > out.json
  python3 - <<PY
$INSPECT_PY
(hi, ei), (ho, eo) = load("in.json"), load("out.json")
for (n, c), e in eo.items():
    if e["kind"] != "tensor":
        continue
    frozen = n.startswith("model.embed_tokens.") or n.startswith("model.layers.0.")
    if frozen:
        assert (n, c) in ei and e["xxh3_128"] == ei[(n, c)]["xxh3_128"], (n, c)
    else:
        assert ei.get((n, c), ei.get((n, -1)))["xxh3_128"] != e["xxh3_128"], (n, c)
shared = [n for (n, c) in eo if c == -1 and eo[(n, c)]["kind"] == "tensor"]
assert shared == ["model.embed_tokens.weight"], shared   # lm_head was shared too, but is trained
PY
  run mpu unlearn --algo ga --forget "$FACTS/forget.jsonl" --freeze 'nothing.*' -o x.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "matches no tensor"
  [ ! -e x.mpuc ]
}

@test "the same inputs give the same bytes, with any number of threads" {
  facts_model m.mpuc
  for t in 1 2; do
    mpu unlearn -q --algo npo --forget "$FACTS/forget.jsonl" --retain "$FACTS/retain.jsonl" \
      --lr 1e-3 --epochs 2 --batch 4 --threads $t -o "u$t.mpuc" m.mpuc
  done
  cmp u1.mpuc u2.mpuc
  mpu unlearn -q --algo npo --forget "$FACTS/forget.jsonl" --retain "$FACTS/retain.jsonl" \
    --lr 1e-3 --epochs 2 --batch 4 --seed 5 -o u3.mpuc m.mpuc
  ! cmp -s u1.mpuc u3.mpuc
}

@test "the output says nothing of the client's data" {
  facts_model m.mpuc
  cp "$FACTS/forget.jsonl" secret-forget-set.jsonl
  digest=$(python3 -c "import hashlib; print(hashlib.sha256(open('secret-forget-set.jsonl','rb').read()).hexdigest())")
  mpu unlearn -q --algo idkdpo --forget secret-forget-set.jsonl --retain "$FACTS/retain.jsonl" \
    --lr 1e-3 --epochs 1 --batch 4 -o u.mpuc m.mpuc
  mpu inspect --json u.mpuc > u.json
  run grep -c -e secret-forget -e "$digest" -e '"tokens"' -e '"loss"' -e Orla u.json
  assert_output 0
  grep -q '"algorithm":"idkdpo"' u.json
}

@test "bad input: clear message, exit 2, nothing written" {
  facts_model m.mpuc
  : > empty.jsonl
  run mpu unlearn --algo ga --forget empty.jsonl -o x.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "empty.jsonl: no examples"
  echo '{"quest": "who?"}' > wrong.jsonl
  run mpu unlearn --algo ga --forget wrong.jsonl -o x.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "wrong.jsonl:1"
  run mpu unlearn --algo npo --forget "$FACTS/forget.jsonl" -o x.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "--retain"
  run mpu unlearn --algo forget-it --forget "$FACTS/forget.jsonl" -o x.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "is not one of"
  printf 'I do not know.\n{"input_ids": [65, 99999]}\n' > idk.txt
  run mpu unlearn --algo idkdpo --idk idk.txt --forget "$FACTS/forget.jsonl" --retain "$FACTS/retain.jsonl" \
    -o x.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "idk.txt:2: input_ids[1] is not a token id"
  run mpu unlearn --algo npo --idk idk.txt --forget "$FACTS/forget.jsonl" -o x.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "--idk is for --algo idkdpo"
  # a loss that overflows: stop, name the step and the copy
  mpu keygen -o server.key
  mpu perturb -q --key server.key --copies 2 --kappa 0.01 m.mpuc > both.mpuc
  run mpu unlearn --algo ga --forget "$FACTS/forget.jsonl" --optimizer sgd --lr 1000 --max-grad-norm 0 \
    --warmup-steps 0 --epochs 30 --batch 4 -o x.mpuc both.mpuc
  assert_failure 2
  assert_output --regexp "diverged: .* at step [0-9]+ of [0-9]+ .*copy 1/2"
  [ ! -e x.mpuc ]
  ls -A | grep -v -e '\.mpuc$' -e '\.jsonl$' -e '^server.key$' -e '^idk.txt$' && false
  true
}

@test "--exec: the copy goes out as a Hugging Face directory and comes back" {
  facts_model m.mpuc
  cat > trainer.sh <<'SH'
set -e
test -f "$MPU_MODEL_DIR/config.json" && test -f "$MPU_FORGET" && test -f "$MPU_RETAIN"
echo "$MPU_COPY/$MPU_COPIES $MPU_ALGO" >> "$LOGFILE"
cp "$MPU_MODEL_DIR"/* "$MPU_OUTPUT_DIR"/
echo "this goes to standard error, not into the stream"
SH
  export LOGFILE=$PWD/calls.txt
  mkdir tmp
  TMPDIR=$PWD/tmp mpu unlearn -q --exec "sh $PWD/trainer.sh" --algo npo --forget "$FACTS/forget.jsonl" \
    --retain "$FACTS/retain.jsonl" m.mpuc > same.mpuc
  [ -z "$(ls -A tmp)" ]   # the private directory is gone
  mpu verify -q same.mpuc
  mpu verify -q --equivalent m.mpuc same.mpuc
  run cat calls.txt
  assert_output "1/1 npo"
  mpu inspect --json same.mpuc | grep -q "trainer.sh"
}

@test "--exec: a failing command or a changed model writes nothing" {
  facts_model m.mpuc
  mkdir tmp
  TMPDIR=$PWD/tmp run mpu unlearn --exec 'exit 3' --forget "$FACTS/forget.jsonl" -o x.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "failed with status 3"
  [ ! -e x.mpuc ]
  [ -z "$(ls -A tmp)" ]
  # a model whose tensors changed dtype
  cat > to-bf16.py <<'PY'
import json, os, shutil, struct, sys
src, dst = os.environ["MPU_MODEL_DIR"], os.environ["MPU_OUTPUT_DIR"]
for f in os.listdir(src):
    if f != "model.safetensors":
        shutil.copy(os.path.join(src, f), dst)
raw = open(os.path.join(src, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
out, body = {}, b""
for name, t in h.items():
    if name == "__metadata__":
        continue
    b, e = t["data_offsets"]
    data = raw[8 + n + b:8 + n + e]
    if name == "lm_head.weight":   # f32 -> bf16, truncating
        data = b"".join(data[i + 2:i + 4] for i in range(0, len(data), 4))
        t = dict(t, dtype="BF16")
    out[name] = dict(t, data_offsets=[len(body), len(body) + len(data)])
    body += data
hj = json.dumps(out).encode()
open(os.path.join(dst, "model.safetensors"), "wb").write(struct.pack("<Q", len(hj)) + hj + body)
PY
  run mpu unlearn --exec "python3 $PWD/to-bf16.py" --forget "$FACTS/forget.jsonl" -o x.mpuc m.mpuc
  assert_failure 1
  assert_output --partial "changed tensor lm_head.weight from F32"
  [ ! -e x.mpuc ]
  run mpu unlearn --exec 'true' --forget "$FACTS/forget.jsonl" -o x.mpuc m.mpuc
  assert_failure
  [ ! -e x.mpuc ]
}

@test "a round at kappa 0 with SGD gives exactly what plain unlearning gives" {
  # SGD commutes with the rotations and permutations, and at kappa 0 every
  # copy computes the model's function: inverted and denoised, the copies'
  # updates are the model's own update.
  facts_model m.mpuc
  mpu keygen -o server.key
  opts=(--algo npo --forget "$FACTS/forget.jsonl" --retain "$FACTS/retain.jsonl" --optimizer sgd --lr 0.05
        --epochs 3 --batch 4 --grad-accum 1 --dtype f32)
  mpu perturb -q --key server.key --copies 2 --kappa 0 m.mpuc > copies.mpuc
  mpu unlearn -q "${opts[@]}" copies.mpuc > returned.mpuc
  mpu invert -q --key server.key --onto m.mpuc returned.mpuc | mpu denoise -q --key server.key --onto m.mpuc > mpu.mpuc
  mpu unlearn -q "${opts[@]}" m.mpuc > plain.mpuc
  mpu verify -q --equivalent --tolerance 1e-5 mpu.mpuc plain.mpuc
  # and the update was not nothing
  run mpu verify -q --equivalent --tolerance 1e-3 m.mpuc plain.mpuc
  assert_failure 1
}

@test "an existing -o FILE is refused before any work; --exec gets the round's copy number" {
  facts_model m.mpuc
  touch x.mpuc
  run timeout 5 mpu unlearn --algo ga --forget "$FACTS/forget.jsonl" --epochs 1000 -o x.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "x.mpuc already exists"
  mpu keygen -o server.key
  mpu perturb -q --key server.key --copies 2 --kappa 0.01 m.mpuc | mpu split -q
  mpu unlearn -q --exec 'echo "$MPU_COPY/$MPU_COPIES ${MPU_RETAIN:-none}" > '"$PWD"'/env.txt; cp "$MPU_MODEL_DIR"/* "$MPU_OUTPUT_DIR"' \
    --forget "$FACTS/forget.jsonl" -o back-2.mpuc copy-2.mpuc
  run cat env.txt
  assert_output "2/2 none"
  run mpu unlearn --exec true --forget - -o y.mpuc m.mpuc < "$FACTS/forget.jsonl"
  assert_failure 2
  assert_output --partial "as files"
}

@test "denoise --aggregate copy:K applies one copy's update alone, mean and harmonic weigh them" {
  facts_model m.mpuc
  mpu convert -q --dtype f32 m.mpuc > m32.mpuc
  mpu keygen -o server.key
  mpu perturb -q --key server.key --copies 2 --kappa 0.05 --alphas paper m32.mpuc > copies.mpuc
  mpu unlearn -q --algo ga --forget "$FACTS/forget.jsonl" --lr 1e-3 --epochs 2 --batch 4 copies.mpuc > back.mpuc
  mpu invert -q --key server.key --onto m32.mpuc back.mpuc > updates.mpuc
  for a in copy:2 mean harmonic; do
    mpu denoise -q --key server.key --onto m32.mpuc --aggregate $a --dtype f32 updates.mpuc > "next-$a.mpuc"
    mpu export -q -o "next-$a.safetensors" "next-$a.mpuc"
  done
  mpu export -q -o m.safetensors m32.mpuc
  for k in 1 2; do mpu export -q --copy $k -o "d$k.safetensors" updates.mpuc; done
  REPO=$REPO $SCIPY_PYTHON - <<'PY'
import os, sys
sys.path.insert(0, os.environ["REPO"] + "/tests/cli")
import numpy as np, st
m, d1, d2 = st.load("m.safetensors"), st.load("d1.safetensors"), st.load("d2.safetensors")
# paper alphas for M = 2: 1 and 2, so the harmonic weights are 2/3 and 1/3
want = {"copy:2": lambda n: m[n] + d2[n], "mean": lambda n: m[n] + (d1[n] + d2[n]) / 2,
        "harmonic": lambda n: m[n] + (2 * d1[n] + d2[n]) / 3}
for a, f in want.items():
    nx = st.load("next-%s.safetensors" % a)
    worst = max(float(np.max(np.abs(nx[n] - f(n)))) for n in m)
    assert worst < 1e-6, (a, worst)
PY
  run mpu denoise --key server.key --onto m32.mpuc --aggregate copy:3 updates.mpuc
  assert_failure 2
  assert_output --partial "has 2 copies"
}
