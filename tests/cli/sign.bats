#!/usr/bin/env bats
# Signed streams (spec/mpuc.md 9.1): keygen --sign, --sign-key on the writers,
# verify --trust; the signature checked by Python's hashlib and cryptography.

load helper

PY=/usr/bin/python3
trailer() { $PY "$REPO/tests/cli/trailer.py" "$@"; }

# signed_model: m.mpuc (unsigned), s.key/s.key.pub, s.mpuc (m signed by s).
signed_model() {
  tiny_model m.mpuc
  mpu keygen --sign -o s.key > /dev/null
  mpu convert --sign-key s.key -o s.mpuc m.mpuc
}

key_id() { cut -d' ' -f2 "$1"; }

@test "keygen --sign: a pair, 0600 secret, the key id is BLAKE2b-256 of the public key; never overwrites" {
  run mpu keygen --sign -o s.key
  assert_success
  [ "$(stat -c %a s.key)" = 600 ]
  grep -qx 'mpu-sign-secret-v1 [0-9a-f]\{16\} [0-9a-f]\{64\}' s.key
  grep -qx 'mpu-sign-public-v1 [0-9a-f]\{16\} [0-9a-f]\{64\}' s.key.pub
  id=$(key_id s.key.pub)
  [ "$(key_id s.key)" = "$id" ]
  assert_output --partial "$id"
  $PY - "$id" <<'PY'
import hashlib, sys
pk = bytes.fromhex(open('s.key.pub').read().split()[2])
assert hashlib.blake2b(pk, digest_size=32).hexdigest()[:16] == sys.argv[1]
# the public key is the one the seed makes (RFC 8032)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization as s
seed = bytes.fromhex(open('s.key').read().split()[2])
raw = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
assert raw == pk
PY
  before=$(cat s.key s.key.pub | md5sum)
  run mpu keygen --sign -o s.key
  assert_failure 2
  assert_output --partial "never overwritten"
  [ "$(cat s.key s.key.pub | md5sum)" = "$before" ]
  # the public half's name taken: nothing is written, not even the secret
  touch t.key.pub
  run mpu keygen --sign -o t.key
  assert_failure 2
  assert_output --partial "t.key.pub: already exists"
  [ ! -e t.key ]
  [ ! -s t.key.pub ]
  run mpu keygen --sign -o -
  assert_failure 2
  # two keys are two keys
  mpu keygen --sign -o u.key > /dev/null
  [ "$(key_id u.key)" != "$id" ]
  # the server key is as it was
  mpu keygen -o server.key
  grep -qx 'mpu-server-key-v1 [0-9a-f]\{64\}' server.key
}

@test "a signed stream verifies under its key, passes zstd -t and plain verify, and says who signed it" {
  signed_model
  id=$(key_id s.key.pub)
  run mpu verify --trust s.key.pub s.mpuc
  assert_success
  assert_output --partial "s.mpuc: signed by key $id (trusted)"
  run mpu verify s.mpuc
  assert_success
  assert_output --partial "signed by key $id (not checked"
  zstd -tq s.mpuc
  run mpu verify --json --trust s.key.pub s.mpuc
  assert_success
  echo "$output" | $PY -c "import json,sys; r=json.load(sys.stdin); assert r['signatures']==[{'alg':'ed25519','key_id':'$id','status':'trusted'}], r"
  # through a pipe, both ways
  mpu convert --sign-key s.key < m.mpuc | mpu verify -q --trust s.key.pub
}

