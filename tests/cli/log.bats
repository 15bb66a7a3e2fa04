#!/usr/bin/env bats
# mpu log (the provenance graph across files) and verify --chain (every link
# among them), on a whole round: perturb -> split (fan-out) -> invert (fan-in)
# -> denoise.

load helper

PY=/usr/bin/python3
trailer() { $PY "$REPO/tests/cli/trailer.py" "$@"; }

# A round's streams, each kept: model, p (perturb), copy-1/2 (split),
# updates (invert; the copies come back unchanged), next (denoise).
round_files() {
  round_setup
  mpu perturb --key server.key --copies 2 --kappa 0.05 "$@" -o p.mpuc model.mpuc
  mpu split p.mpuc
  mpu invert --key server.key --onto model.mpuc -o updates.mpuc copy-1.mpuc copy-2.mpuc
  mpu denoise --key server.key --onto model.mpuc -o next.mpuc updates.mpuc
}
ROUND="model.mpuc p.mpuc copy-1.mpuc copy-2.mpuc updates.mpuc next.mpuc"

@test "log --json: split fans out, invert and denoise fan in, perturb's parent is a commitment" {
  round_files
  mpu log --json $ROUND > g.json
  $PY - <<'PY'
import json
g = json.load(open('g.json'))
edges = sorted((e['from'], e['to'], e['state']) for e in g['edges'])
assert edges == sorted([
    ('p.mpuc', 'copy-1.mpuc', 'ok'), ('p.mpuc', 'copy-2.mpuc', 'ok'),           # fan-out
    ('model.mpuc', 'updates.mpuc', 'ok'), ('copy-1.mpuc', 'updates.mpuc', 'ok'),
    ('copy-2.mpuc', 'updates.mpuc', 'ok'),                                      # fan-in
    ('model.mpuc', 'next.mpuc', 'ok'), ('updates.mpuc', 'next.mpuc', 'ok')]), edges
s = {x['file']: x for x in g['streams']}
assert [x['file'] for x in g['streams']] == ['model.mpuc', 'p.mpuc', 'copy-1.mpuc', 'copy-2.mpuc', 'updates.mpuc', 'next.mpuc']
assert {f: x['stage']['name'] for f, x in s.items()} == {'model.mpuc': 'init', 'p.mpuc': 'perturb', 'copy-1.mpuc': 'split',
    'copy-2.mpuc': 'split', 'updates.mpuc': 'invert', 'next.mpuc': 'denoise'}
assert {f: x['depth'] for f, x in s.items()} == {'model.mpuc': 0, 'p.mpuc': 0, 'copy-1.mpuc': 1, 'copy-2.mpuc': 1,
    'updates.mpuc': 2, 'next.mpuc': 3}
assert s['copy-2.mpuc']['stage']['params'] == {'copy': 2}
assert s['next.mpuc']['stage']['params']['aggregate'] == 'harmonic'
[pp] = s['p.mpuc']['parents']
assert pp['state'] == 'committed' and set(pp) == {'commitment', 'state'}
assert [p['file'] for p in s['updates.mpuc']['parents']] == ['model.mpuc', 'copy-1.mpuc', 'copy-2.mpuc']
assert s['model.mpuc']['parents'] == [] and all(x['signatures'] == [] for x in g['streams'])
assert s['copy-1.mpuc']['round']['copy'] == 1 and s['p.mpuc']['copies'] == 2
for x in g['streams']:
    assert x['tool']['name'] == 'mpu' and len(x['content_digest']['xxh3_128']) == 32
PY
  # the ids and digests are the streams' own
  for f in $ROUND; do
    want=$(mpu verify --json "$f" | jq_py 'print(o["stream_id"], o["content_digest"]["xxh3_128"])')
    got=$($PY -c "import json; x=[s for s in json.load(open('g.json'))['streams'] if s['file']=='$f'][0]; print(x['stream_id'], x['content_digest']['xxh3_128'])")
    [ "$want" = "$got" ]
  done
  # with the server key the commitment is matched to the model
  mpu log --json --key server.key $ROUND | jq_py '
e = [x for x in o["edges"] if x["to"] == "p.mpuc"]
assert e == [{"from": "model.mpuc", "to": "p.mpuc", "state": "ok"}], e'
}

