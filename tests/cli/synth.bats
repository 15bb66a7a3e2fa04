#!/usr/bin/env bats
# mpu synth: a TOFU-style benchmark from a seed.

load helper

# check_dir DIR: every file of DIR as synth.json describes it -- items with
# their keys in order, ASCII, paraphrases and wrong answers that differ,
# nested splits, retain + forget = full, holdout authors never in full.
check_dir() {
  python3 - "$1" <<'PY'
import json, os, sys
d = sys.argv[1]
meta = json.load(open(os.path.join(d, "synth.json")))
o = meta["options"]
assert meta["generator"] == "mpu-synth" and isinstance(meta["version"], int)
KEYS = ["id", "author", "question", "answer", "paraphrased_answer", "perturbed_answer"]

def load(name):
    raw = open(os.path.join(d, name), "rb").read()
    assert all(b < 128 for b in raw), name + " is not ASCII"
    assert raw == b"" or raw.endswith(b"\n"), name
    return [json.loads(line) for line in raw.decode().splitlines()]

def items(name):
    rows = load(name)
    for r in rows:
        assert list(r) == KEYS, (name, list(r))
        assert all(isinstance(r[k], str) and r[k] for k in KEYS[:5]), r
        p = r["perturbed_answer"]
        assert len(p) == o["perturbed"] and len(set(p)) == len(p), r
        assert r["answer"] not in p and r["paraphrased_answer"] not in p, r
        assert r["paraphrased_answer"] != r["answer"], r
        assert 20 <= len(r["answer"]) <= 130, r["answer"]
    return rows

files = sorted(f for f in os.listdir(d) if f != "synth.json")
assert files == sorted(meta["files"]), (files, sorted(meta["files"]))
full = items("full.jsonl")
k = o["qa"]
authors = lambda rows: [r["author"] for r in rows[::k]]
assert len(full) == o["authors"] * k and len(set(authors(full))) == o["authors"]
assert len({r["id"] for r in full}) == len(full)
for a in range(o["authors"]):
    assert [r["id"] for r in full[a * k:(a + 1) * k]] == ["a%03d-q%02d" % (a, q) for q in range(k)]
    assert len({r["author"] for r in full[a * k:(a + 1) * k]}) == 1
    assert len({r["question"] for r in full[a * k:(a + 1) * k]}) == k
held_names = set()
prev = []
for s in o["splits"]:
    forget, retain = items("forget%02d.jsonl" % s), items("retain%02d.jsonl" % (100 - s))
    hold = items("holdout%02d.jsonl" % s)
    n = max(1, (o["authors"] * s + 50) // 100)
    assert len(forget) == n * k and len(hold) == len(forget)
    assert retain + forget == full                      # disjoint, and together all of full
    assert all(x in forget for x in prev)               # nested
    prev = forget
    assert not set(authors(hold)) & set(authors(full))  # holdout authors never trained on
    assert all(r["id"].startswith("h") for r in hold)
    held_names |= set(authors(hold))
    for name, rows, a in (("forget", forget, n), ("retain", retain, o["authors"] - n), ("holdout", hold, n)):
        m = meta["files"]["%s%02d.jsonl" % (name, 100 - s if name == "retain" else s)]
        assert m == {"items": a * k, "authors": a}, (name, s, m)
rp = items("retain_perturbed.jsonl")
assert rp == full[:len(rp)] and not set(authors(rp)) & set(authors(prev))
assert len(rp) == min(20, o["authors"] - len(prev) // k) * k
gen, wf = items("general.jsonl"), items("world_facts.jsonl")
assert len(gen) == o["facts"] and len(wf) == min(100, o["facts"]) and all(r in gen for r in wf)
assert len({r["question"] for r in gen}) == len(gen)
idk = load("idk.jsonl")
assert len(idk) == 100 and len({r["text"] for r in idk}) == 100 and all(list(r) == ["text"] for r in idk)
counts = {"full.jsonl": len(full), "retain_perturbed.jsonl": len(rp), "general.jsonl": len(gen),
          "world_facts.jsonl": len(wf), "idk.jsonl": len(idk)}
for f, c in counts.items():
    assert meta["files"][f]["items"] == c, (f, meta["files"][f], c)
print("ok", d, len(full), "items,", len(gen), "facts")
PY
}

@test "the same seed gives the same bytes; another seed other ones" {
  mpu synth -o a
  mpu synth -o b
  diff -r a b
  mpu synth --seed 1 -o c
  run diff -rq a c
  [ "$status" -eq 1 ]
  # every question file differs, idk.jsonl does not
  for f in full forget01 retain99 holdout10 general world_facts; do ! cmp -s "a/$f.jsonl" "c/$f.jsonl"; done
  cmp a/idk.jsonl c/idk.jsonl
}

@test "the defaults are TOFU's layout, and every file is as synth.json says" {
  mpu synth -o d
  check_dir d
  for f in full forget01 forget05 forget10 retain99 retain95 retain90 holdout01 holdout05 holdout10 \
    retain_perturbed general world_facts idk; do
    [ -s "d/$f.jsonl" ]
  done
  run python3 -c "import json; m = json.load(open('d/synth.json'))['files']
print(m['full.jsonl']['items'], m['forget01.jsonl']['items'], m['forget05.jsonl']['items'], m['forget10.jsonl']['items'],
      m['retain_perturbed.jsonl']['items'], m['general.jsonl']['items'], m['world_facts.jsonl']['items'])"
  assert_output "4000 40 200 400 400 200 100"
}

@test "other sizes and splits keep every property" {
  mpu synth --seed 5 --authors 40 --qa 10 --facts 60 -o small
  check_dir small
  mpu synth --seed 9 --authors 30 --qa 24 --perturbed 20 --splits 2,20,50 --holdout-authors 16 --facts 1062 -o big
  check_dir big
  [ -f big/forget50.jsonl ] && [ -f big/retain50.jsonl ] && [ -f big/holdout02.jsonl ]
  mpu synth --authors 2 --qa 1 --perturbed 1 --splits 50 --facts 0 -o tiny
  check_dir tiny
  [ ! -s tiny/general.jsonl ]
}

@test "more authors, questions, wrong answers or facts leave what was there" {
  mpu synth --authors 40 --qa 10 --facts 60 -o small
  mpu synth --authors 50 --qa 12 --perturbed 8 --facts 80 -o large
  python3 - <<'PY'
import json
load = lambda p: [json.loads(l) for l in open(p)]
small, large = load("small/full.jsonl"), load("large/full.jsonl")
by = {(r["author"], r["question"]): r for r in large}
for r in small:
    s = by[(r["author"], r["question"])]   # the same author, asked the same
    assert s["answer"] == r["answer"] and s["paraphrased_answer"] == r["paraphrased_answer"]
    assert s["perturbed_answer"][:5] == r["perturbed_answer"]
assert [r["author"] for r in small[::10]] == [r["author"] for r in large[::12]][:40]
g_small, g_large = load("small/general.jsonl"), load("large/general.jsonl")
for a, b in zip(g_small, g_large):
    assert a["id"] == b["id"] and a["answer"] == b["answer"] and b["perturbed_answer"][:5] == a["perturbed_answer"]
# holdout authors do not depend on --authors
assert [r["author"] for r in load("small/holdout10.jsonl")][::10] == [r["author"] for r in load("large/holdout10.jsonl")][::12][:4]
PY
}

@test "mpu score reads the question files" {
  mpu synth --authors 10 --qa 2 --facts 4 -o q
  tiny_model m.mpuc
  run mpu score --data q/forget10.jsonl m.mpuc
  assert_success
  [ "$(echo "$output" | wc -l)" -eq 2 ]
  mpu score --data q/general.jsonl m.mpuc > /dev/null
}

@test "bad options: exit 2 with a message, and no directory" {
  for bad in "--authors 0" "--authors 1" "--authors 1001" "--qa 0" "--qa 25" "--perturbed 0" "--perturbed 21" \
    "--splits 0,5" "--splits 5,1" "--splits 1,5,5" "--splits 51" "--splits 1,,5" "--splits x" "--facts 1063" \
    "--facts -1" "--holdout-authors 19" "--holdout-authors 1001" "--seed x" "--authors 2x" "extra-argument"; do
    # shellcheck disable=SC2086
    run mpu synth $bad -o out
    echo "$bad: $output"
    [ "$status" -eq 2 ]
    assert_output --partial "mpu-synth: "
    [ ! -e out ]
  done
  run mpu synth --qa 25 -o out
  assert_output --partial "1..24"
  run mpu synth --perturbed 21 -o out
  assert_output --partial "1..20"
  run mpu synth
  [ "$status" -eq 2 ]
  assert_output --partial "-o DIR is required"
  [ -z "$(ls)" ]
}

@test "an existing DIR: an empty one is used, a full one needs --force, which replaces it" {
  mkdir empty
  mpu synth --authors 10 -o empty/
  [ -f empty/synth.json ]
  run mpu synth --authors 10 --seed 2 -o empty
  [ "$status" -eq 2 ]
  assert_output --partial "not empty"
  grep -q '"seed": 0' empty/synth.json
  echo x > file
  run mpu synth --authors 10 -o file
  [ "$status" -eq 2 ]
  assert_output --partial "already exists"
  touch empty/stray
  mpu synth --authors 10 --seed 2 --force -o empty
  grep -q '"seed": 2' empty/synth.json
  [ ! -e empty/stray ]
  mpu synth --authors 10 --force -o file
  [ -d file ] && [ -f file/full.jsonl ]
  [ -z "$(ls | grep -E 'tmp|old')" ]
}

@test "a failed write or an interrupt leaves no half-written DIR" {
  # writes past the file size limit fail (SIGXFSZ ignored): exit 2, nothing left
  run bash -c "trap '' XFSZ; ulimit -f 64; mpu synth -o out"
  [ "$status" -eq 2 ]
  assert_output --partial "write failed"
  [ ! -e out ]
  [ -z "$(ls)" ]
  # an interrupt: either nothing or the whole directory, never a temporary
  mpu synth --authors 1000 --holdout-authors 1000 --qa 24 --perturbed 20 --facts 1062 -o big &
  pid=$!
  sleep 0.3
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" || true
  [ -z "$(ls | grep tmp)" ]
  [ ! -e big ] || [ -f big/synth.json ]
}
