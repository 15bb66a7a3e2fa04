#!/usr/bin/env bats
# MPU's server stages: the properties of docs/mpu-method.md, bad inputs.

load helper

# export_copy STREAM OUT.safetensors [K]: tensors of a stream as safetensors.
export_st() { mpu export -q ${3:+--copy $3} -o "$2" "$1"; }

@test "keygen: 0600, never overwrites, never to a terminal" {
  mpu keygen -o k
  [ "$(stat -c %a k)" = 600 ]
  grep -q '^mpu-server-key-v1 [0-9a-f]\{64\}$' k
  run mpu keygen -o k
  [ "$status" -eq 2 ]
  assert_output --partial "never overwritten"
  command -v script >/dev/null || skip "script(1) not installed"
  run script -qec "mpu keygen -o -" /dev/null
  [ "$status" -eq 2 ]
  assert_output --partial "terminal"
}

@test "kappa 0: every copy computes the model's function, yet its attention and FFN tensors differ" {
  round_setup
  mpu perturb --key server.key --copies 3 --kappa 0 model.mpuc | mpu split
  export_st model.mpuc model.safetensors
  for k in 1 2 3; do
    mpu verify --equivalent --tolerance 1e-5 model.mpuc "copy-$k.mpuc"
    export_st "copy-$k.mpuc" "c$k.safetensors"
  done
  # a model that cannot be opened is an error, on either side
  run mpu verify --equivalent missing.mpuc model.mpuc
  assert_failure 2
  run mpu verify --equivalent model.mpuc missing.mpuc
  assert_failure 2
  REPO=$REPO $SCIPY_PYTHON - <<'PY'
import os, sys
sys.path.insert(0, os.environ["REPO"] + "/tests/cli")
import numpy as np, st
m = st.load("model.safetensors")
for k in (1, 2, 3):
    c = st.load(f"c{k}.safetensors")
    for name in m:
        same = np.array_equal(m[name], c[name])
        moved = any(p in name for p in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
        assert same != moved, (k, name, same)
        # rotations and permutations keep each tensor's norm
        assert abs(np.linalg.norm(m[name]) - np.linalg.norm(c[name])) < 1e-5 * np.linalg.norm(m[name]), name
PY
}

@test "copies returned unchanged: zero updates, and denoise gives back the model bit for bit" {
  round_setup
  mpu perturb --key server.key --copies 2 --kappa 0.05 model.mpuc | mpu split
  mpu invert --key server.key --onto model.mpuc copy-1.mpuc copy-2.mpuc > updates.mpuc
  # every update is zero (a rotated zero may be -0, which equals 0)
  mpu inspect --stats updates.mpuc | grep -E '^ +min' | grep -vE 'min -?0  max -?0  mean -?0  rms 0  nan 0  inf 0' && false
  mpu denoise --key server.key --onto model.mpuc updates.mpuc > next.mpuc
  export_st model.mpuc a.safetensors
  export_st next.mpuc b.safetensors
  cmp a.safetensors b.safetensors
  # the whole round as one pipeline, with the copies as one stream
  set -o pipefail
  mpu perturb --key server.key --copies 2 --kappa 0.05 model.mpuc > both.mpuc
  mpu invert --key server.key --onto model.mpuc both.mpuc | mpu denoise --key server.key --onto model.mpuc > next2.mpuc
  export_st next2.mpuc c.safetensors
  cmp a.safetensors c.safetensors
}

@test "aligned copies: the 1/alpha-weighted average is the model, the plain mean is not" {
  round_setup
  mpu perturb --key server.key --copies 3 --kappa 0.1 model.mpuc | mpu split
  simclient --key server.key --onto model.mpuc --secrets copy-1.mpuc > secrets.json
  for k in 1 2 3; do
    simclient --key server.key --onto model.mpuc --aligned "copy-$k.mpuc" > "a$k.mpuc"
    export_st "a$k.mpuc" "a$k.safetensors"
  done
  export_st model.mpuc model.safetensors
  REPO=$REPO $SCIPY_PYTHON - <<'PY'
import json, os, sys
sys.path.insert(0, os.environ["REPO"] + "/tests/cli")
import numpy as np, st
alpha = json.load(open("secrets.json"))["alphas"]
assert len(set(alpha)) == 3
m = st.load("model.safetensors")
a = [st.load(f"a{k}.safetensors") for k in (1, 2, 3)]
w = np.array([1 / x for x in alpha]); w /= w.sum()
worst_h = worst_m = 0
for name in m:
    if "layers" not in name:
        continue
    h = sum(w[k] * a[k][name] for k in range(3))
    mean = sum(a[k][name] for k in range(3)) / 3
    scale = np.abs(m[name]).max()
    worst_h = max(worst_h, np.abs(h - m[name]).max() / scale)
    worst_m = max(worst_m, np.abs(mean - m[name]).max() / scale)
print("harmonic", worst_h, "mean", worst_m)
assert worst_h < 1e-5, worst_h
assert worst_m > 1e-2, worst_m
PY
}

@test "a client update D made through T_k comes back as the model plus D" {
  round_setup
  mpu perturb --key server.key --copies 3 --kappa 0.05 model.mpuc | mpu split
  for k in 1 2 3; do simclient --key server.key --onto model.mpuc --update 0.01 "copy-$k.mpuc" > "u$k.mpuc"; done
  mpu invert --key server.key --onto model.mpuc u3.mpuc u1.mpuc u2.mpuc | \
    mpu denoise --key server.key --onto model.mpuc --dtype f32 > next.mpuc
  export_st model.mpuc m.safetensors
  export_st next.mpuc n.safetensors
  REPO=$REPO $SCIPY_PYTHON - <<'PY'
import os, sys
sys.path.insert(0, os.environ["REPO"] + "/tests/cli")
import numpy as np, st
m, n = st.load("m.safetensors"), st.load("n.safetensors")
worst = max(np.abs(n[k] - 1.01 * m[k]).max() / np.abs(m[k]).max() for k in m)
print("worst relative error", worst)
assert worst < 1e-5, worst
PY
}

@test "noise: sigma is kappa times the layer's RMS, Gaussian, and zero-sum over the copies" {
  round_setup
  mpu perturb --key server.key --copies 2 --kappa 0.05 --alphas paper model.mpuc | mpu split
  for k in 1 2; do
    simclient --key server.key --onto model.mpuc --aligned "copy-$k.mpuc" > "a$k.mpuc"
    export_st "a$k.mpuc" "a$k.safetensors"
  done
  export_st model.mpuc m.safetensors
  REPO=$REPO $SCIPY_PYTHON - <<'PY'
import collections, os, re, sys
sys.path.insert(0, os.environ["REPO"] + "/tests/cli")
import numpy as np, st
from scipy import stats
m = st.load("m.safetensors")
a = [st.load(f"a{k}.safetensors") for k in (1, 2)]
alpha = [1.0, 2.0]  # --alphas paper
groups = collections.defaultdict(list)
for name in m:
    g = re.match(r"model\.layers\.(\d+)\.", name)
    if g:
        groups[int(g.group(1))].append(name)
for layer, names in sorted(groups.items()):
    theta = np.concatenate([m[n].ravel() for n in names])
    sigma = 0.05 * np.sqrt(np.mean(theta ** 2))
    eps = [np.concatenate([(a[k][n] - m[n]).ravel() for n in names]) / alpha[k] for k in (0, 1)]
    for k in (0, 1):
        ratio = eps[k].std() / sigma
        p = stats.kstest(eps[k] / sigma, "norm").pvalue
        print(f"layer {layer} copy {k + 1}: sigma ratio {ratio:.4f}, KS p {p:.3f}")
        assert abs(ratio - 1) < 0.02, ratio
        assert p > 1e-3, p
    assert np.abs(eps[0] + eps[1]).max() < 1e-5 * np.abs(theta).max()
PY
}

@test "same key, input and options give the same bytes on any thread count; another key does not" {
  round_setup
  OMP_NUM_THREADS=1 mpu perturb --key server.key --copies 2 --kappa 0.05 model.mpuc > a.mpuc
  OMP_NUM_THREADS=2 mpu perturb --key server.key --copies 2 --kappa 0.05 model.mpuc > b.mpuc
  mpu perturb --key server.key --copies 2 --kappa 0.05 --store model.mpuc > s.mpuc
  cmp a.mpuc b.mpuc
  mpu keygen -o other.key
  mpu perturb --key other.key --copies 2 --kappa 0.05 model.mpuc > c.mpuc
  ! cmp -s a.mpuc c.mpuc
  mpu perturb --key server.key --copies 2 --kappa 0.05 --round 2 model.mpuc > d.mpuc
  ! cmp -s a.mpuc d.mpuc
  # encoding changes the bytes, not the content
  d() { mpu verify --json "$1" | jq_py 'print(o["content_digest"]["xxh3_128"])'; }
  [ "$(d a.mpuc)" = "$(d s.mpuc)" ]
}

@test "nothing secret reaches the client: no key, derived secret, alpha or plain model digest" {
  round_setup
  mpu perturb --key server.key --copies 3 --kappa 0.05 model.mpuc | mpu split
  simclient --key server.key --onto model.mpuc --secrets copy-1.mpuc > secrets.json
  for k in 1 2 3; do zstd -qdc "copy-$k.mpuc" > "copy-$k.raw"; done
  REPO=$REPO $SCIPY_PYTHON - <<'PY'
import json, struct
s = json.load(open("secrets.json"))
needles = []
for key in ("master_key", "round_key", "model_stream_id", "model_header_digest", "model_content_digest"):
    h = s[key]
    needles += [h.encode(), bytes.fromhex(h)]
for h in s["philox_keys"]:
    a, b = int(h[:8], 16), int(h[8:], 16)
    needles += [h.encode(), struct.pack("<II", a, b)]
for x in s["alphas"]:
    needles += [repr(x).encode(), f"{x:.6f}".encode(), struct.pack("<d", x), struct.pack("<f", x)]
for k in (1, 2, 3):
    for f in (f"copy-{k}.mpuc", f"copy-{k}.raw"):
        data = open(f, "rb").read()
        for n in needles:
            assert n not in data, (f, n)
print(len(needles), "secrets searched for in 6 files")
PY
  # the round record names the model only by a keyed commitment
  mpu inspect --json copy-1.mpuc | head -1 | grep -q '"alphas":"secret"'
}

@test "bad inputs: another key, another model, another round, missing tensor, truncated copy" {
  round_setup
  mpu perturb --key server.key --copies 2 --kappa 0.05 model.mpuc | mpu split
  mpu keygen -o other.key
  run mpu invert --key other.key --onto model.mpuc copy-1.mpuc copy-2.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial "with this key"
  tiny_model other.mpuc --dtype bf16 --seed 9
  run mpu invert --key server.key --onto other.mpuc copy-1.mpuc copy-2.mpuc
  [ "$status" -eq 1 ]
  mpu perturb --key server.key --copies 2 --kappa 0.05 --round 2 model.mpuc | mpu split -o 'r2-%d.mpuc'
  run mpu invert --key server.key --onto model.mpuc copy-1.mpuc r2-2.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial "different rounds"
  simclient --key server.key --onto model.mpuc --drop model.layers.1.mlp.up_proj.weight copy-2.mpuc > dropped.mpuc
  run mpu invert --key server.key --onto model.mpuc copy-1.mpuc dropped.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial "does not have MODEL's tensors"
  run mpu invert --key server.key --onto model.mpuc copy-1.mpuc copy-1.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "given twice"
  head -c 100000 copy-2.mpuc > cut.mpuc
  run bash -c "set -o pipefail; mpu invert --key server.key --onto model.mpuc copy-1.mpuc cut.mpuc | mpu denoise --key server.key --onto model.mpuc -o next.mpuc"
  [ "$status" -eq 1 ]
  assert_output --partial "truncated"
  [ ! -e next.mpuc ]
  run mpu denoise --key server.key --onto model.mpuc copy-1.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "not an update stream"
  run mpu invert --key missing.key --onto model.mpuc copy-1.mpuc copy-2.mpuc
  [ "$status" -eq 2 ]
  chmod 644 server.key
  run mpu invert --key server.key --onto model.mpuc -o u.mpuc copy-1.mpuc copy-2.mpuc
  assert_success
  assert_output --partial "readable by others"
  run mpu perturb --key server.key --copies 2 --kappa 0.05 "$REPO/tests/fixtures/fp_cases.safetensors"
  [ "$status" -eq 1 ]
}

@test "a model whose structure cannot be reparameterized is refused by name" {
  mpu keygen -o k
  mpu import -q "$REPO/tests/fixtures/fp_cases.safetensors" > nocfg.mpuc
  run mpu perturb --key k --copies 2 --kappa 0.1 nocfg.mpuc
  [ "$status" -ne 0 ]
  assert_output --partial "cannot reparameterize"
  python3 -c "
import json; c = json.load(open('$REPO/examples/tiny/config.json')); c['architectures'] = ['GPTNeoXForCausalLM']
json.dump(c, open('neox.json', 'w'))"
  mpu init --config "$REPO/examples/tiny/config.json" -o t.mpuc
  mpu export -o hf t.mpuc
  mpu import -q --config neox.json hf > neox.mpuc
  run mpu perturb --key k --copies 2 --kappa 0.1 neox.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "GPTNeoXForCausalLM"
}

@test "split: volumes that cat joins back into the same stream" {
  round_setup
  mpu perturb --key server.key --copies 2 --kappa 0.05 model.mpuc > p.mpuc
  mpu split p.mpuc
  mpu split --volume-size 100KiB -o 'v-%d.mpuc' p.mpuc
  n=$(ls v-1.mpuc.* | wc -l)
  [ "$n" -ge 4 ]
  [ "$(stat -c %s v-1.mpuc.001)" -eq 102400 ]
  cat v-1.mpuc.* > joined.mpuc
  cmp joined.mpuc copy-1.mpuc
  mpu verify --parents p.mpuc copy-1.mpuc copy-2.mpuc
}

@test "perturb --dtype keep reports how much noise survived rounding; --scope all noises the embeddings" {
  round_setup
  run bash -c "mpu perturb --key server.key --copies 2 --kappa 0.001 --dtype keep model.mpuc > k.mpuc"
  assert_success
  assert_output --partial "rounded back to their noise-free value"
  mpu inspect k.mpuc | grep -q 'BF16.*model.layers.0.mlp.up_proj.weight'
  mpu perturb --key server.key --copies 2 --kappa 0.05 --scope all model.mpuc | mpu split -o 'all-%d.mpuc'
  export_st all-1.mpuc a.safetensors
  export_st model.mpuc m.safetensors
  REPO=$REPO $SCIPY_PYTHON - <<'PY'
import os, sys
sys.path.insert(0, os.environ["REPO"] + "/tests/cli")
import numpy as np, st
a, m = st.load("a.safetensors"), st.load("m.safetensors")
assert not np.array_equal(a["model.embed_tokens.weight"], m["model.embed_tokens.weight"])
assert not np.array_equal(a["model.norm.weight"], m["model.norm.weight"])
PY
}