@test "log prints nothing a header or trailer does not carry: no key, no plain digest of the model in the client's copies" {
  round_files
  mpu log --json $ROUND > g.json
  for f in $ROUND; do mpu inspect --json "$f"; done > carried.jsonl
  $PY - <<'PY'
import re
carried = open('carried.jsonl').read()
shown = set(re.findall(r'[0-9a-f]{16,}', open('g.json').read()))
missing = [h for h in shown if h not in carried]
assert shown and not missing, missing
key = open('server.key').read().split()[1]
assert key not in open('g.json').read()
PY
  # what the copies' entries show of their parents is a commitment, never the model's id
  model_id=$(mpu verify --json model.mpuc | jq_py 'print(o["stream_id"])')
  run mpu log p.mpuc copy-1.mpuc copy-2.mpuc
  assert_success
  refute_output --partial "$model_id"
  assert_output --partial "committed"
}

@test "log: an indented text graph; parents not given are external" {
  round_files
  run mpu log $ROUND
  assert_success
  assert_line "* model.mpuc  init (mpu 0.1.0), 1 copy"
  assert_line "  * copy-1.mpuc  split (mpu 0.1.0), 1 copy"
  assert_line "    * updates.mpuc  invert (mpu 0.1.0), 2 copies"
  assert_line "      * next.mpuc  denoise (mpu 0.1.0), 1 copy"
  assert_line "      parents: model.mpuc, copy-1.mpuc, copy-2.mpuc"
  assert_line "  children: copy-1.mpuc, copy-2.mpuc"
  p_id=$(mpu verify --json p.mpuc | jq_py 'print(o["stream_id"][:12])')
  run mpu log copy-1.mpuc
  assert_success
  assert_line "  parents: external $p_id (not given)"
}

@test "log --dot: a node per file, an edge per link, dashed for parents outside" {
  round_files
  mpu log --dot $ROUND > g.dot
  head -1 g.dot | grep -qx 'digraph mpu {'
  tail -1 g.dot | grep -qx '}'
  [ "$(grep -c '\[label=' g.dot)" -eq 7 ]                  # 6 files, 1 commitment
  [ "$(grep -c ' -> ' g.dot)" -eq 8 ]
  [ "$(grep ' -> ' g.dot | grep -c dashed)" -eq 1 ]
  grep -qx '  "p.mpuc" -> "copy-2.mpuc";' g.dot
  grep -qx '  "copy-1.mpuc" -> "updates.mpuc";' g.dot
  if command -v dot >/dev/null; then dot -Tsvg g.dot > /dev/null; fi
}

@test "log shows signers, trusted or not" {
  mpu keygen --sign -o s.key > /dev/null
  mpu keygen --sign -o o.key > /dev/null
  id=$(cut -d' ' -f2 s.key.pub)
  tiny_model m.mpuc
  mpu convert --sign-key s.key -o c.mpuc m.mpuc
  run mpu log m.mpuc c.mpuc
  assert_success
  assert_line "    signed: $id (not checked)"
  assert_line "  signed: no"
  run mpu log --trust s.key.pub c.mpuc
  assert_line "  signed: $id (trusted)"
  run mpu log --trust o.key.pub c.mpuc
  assert_line "  signed: $id (unknown key)"
  mpu log --json --trust s.key.pub m.mpuc c.mpuc | jq_py '
s = {x["file"]: x for x in o["streams"]}
assert s["c.mpuc"]["signatures"] == [{"alg": "ed25519", "key_id": "'$id'", "status": "trusted"}]
assert s["c.mpuc"]["parents"][0]["file"] == "m.mpuc" and s["c.mpuc"]["parents"][0]["state"] == "ok"'
}

@test "verify --chain: a whole round passes; commitments are checked only with the key" {
  round_files
  run mpu verify --chain $ROUND
  assert_success
  assert_output --partial "p.mpuc: parent committed, not checkable without the server key"
  assert_output --partial "updates.mpuc: parent copy-2.mpuc ok"
  assert_line "chain: ok (6 files, 7 links checked, 0 external, 1 committed)"
  run mpu verify --chain --key server.key $ROUND
  assert_success
  assert_output --partial "p.mpuc: parent model.mpuc ok"
  assert_line "chain: ok (6 files, 8 links checked, 0 external, 0 committed)"
  # another server's key matches nothing
  mpu keygen -o other.key
  run mpu verify --chain --key other.key $ROUND
  assert_success
  assert_line "chain: ok (6 files, 7 links checked, 0 external, 1 committed)"
  # the copies alone: their parent is outside, and they share it
  run mpu verify --chain copy-1.mpuc copy-2.mpuc
  assert_success
  assert_line "chain: ok (2 files, 0 links checked, 2 external, 0 committed)"
  # ... but the updates without the model they name are a hole
  run mpu verify --chain copy-1.mpuc copy-2.mpuc updates.mpuc
  assert_failure 1
  assert_output --partial "updates.mpuc names parent $(mpu verify --json model.mpuc | jq_py 'print(o["stream_id"])'), which is none of the files given"
  # --parents gives the same answers through the same check
  mpu verify -q --key server.key -p model.mpuc p.mpuc
  run mpu verify -p model.mpuc p.mpuc
  assert_failure 1
  assert_output --partial "only --key can check"
  run mpu verify --chain --json $ROUND
  assert_success
  echo "$output" | tail -1 | jq_py 'c = o["chain"]; assert c["ok"] and c["checked"] == 7 and len(c["links"]) == 8'
}