@test "signing changes no digest and no byte before the trailer: signed and unsigned are the same stream" {
  signed_model
  mpu convert -o u.mpuc m.mpuc
  trailer show u.mpuc | $PY -c "import json,sys; assert 'signatures' not in json.load(sys.stdin)"
  [ "$(trailer prefix u.mpuc)" = "$(trailer prefix s.mpuc)" ]
  a=$(mpu verify --json u.mpuc | jq_py 'print(o["stream_id"], o["content_digest"], o["stream_digest"])')
  b=$(mpu verify --json s.mpuc | jq_py 'print(o["stream_id"], o["content_digest"], o["stream_digest"])')
  [ "$a" = "$b" ]
  # a signed stream is a parent like any other
  mpu convert --level 3 -o child.mpuc s.mpuc
  mpu verify -q -p u.mpuc child.mpuc
}

@test "Python recomputes the signed digest and checks the Ed25519 signature as spec/mpuc.md 9.1 defines it" {
  mpu keygen --sign -o s.key > /dev/null
  # a stream with no parents (E is over {}), and a child, whose trailer
  # has parents_verified (E covers it)
  tiny_model i.mpuc --sign-key s.key
  mpu convert --sign-key s.key --level 2 -o c.mpuc i.mpuc
  for f in i.mpuc c.mpuc; do
    $PY - "$f" <<'PY'
import hashlib, json, struct, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
data = open(sys.argv[1], 'rb').read()
off = struct.unpack('<Q', data[-24:-16])[0]
n = struct.unpack('<I', data[off + 9:off + 13])[0]
t = json.loads(data[off + 13:off + 13 + n])
pub = open('s.key.pub').read().split()
[s] = t['signatures']
D = hashlib.blake2b(data[:off], digest_size=32).digest()
assert s['digest'] == {'blake2b_256': D.hex()}, (s, D.hex())
assert s['key_id'] == pub[1] and s['alg'] == 'ed25519'
C = bytes.fromhex(t['content_digest']['xxh3_128'])
rest = {k: v for k, v in t.items() if k not in ('counts', 'content_digest', 'stream_digest', 'index', 'signatures')}
assert list(rest) == (['parents_verified'] if sys.argv[1] == 'c.mpuc' else []), rest
E = hashlib.blake2b(json.dumps(rest, separators=(',', ':'), sort_keys=True).encode(), digest_size=32).digest()
Ed25519PublicKey.from_public_bytes(bytes.fromhex(pub[2])).verify(bytes.fromhex(s['sig']), b'mpuc-stream-v1\0' + D + C + E)
PY
  done
}

@test "verify --trust refuses: another key, an unsigned stream, a byte flipped anywhere" {
  signed_model
  mpu keygen --sign -o other.key > /dev/null
  run mpu verify --trust other.key.pub s.mpuc
  assert_failure 1
  assert_output --partial "signed only by keys not trusted ($(key_id s.key))"
  run mpu verify --trust s.key.pub m.mpuc
  assert_failure 1
  assert_output --partial "not signed"
  # a keyring, or --trust twice: either key will do
  cat other.key.pub s.key.pub > ring.pub
  mpu verify -q --trust ring.pub s.mpuc
  mpu verify -q --trust other.key.pub --trust s.key.pub s.mpuc
  size=$(file_size s.mpuc)
  # header, first blob, a tensor's chunk, the middle, the trailer JSON (its
  # signature), the trailer's offset, the last byte
  for off in 20 2500 60000 $((size / 2)) $((size - 200)) $((size - 20)) $((size - 1)); do
    cp s.mpuc x.mpuc
    flip_byte x.mpuc "$off"
    run mpu verify --trust s.key.pub x.mpuc
    [ "$status" -eq 1 ] || { echo "offset $off: status $status"; false; }
  done
}

