#!/usr/bin/env bats
# mpu eval: TOFU's metrics, each recomputed here from what mpu score gives and
# from the per-item values, with scipy for the statistics.

load helper

# bench_and_models: a small synthetic benchmark, a model trained a little on
# general + full ("full.mpuc") and one on general + retain90 ("retain.mpuc"),
# once per file.
bench_and_models() {
  local d=$BATS_FILE_TMPDIR
  if [ ! -f "$d/full.mpuc" ]; then
    mpu synth -q --authors 10 --qa 4 --facts 12 --splits 10,20 -o "$d/bench"
    tiny_model "$d/init.mpuc" --seed 4
    cat "$d/bench/general.jsonl" "$d/bench/full.jsonl" > "$d/full.jsonl"
    cat "$d/bench/general.jsonl" "$d/bench/retain80.jsonl" > "$d/retain.jsonl"
    mpu train -q --data "$d/full.jsonl" --lr 3e-3 --epochs 6 --batch 8 -o "$d/full.mpuc" "$d/init.mpuc"
    mpu train -q --data "$d/retain.jsonl" --lr 3e-3 --epochs 6 --batch 8 -o "$d/retain.mpuc" "$d/init.mpuc"
  fi
  ln -sf "$d/bench" bench
  ln -sf "$d/full.mpuc" full.mpuc
  ln -sf "$d/retain.mpuc" retain.mpuc
}

SETS="--forget bench/forget20.jsonl --retain bench/retain_perturbed.jsonl --holdout bench/holdout20.jsonl
      --world bench/world_facts.jsonl --max-new 24"

@test "per-item values are what mpu score gives, and the aggregates follow from them" {
  bench_and_models
  # shellcheck disable=SC2086
  mpu eval --json $SETS --retain-model retain.mpuc full.mpuc > eval.json
  # the same numbers through mpu score: each answer, paraphrase and perturbed answer
  python3 - <<'PY'
import json
for name, path in [("forget", "bench/forget20.jsonl"), ("retain", "bench/retain_perturbed.jsonl"),
                   ("world_facts", "bench/world_facts.jsonl")]:
    with open(name + ".qa.jsonl", "w") as out:
        for line in open(path):
            it = json.loads(line)
            for a in [it["answer"], it["paraphrased_answer"]] + it["perturbed_answer"]:
                out.write(json.dumps({"question": it["question"], "answer": a}) + "\n")
PY
  for s in forget retain world_facts; do mpu score --data "$s.qa.jsonl" full.mpuc > "$s.scores"; done
  mpu score --data bench/holdout20.jsonl full.mpuc > holdout.scores
  $SCIPY_PYTHON - <<'PY'
import json, math
import numpy as np
from scipy import stats
doc = json.load(open("eval.json"))
sets, m = doc["sets"], doc["metrics"]
close = lambda a, b, tol=1e-6: abs(a - b) <= tol * max(1.0, abs(b))
for name in ("forget", "retain", "world_facts"):
    items = [json.loads(l) for l in open({"forget": "bench/forget20.jsonl", "retain": "bench/retain_perturbed.jsonl",
                                          "world_facts": "bench/world_facts.jsonl"}[name])]
    scores = [json.loads(l) for l in open(name + ".scores")]
    got = sets[name]["items"]
    assert len(got) == len(items) and [g["id"] for g in got] == [i["id"] for i in items]
    k = 0
    for it, g in zip(items, got):
        n = 2 + len(it["perturbed_answer"])
        row = scores[k:k + n]
        k += n
        avg = [r["mean_nll"] for r in row]
        assert g["tokens"] == row[0]["tokens"] and close(g["nll"], row[0]["nll"]), (g, row[0])
        assert close(g["prob"], math.exp(-avg[0]))
        correct = avg[0] if name == "world_facts" else avg[1]
        assert close(g["truth_ratio"], math.exp(correct - np.mean(avg[2:])), 1e-5), (name, g["id"])
        pn = math.exp(-avg[0]) / (math.exp(-avg[0]) + sum(math.exp(-a) for a in avg[2:]))
        assert close(g["prob_norm"], pn, 1e-5)
        assert close(g["mia"]["loss"], avg[0])
        assert 0 <= g["extraction_strength"] <= 1 and 0 <= g["rouge_l_recall"] <= 1
    R = np.array([g["truth_ratio"] for g in got])
    agg = sets[name]["aggregate"]
    assert close(agg["Truth_Ratio"], np.mean(np.minimum(R, 1 / R)) if name == "forget" else np.mean(np.maximum(0, 1 - R)))
    key = "Q_A_Prob_normalised" if name == "world_facts" else "Q_A_Prob"
    field = "prob_norm" if name == "world_facts" else "prob"
    assert close(agg[key], np.mean([g[field] for g in got]))
    assert close(agg["Q_A_ROUGE"], np.mean([g["rouge_l_recall"] for g in got]))
# model utility: the harmonic mean of the six retain-side values
util = [sets[s]["aggregate"][k] for s in ("retain", "world_facts")
        for k in ("Q_A_Prob", "Q_A_Prob_normalised", "Q_A_ROUGE", "Truth_Ratio") if k in sets[s]["aggregate"]]
assert len(util) == 6 and close(m["model_utility"], stats.hmean(util)), (m["model_utility"], util)
# membership inference: forget 0, holdout 1; AUC = U / (n0 n1)
f, h = sets["forget"]["items"], sets["holdout"]["items"]
for key, attack in (("mia_loss_auc", "loss"), ("mia_zlib_auc", "zlib"), ("mia_min_k_auc", "min_k")):
    u = stats.mannwhitneyu([x["mia"][attack] for x in h], [x["mia"][attack] for x in f]).statistic
    assert close(m[key], u / (len(f) * len(h))), key
ref = doc["reference"]["mia_min_k_auc"]
assert close(m["privleak"], ((1 - m["mia_min_k_auc"]) - (1 - ref)) / (1 - ref) * 100)
PY
}