@test "verify --chain fails when a file is replaced by a rerun with other parameters" {
  round_files
  mkdir rerun && cd rerun
  cp ../server.key ../model.mpuc .
  mpu perturb --key server.key --copies 2 --kappa 0.1 model.mpuc | mpu split
  cd ..
  # copy-1 from the kappa-0.1 round: updates no longer finds the copy it read
  run mpu verify --chain model.mpuc p.mpuc rerun/copy-1.mpuc copy-2.mpuc updates.mpuc next.mpuc
  assert_failure 1
  assert_output --partial "updates.mpuc names parent"
  assert_output --partial "none of the files given"
  # the model re-made with another seed: the updates were not made from it
  tiny_model other.mpuc --dtype bf16 --seed 5
  run mpu verify --chain other.mpuc p.mpuc copy-1.mpuc copy-2.mpuc updates.mpuc next.mpuc
  assert_failure 1
  assert_output --partial "updates.mpuc names parent"
  # a file that belongs to no chain with the others
  run mpu verify --chain model.mpuc copy-1.mpuc
  assert_failure 1
  assert_output --partial "copy-1.mpuc is not linked to model.mpuc"
  run mpu verify --chain copy-1.mpuc rerun/copy-2.mpuc
  assert_failure 1
  assert_output --partial "rerun/copy-2.mpuc is not linked to copy-1.mpuc"
  # a link only the key can see
  run mpu verify --chain model.mpuc p.mpuc
  assert_failure 1
  assert_output --partial "give --key"
  mpu verify -q --chain --key server.key model.mpuc p.mpuc
  # and the round itself still passes
  mpu verify -q --chain $ROUND
}

@test "verify --chain and log: a parent with other content than its child read is a broken link, named" {
  round_files
  # updates records another content digest for copy-2 (its record check
  # made right, so the stream itself is valid)
  trailer edit updates.mpuc "[v for v in t['parents_verified'] if v.get('stream_id') == '$(mpu verify --json copy-2.mpuc | jq_py 'print(o["stream_id"])')'][0]['content_digest']['xxh3_128'] = 'f' * 32"
  mpu verify -q updates.mpuc
  run mpu verify --chain $ROUND
  assert_failure 1
  assert_output --partial "updates.mpuc: parent copy-2.mpuc BROKEN"
  assert_output --partial "broken chain: updates.mpuc: parent copy-2.mpuc has other content than this stream read"
  run mpu verify -p copy-2.mpuc updates.mpuc
  assert_failure 1
  assert_output --partial "has other content"
  run mpu log $ROUND
  assert_failure 1
  assert_output --partial "copy-2.mpuc (BROKEN: has other content"
  mpu log --json $ROUND | jq_py '
assert {(e["from"], e["state"]) for e in o["edges"] if e["to"] == "updates.mpuc"} == {("model.mpuc", "ok"), ("copy-1.mpuc", "ok"), ("copy-2.mpuc", "broken")}'
  run mpu log --dot $ROUND
  assert_output --partial '"copy-2.mpuc" -> "updates.mpuc" [color=red, label="broken"];'
}

@test "log and verify --chain: bad input" {
  tiny_model m.mpuc
  run mpu log
  assert_failure 2
  assert_output --partial "give the streams"
  run mpu log --json --dot m.mpuc
  assert_failure 2
  run mpu log missing.mpuc
  assert_failure 2
  run mpu verify --chain
  assert_failure 2
  run mpu verify --key missing.key m.mpuc
  assert_failure 2
  run mpu log --trust m.mpuc m.mpuc
  assert_failure 2
  # a truncated stream fails; the others are still shown
  head -c 3000 m.mpuc > cut.mpuc
  mpu convert -o c.mpuc m.mpuc
  run mpu log m.mpuc cut.mpuc c.mpuc
  assert_failure 1
  assert_output --partial "truncated"
  assert_output --partial "* m.mpuc"
  assert_output --partial "parents: m.mpuc"
  run mpu verify --chain m.mpuc cut.mpuc c.mpuc
  assert_failure 1
}