@test "forgeries with correct checksums: a signature moved from another stream, a changed parents_verified" {
  signed_model
  tiny_model other.mpuc --seed 7
  mpu convert --sign-key s.key -o os.mpuc other.mpuc
  # other.mpuc (unsigned) given os.mpuc's signature: every XXH3 check passes
  sig=$(trailer show os.mpuc | jq_py 'print(json.dumps(o["signatures"]))')
  cp m.mpuc forged.mpuc
  trailer edit forged.mpuc "t['signatures'] = json.loads('$sig')"
  mpu verify -q forged.mpuc
  run mpu verify --trust s.key.pub forged.mpuc
  assert_failure 1
  assert_output --partial "signed other bytes"
  # ... with its digest member made to match: the signature itself fails
  d=$(trailer prefix forged.mpuc)
  trailer edit forged.mpuc "t['signatures'][0]['digest']['blake2b_256'] = '$d'"
  run mpu verify --trust s.key.pub forged.mpuc
  assert_failure 1
  assert_output --partial "bad signature"
  # a signed child whose record of its parent is changed: still a valid
  # stream, but no longer what the key signed
  mpu convert --sign-key s.key --level 2 -o c.mpuc m.mpuc
  mpu verify -q --trust s.key.pub c.mpuc
  trailer edit c.mpuc "t['parents_verified'][0]['content_digest']['xxh3_128'] = '0' * 32"
  mpu verify -q c.mpuc
  run mpu verify --trust s.key.pub c.mpuc
  assert_failure 1
  assert_output --partial "bad signature"
  # the signature of a trusted key, damaged
  cp s.mpuc y.mpuc
  trailer edit y.mpuc "s = t['signatures'][0]; s['sig'] = ('1' if s['sig'][0] != '1' else '2') + s['sig'][1:]"
  run mpu verify --trust s.key.pub y.mpuc
  assert_failure 1
  assert_output --partial "bad signature"
  # signatures by unknown keys are not errors beside a trusted one
  mpu keygen --sign -o other.key > /dev/null
  mpu convert --sign-key other.key -o o2.mpuc m.mpuc
  extra=$(trailer show o2.mpuc | jq_py 'print(json.dumps(o["signatures"][0]))')
  cp s.mpuc z.mpuc
  trailer edit z.mpuc "t['signatures'].append(json.loads('$extra'))"
  run mpu verify --trust s.key.pub z.mpuc
  assert_success
  assert_output --partial "(unknown key)"
  run mpu verify --trust other.key.pub z.mpuc
  assert_success
}

@test "every writer signs: split signs each copy, init and perturb their streams" {
  mpu keygen --sign -o s.key > /dev/null
  mpu keygen -o server.key
  tiny_model m.mpuc --sign-key s.key --dtype bf16
  mpu verify -q --trust s.key.pub m.mpuc
  mpu perturb --key server.key --copies 2 --kappa 0.01 --sign-key s.key m.mpuc | mpu split --sign-key s.key
  mpu verify -q --trust s.key.pub copy-1.mpuc copy-2.mpuc
  run mpu verify --trust s.key.pub copy-1.mpuc copy-2.mpuc
  assert_output --partial "copy-1.mpuc: signed by key"
  assert_output --partial "copy-2.mpuc: signed by key"
}

@test "bad keys: a clear message, status 2, and no output left behind" {
  tiny_model m.mpuc
  mpu keygen --sign -o s.key > /dev/null
  mpu keygen -o server.key
  run mpu convert --sign-key missing.key -o out.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "missing.key"
  run mpu convert --sign-key s.key.pub -o out.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "public half"
  run mpu convert --sign-key server.key -o out.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "not an mpu signing key"
  [ ! -e out.mpuc ]
  # a damaged key id
  sed 's/^\(mpu-sign-secret-v1 \)./\1x/' s.key > bad.key
  run mpu convert --sign-key bad.key -o out.mpuc m.mpuc
  assert_failure 2
  [ ! -e out.mpuc ]
  run mpu verify --trust s.key m.mpuc
  assert_failure 2
  assert_output --partial "secret signing key"
  run mpu verify --trust server.key m.mpuc
  assert_failure 2
  run mpu verify --trust missing.pub m.mpuc
  assert_failure 2
  : > empty.pub
  run mpu verify --trust empty.pub m.mpuc
  assert_failure 2
  assert_output --partial "no public signing key"
}