@test "forget quality is scipy's KS p-value against the retain model's truth ratios, from a model or a file" {
  bench_and_models
  mpu eval --json --forget bench/forget20.jsonl --holdout bench/holdout20.jsonl --no-generate retain.mpuc > ref.json
  mpu eval --json --forget bench/forget20.jsonl --holdout bench/holdout20.jsonl --no-generate \
    --retain-eval ref.json full.mpuc > a.json
  mpu eval --json --forget bench/forget20.jsonl --holdout bench/holdout20.jsonl --no-generate \
    --retain-model retain.mpuc full.mpuc > b.json
  $SCIPY_PYTHON - <<'PY'
import json
from scipy import stats
ref, a, b = (json.load(open(f)) for f in ("ref.json", "a.json", "b.json"))
tr = lambda d: [x["truth_ratio"] for x in d["sets"]["forget"]["items"]]
p = stats.ks_2samp(tr(a), tr(ref)).pvalue
assert abs(a["metrics"]["forget_quality"] - p) <= 1e-12 * max(p, 1e-300), (a["metrics"]["forget_quality"], p)
assert a["metrics"]["forget_quality"] == b["metrics"]["forget_quality"]
assert a["reference"]["mia_min_k_auc"] == b["reference"]["mia_min_k_auc"] == ref["metrics"]["mia_min_k_auc"]
# the retain model against itself: identical distributions
PY
  mpu eval --json --forget bench/forget20.jsonl --no-generate --retain-eval ref.json retain.mpuc > self.json
  python3 -c "import json; assert json.load(open('self.json'))['metrics']['forget_quality'] == 1.0"
}

@test "the human table names every metric; n/a where a value cannot be had" {
  bench_and_models
  # shellcheck disable=SC2086
  run mpu eval $SETS full.mpuc
  assert_success
  for k in forget retain world_facts forget_quality model_utility extraction_strength privleak mia_min_k_auc; do
    assert_output --partial "$k"
  done
  assert_output --regexp "forget_quality +n/a"
  # no perturbed answers: the truth ratio is unavailable, not zero
  python3 -c "
import json
for l in open('bench/forget20.jsonl'):
    o = json.loads(l); del o['perturbed_answer']; del o['paraphrased_answer']; print(json.dumps(o))" > bare.jsonl
  mpu eval --json --forget bare.jsonl --no-generate full.mpuc > bare.json
  python3 -c "
import json; d = json.load(open('bare.json'))
assert d['sets']['forget']['aggregate']['Truth_Ratio'] is None
assert all(x['truth_ratio'] is None for x in d['sets']['forget']['items'])
assert d['sets']['forget']['aggregate']['Q_A_Prob'] > 0"
}

@test "bad input: clear messages, exit 2" {
  bench_and_models
  : > empty.jsonl
  run mpu eval --forget empty.jsonl full.mpuc
  assert_failure 2
  assert_output --partial "no items"
  echo '{"question": "q?"}' > noanswer.jsonl
  run mpu eval --forget noanswer.jsonl full.mpuc
  assert_failure 2
  assert_output --partial "noanswer.jsonl:1"
  run mpu eval full.mpuc
  assert_failure 2
  assert_output --partial "at least one set"
  mpu init -q --config "$REPO/examples/tiny/config.json" --tokenizer none -o other.mpuc
  python3 -c "
import json; c = json.load(open('$REPO/examples/tiny/config.json')); c['num_hidden_layers'] = 3
json.dump(c, open('other.json', 'w'))"
  mpu init -q --config other.json -o other.mpuc --force
  run mpu eval --forget bench/forget20.jsonl --no-generate --retain-model other.mpuc full.mpuc
  assert_failure 2
  assert_output --partial "not a model of"
  mpu eval --json --forget bench/forget10.jsonl --no-generate retain.mpuc > ref10.json
  run mpu eval --forget bench/forget20.jsonl --no-generate --retain-eval ref10.json full.mpuc
  assert_failure 2
  assert_output --partial "another forget set"
}
