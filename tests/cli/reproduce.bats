#!/usr/bin/env bats
# make reproduce: the experiment's pipeline end to end on the `quick` preset
# (numbers that mean nothing, in about a minute), and the report's arithmetic
# on results made by hand.

load helper

setup_file() {
  export RQ=$BATS_FILE_TMPDIR/quick
  mkdir -p "$RQ/report"
  REPRO_DIR=$RQ/work REPORT_DIR=$RQ/report "$REPO/bench/reproduce/reproduce.sh" quick 2> "$RQ/log" ||
    { cat "$RQ/log" >&3; return 1; }
}

@test "reproduce: every run of the preset is evaluated, and the report's tables are its evaluations" {
  run python3 - "$RQ" <<'PY'
import json, os, re, sys
import xml.etree.ElementTree as ET
rq = sys.argv[1]
work, rep = rq + "/work", rq + "/report"
variants = ["base", "k0", "k0.05", "mean0.05", "copy0.05"]
for a in ("graddiff", "npo"):
    for v in variants:
        d = os.path.join(work, "seed1", a, v)
        assert os.path.exists(d + "/eval.json"), (a, v, open(d + "/log.txt").read() if os.path.exists(d + "/log.txt") else "")
        ev = json.load(open(d + "/eval.json"))
        # Forget quality came from the retain model's evaluation.
        assert ev["reference"]["source"].endswith("seed1/retain.eval.json"), ev["reference"]
res = json.load(open(rep + "/results-quick.json"))
text = open(rep + "/REPORT-quick.md").read()
# The model utility table's npo row is the evaluations' numbers, in column order.
sec = text.split("### model utility")[1].split("###")[0]
row = [l for l in sec.splitlines() if l.startswith("| npo |")][0]
cells = [c.strip() for c in row.strip("|").split("|")][1:]
for v, cell in zip(variants, cells):
    mu = json.load(open(os.path.join(work, "seed1", "npo", v, "eval.json")))["metrics"]["model_utility"]
    assert cell == "%.3f" % mu or (mu and abs(float(cell) - mu) < 5e-4), (v, cell, mu)
    assert res["seeds"]["1"]["runs"]["npo"][v]["metrics"]["model_utility"] == mu
for f in ("metrics", "degradation", "ablation", "ablation-forget"):
    ET.parse(os.path.join(rep, "plots", "quick-%s.svg" % f))
    assert "plots/quick-%s.svg" % f in text
PY
  assert_success
}

@test "reproduce: a run done again gives the same bytes, and a finished run is not redone" {
  d=$RQ/work/seed1/npo/k0.05
  cp "$d/model.mpuc" before.mpuc
  cp "$d/eval.json" before.json
  touch -d '2000-01-01' "$RQ/work/seed1/graddiff/base/eval.json"
  rm -rf "$d"
  REPRO_DIR=$RQ/work REPORT_DIR=$RQ/report run "$REPO/bench/reproduce/reproduce.sh" quick
  assert_success
  cmp before.mpuc "$d/model.mpuc"
  cmp before.json "$d/eval.json"
  # Untouched: the other runs' results were kept, not recomputed.
  [ "$(stat -c %Y "$RQ/work/seed1/graddiff/base/eval.json")" = "$(date -d '2000-01-01' +%s)" ]
  [[ "$output" == *"npo k0.05"* ]]
  [[ "$output" != *"graddiff base"* ]]
}

@test "reproduce: the report's degradation is the defined arithmetic" {
  mkdir -p out
  python3 - <<'PY'
import json
m = lambda fq, mu, tr, rouge: {"metrics": {"forget_quality": fq, "model_utility": mu, "forget_Truth_Ratio": tr,
                                           "forget_Q_A_ROUGE": rouge}, "seconds": 1}
runs = {"npo": {"base": m(0.5, 0.4, 0.6, 0.2), "k0": m(0.5, 0.4, 0.6, 0.2), "k0.05": m(0.45, 0.46, 0.74, 0.33),
                "mean0.05": m(0.3, 0.4, 0.6, 0.2), "copy0.05": m(0.5, 0.4, 0.6, 0.2)}}
# The retain model's forget truth ratio, 0.5, is where that metric should go.
retain = {"metrics": {"forget_Truth_Ratio": 0.5}}
res = {"preset": {"KAPPAS": "0.05", "ABLATION_KAPPA": "0.05", "ALGOS": "npo", "SPLIT": "20"},
       "seconds": 60, "seeds": {"1": {"models": {"retain": retain}, "runs": runs}}}
json.dump(res, open("out/results-quick.json", "w"))
PY
  run python3 "$REPO/bench/reproduce/report.py" --preset quick --out out
  assert_success
  # k0.05 against base: forget quality (0.5-0.45)/0.5 = +10%, utility
  # (0.4-0.46)/0.4 = -15%, truth ratio: distance to 0.5 from 0.1 to 0.24,
  # +140%, ROUGE (0.33-0.2)/0.2 = +65%: relative average +50%; absolute
  # (5 - 6 + 14 + 13)/4 = +6.5 points.  mean0.05: forget quality +40% alone.
  run grep -E '^\| npo \|' out/REPORT-quick.md
  assert_line --partial "| npo | +0.0% | +50.0% | +10.0% | +0.0% |"
  assert_line --partial "| npo | +0.0 | +6.5 | +5.0 | +0.0 |"
  assert_line --partial "| npo | 0.05 | +10.0% (+5.0) | -15.0% (-6.0) | +140.0% (+14.0) | +65.0% (+13.0) |"
  grep -q 'harmonic degrades less than the plain mean for 0 of 1 algorithms (none) and than a single noisy copy for 0 of 1' out/REPORT-quick.md
  grep -q 'harmonic denoising keeps more utility than one noisy copy for 1 of 1 algorithms (npo) and more than the plain mean for 1 of 1 (npo)' out/REPORT-quick.md
}
