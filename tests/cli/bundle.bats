#!/usr/bin/env bats
# mpu pack / mpu unpack: air-gap bundles (spec/bundle.md).
load helper

# Three streams of a round: model.mpuc, copy-1.mpuc, copy-2.mpuc.
streams() {
  round_setup
  mpu perturb --key server.key --copies 2 --kappa 0.01 model.mpuc | mpu split
}

# snapshot DIR: every path under DIR with its size and checksum, sorted.
snapshot() { (cd "$1" && find . -print0 | sort -z | xargs -0 -I{} sh -c 'printf "%s " "{}"; [ -f "{}" ] && cksum < "{}" || echo') ; }

# retar IN OUT PYTHON: rewrites the members of tar IN into OUT with python's
# tarfile, after PYTHON (statements on `members`, a list of [TarInfo, bytes])
# has changed them.  The crafted bundles of the bad-input tests.
retar() {
  "$SCIPY_PYTHON" - "$1" "$2" "$3" <<'PY'
import io, sys, tarfile, hashlib, json
src, dst, code = sys.argv[1:4]
with tarfile.open(src) as t:
    members = [[m, t.extractfile(m).read()] for m in t.getmembers()]
def member(name, data=b"", type=tarfile.REGTYPE, link=""):
    i = tarfile.TarInfo(name); i.size = len(data); i.type = type; i.linkname = link
    return [i, data]
def find(name):
    return next(m for m in members if m[0].name == name)
exec(code)
with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as t:
    for m, data in members:
        m.size = len(data) if m.type == tarfile.REGTYPE else 0
        t.addfile(m, io.BytesIO(data) if m.type == tarfile.REGTYPE else None)
PY
}

# refused BUNDLE ENTRY: unpack into a directory holding one file exits 1,
# names ENTRY, and leaves the directory exactly as it was.
refused() {
  mkdir -p target
  [ -f target/keep.txt ] || echo keep > target/keep.txt
  before=$(snapshot target)
  run mpu unpack -C target "$1"
  [ "$status" -eq 1 ] || { echo "status $status: $output"; return 1; }
  assert_output --partial "'$2'"
  [ "$(snapshot target)" = "$before" ] || { echo "target changed"; ls -la target; return 1; }
}

@test "pack is reproducible: same files, any order or file times, same bytes; another SOURCE_DATE_EPOCH, other bytes" {
  streams
  mpu pack -o a.tar model.mpuc copy-1.mpuc copy-2.mpuc
  touch -d '2001-02-03' copy-1.mpuc
  chmod 600 copy-2.mpuc
  mkdir sub && cp -p model.mpuc sub/
  (umask 077 && mpu pack -o b.tar copy-2.mpuc sub/model.mpuc copy-1.mpuc)
  cmp a.tar b.tar
  SOURCE_DATE_EPOCH=1700000000 mpu pack -o c.tar model.mpuc copy-1.mpuc copy-2.mpuc
  ! cmp -s a.tar c.tar
  SOURCE_DATE_EPOCH=1700000000 mpu pack -o d.tar copy-1.mpuc copy-2.mpuc model.mpuc
  cmp c.tar d.tar
  # zstd outside: reproducible too
  mpu pack -o a.tar.zst model.mpuc copy-1.mpuc
  mpu pack --zstd -o b.tzst copy-1.mpuc model.mpuc
  cmp a.tar.zst b.tzst
  run env SOURCE_DATE_EPOCH=yesterday mpu pack -o e.tar model.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "SOURCE_DATE_EPOCH"
  [ ! -e e.tar ]
}

@test "GNU tar and bsdtar list and extract a bundle: owner 0/0, the fixed time, mode 0644, the streams byte for byte" {
  streams
  SOURCE_DATE_EPOCH=1700000000 mpu pack -o b.tar copy-1.mpuc copy-2.mpuc model.mpuc
  run env TZ=UTC tar -tvf b.tar
  assert_success
  [ "${#lines[@]}" -eq 7 ]
  for l in "${lines[@]}"; do
    [[ $l == "-rw-r--r-- 0/0 "*" 2023-11-14 22:13 "* ]] || { echo "bad line: $l"; return 1; }
  done
  # entries in the order of spec/bundle.md: streams, provenance, manifest
  run tar -tf b.tar
  [ "$output" = "$(printf '%s\n' copy-1.mpuc copy-2.mpuc model.mpuc provenance/copy-1.mpuc.json \
    provenance/copy-2.mpuc.json provenance/model.mpuc.json mpu-bundle.json)" ]
  run bsdtar -tf b.tar
  assert_success
  [ "${#lines[@]}" -eq 7 ]
  mkdir gnu bsd
  tar -xf b.tar -C gnu
  bsdtar -xf b.tar -C bsd
  for f in copy-1.mpuc copy-2.mpuc model.mpuc; do
    cmp "$f" "gnu/$f"
    cmp "$f" "bsd/$f"
  done
  # the manifest's digests are the files' BLAKE2b-512, checkable with b2sum
  "$SCIPY_PYTHON" - <<'PY'
import json, hashlib
m = json.load(open("gnu/mpu-bundle.json"))
assert m["mpu_bundle"] == 1 and m["source_date_epoch"] == 1700000000
assert [f["name"] for f in m["files"]] == ["copy-1.mpuc", "copy-2.mpuc", "model.mpuc"]
for f in m["files"]:
    data = open("gnu/" + f["name"], "rb").read()
    assert f["size"] == len(data) and f["digest"]["blake2b"] == hashlib.blake2b(data).hexdigest()
    p = json.load(open("gnu/" + f["provenance"]["name"]))
    assert p["header"]["stream_id"] == f["stream"]["stream_id"]
    assert p["trailer"]["content_digest"] == f["stream"]["content_digest"]
assert m["files"][0]["stream"]["stage"] == "split" and m["files"][0]["stream"]["copy"] == 1
assert m["files"][2]["stream"]["stage"] == "init"
PY
  (cd gnu && b2sum copy-1.mpuc) | grep -q "$("$SCIPY_PYTHON" -c 'import json; print(json.load(open("gnu/mpu-bundle.json"))["files"][0]["digest"]["blake2b"])')"
  # GNU tar's zstd and the zstd tool read the compressed form
  mpu pack -o b.tar.zst copy-1.mpuc model.mpuc
  zstd -t b.tar.zst
  zstd -dc b.tar.zst | tar -tf - > names
  grep -qx model.mpuc names
  tar --zstd -xf b.tar.zst -C gnu copy-1.mpuc
  cmp copy-1.mpuc gnu/copy-1.mpuc
  bsdtar -tf b.tar.zst | grep -qx mpu-bundle.json
}

@test "unpack writes exactly the streams, checked; --list shows them without writing; stdin works" {
  streams
  mpu pack -o b.tar model.mpuc copy-1.mpuc copy-2.mpuc
  run mpu unpack -C out b.tar
  assert_success
  assert_output --partial "out/copy-1.mpuc: ok"
  [ "$(ls -A out | sort | tr '\n' ' ')" = "copy-1.mpuc copy-2.mpuc model.mpuc " ]
  for f in model copy-1 copy-2; do cmp "$f.mpuc" "out/$f.mpuc"; done
  run mpu unpack -t b.tar
  assert_success
  assert_output --partial "copy-2.mpuc"
  assert_output --partial "split"
  assert_output --partial "not signed"
  mpu unpack --list --json b.tar | python3 -c 'import json, sys; m = json.load(sys.stdin); assert len(m["files"]) == 3'
  mkdir piped
  mpu unpack -C piped < b.tar >/dev/null
  cmp model.mpuc piped/model.mpuc
  mpu pack -o - model.mpuc | mpu unpack -q -C piped2
  cmp model.mpuc piped2/model.mpuc
}

@test "unpack never replaces a file without --force" {
  streams
  mpu pack -o b.tar model.mpuc copy-1.mpuc
  mkdir out
  echo mine > out/copy-1.mpuc
  run mpu unpack -C out b.tar
  [ "$status" -eq 2 ]
  assert_output --partial "copy-1.mpuc already exists"
  [ "$(cat out/copy-1.mpuc)" = mine ]
  [ ! -e out/model.mpuc ]
  [ "$(ls -A out)" = copy-1.mpuc ]
  mpu unpack -q --force -C out b.tar
  cmp copy-1.mpuc out/copy-1.mpuc
  cmp model.mpuc out/model.mpuc
  # and pack's -o the same
  run mpu pack -o b.tar model.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "already exists"
}

@test "a tampered bundle is refused, naming the entry, with the target untouched" {
  streams
  mpu pack -o b.tar copy-1.mpuc copy-2.mpuc model.mpuc
  # one byte inside copy-1.mpuc's data (the first entry: data from byte 512)
  cp b.tar t1.tar
  flip_byte t1.tar 200000
  refused t1.tar copy-1.mpuc
  assert_output --partial "altered: its BLAKE2b"
  # one byte inside the manifest: a digest no longer matches
  "$SCIPY_PYTHON" - <<'PY'
b = bytearray(open("b.tar", "rb").read())
i = b.rindex(b'"blake2b": "', 0, b.index(b'"name": "copy-2.mpuc"')) + 12
b[i] = ord("0") if b[i] != ord("0") else ord("1")
open("t2.tar", "wb").write(bytes(b))
PY
  ! cmp -s b.tar t2.tar
  refused t2.tar copy-2.mpuc
  # the manifest's own bytes: a broken manifest is named
  "$SCIPY_PYTHON" - <<'PY'
b = bytearray(open("b.tar", "rb").read())
i = b.index(b'"mpu_bundle": 1')
b[i + 1] = ord("X")
open("t3.tar", "wb").write(bytes(b))
PY
  refused t3.tar mpu-bundle.json
  # a stream changed and the manifest's digest recomputed to match: the
  # stream's own hashes still catch it
  retar b.tar t4.tar '
m = find("copy-1.mpuc"); d = bytearray(m[1]); d[200000] ^= 0x10; m[1] = bytes(d)
man = find("mpu-bundle.json"); j = json.loads(man[1])
j["files"][0]["digest"]["blake2b"] = hashlib.blake2b(m[1]).hexdigest()
man[1] = json.dumps(j).encode()'
  refused t4.tar copy-1.mpuc
  assert_output --partial "checksum"
  # a provenance record changed, its digest recomputed: it no longer matches the stream
  retar b.tar t5.tar '
p = find("provenance/model.mpuc.json"); j = json.loads(p[1]); j["header"]["stage"]["name"] = "train"; p[1] = json.dumps(j).encode()
man = find("mpu-bundle.json"); jm = json.loads(man[1])
jm["files"][2]["provenance"].update(size=len(p[1]), digest={"blake2b": hashlib.blake2b(p[1]).hexdigest()})
man[1] = json.dumps(jm).encode()'
  refused t5.tar provenance/model.mpuc.json
  # the manifest's description of a stream changed: the stream itself says otherwise
  retar b.tar t6.tar '
man = find("mpu-bundle.json"); j = json.loads(man[1]); j["files"][1]["stream"]["stage"] = "train"; man[1] = json.dumps(j).encode()'
  refused t6.tar copy-2.mpuc
  assert_output --partial "its stage differs"
  # the retar itself is harmless: an unchanged rewrite unpacks
  retar b.tar t0.tar ''
  mpu unpack -q -C ok t0.tar
  cmp model.mpuc ok/model.mpuc
}

@test "bad bundles: missing file, extra file, traversal, absolute path, links, devices, duplicates, disorder, truncation" {
  streams
  mpu pack -o b.tar copy-1.mpuc model.mpuc
  retar b.tar missing.tar 'members.remove(find("copy-1.mpuc"))'
  refused missing.tar copy-1.mpuc
  assert_output --partial "missing"
  retar b.tar extra.tar 'members.insert(2, member("zz.mpuc", b"x"))'
  refused extra.tar zz.mpuc
  assert_output --partial "not in the manifest"
  retar b.tar dotdot.tar 'members.insert(0, member("../evil.mpuc", b"x"))'
  refused dotdot.tar ../evil.mpuc
  [ ! -e evil.mpuc ]
  retar b.tar dotdot2.tar 'members.insert(0, member("provenance/../../evil", b"x"))'
  refused dotdot2.tar provenance/../../evil
  retar b.tar abs.tar "members.insert(0, member('$BATS_TEST_TMPDIR/abs.mpuc', b'x'))"
  refused abs.tar "$BATS_TEST_TMPDIR/abs.mpuc"
  [ ! -e abs.mpuc ]
  retar b.tar sym.tar 'members.insert(0, member("a.mpuc", type=tarfile.SYMTYPE, link="/etc/passwd"))'
  refused sym.tar a.mpuc
  assert_output --partial "symbolic link"
  retar b.tar hard.tar 'members.insert(2, member("copy-2.mpuc", type=tarfile.LNKTYPE, link="copy-1.mpuc"))'
  refused hard.tar copy-2.mpuc
  assert_output --partial "hard link"
  retar b.tar fifo.tar 'members.insert(0, member("a.mpuc", type=tarfile.FIFOTYPE))'
  refused fifo.tar a.mpuc
  assert_output --partial "FIFO"
  retar b.tar dev.tar 'members.insert(0, member("a.mpuc", type=tarfile.CHRTYPE))'
  refused dev.tar a.mpuc
  assert_output --partial "device"
  retar b.tar dir.tar 'members.insert(0, member("a.mpuc", type=tarfile.DIRTYPE))'
  refused dir.tar a.mpuc/
  retar b.tar dup.tar 'members.insert(1, find("copy-1.mpuc"))'
  refused dup.tar copy-1.mpuc
  assert_output --partial "twice"
  retar b.tar order.tar 'members[0], members[1] = members[1], members[0]'
  refused order.tar copy-1.mpuc
  assert_output --partial "out of order"
  retar b.tar hidden.tar 'members.insert(0, member(".profile", b"x"))'
  refused hidden.tar .profile
  # truncated inside a stream, and inside the manifest
  size=$(file_size b.tar)
  head -c 300000 b.tar > cut1.tar
  refused cut1.tar copy-1.mpuc
  assert_output --partial "truncated"
  head -c $((size - 1024 - 700)) b.tar > cut2.tar
  refused cut2.tar mpu-bundle.json
  # streams without their manifest
  head -c 512 b.tar > cut3.tar
  run mpu unpack -C target cut3.tar
  [ "$status" -eq 1 ]
  echo "not a tar" > junk.tar
  run mpu unpack -C target junk.tar
  [ "$status" -eq 1 ]
  assert_output --partial "not a bundle"
  # an oversized entry is refused from its header, before its bytes
  run mpu unpack --max-size 100KiB -C target b.tar
  [ "$status" -eq 1 ]
  assert_output --partial "'copy-1.mpuc' is too large"
  [ "$(ls -A target)" = keep.txt ]
}

@test "a target directory that unpack made is gone after a refusal; nothing of the private directory stays" {
  streams
  mpu pack -o b.tar copy-1.mpuc
  cp b.tar t.tar
  flip_byte t.tar 100000
  run mpu unpack -C new t.tar
  [ "$status" -eq 1 ]
  [ ! -e new ]
  mkdir keep
  run mpu unpack -C keep t.tar
  [ "$status" -eq 1 ]
  [ -z "$(ls -A keep)" ]
}

@test "pack refuses bad streams, non-files and clashing names, leaving no output" {
  streams
  head -c 100000 copy-1.mpuc > cut.mpuc
  run mpu pack -o b.tar model.mpuc cut.mpuc
  [ "$status" -eq 1 ]
  assert_output --partial "truncated"
  [ ! -e b.tar ]
  [ -z "$(ls -A | grep tmp || true)" ]
  mkdir other && cp copy-1.mpuc other/
  run mpu pack -o b.tar copy-1.mpuc other/copy-1.mpuc
  [ "$status" -eq 2 ]
  assert_output --partial "both be 'copy-1.mpuc'"
  cp model.mpuc mpu-bundle.json
  run mpu pack -o b.tar mpu-bundle.json
  [ "$status" -eq 2 ]
  run bash -c "cat model.mpuc | mpu pack -o b.tar /dev/stdin"
  [ "$status" -eq 2 ]
  assert_output --partial "regular file"
  run mpu pack -o b.tar
  [ "$status" -eq 2 ]
  [ ! -e b.tar ]
}

@test "signed bundles: --trust needs a good signature by a trusted key, naming the signer" {
  streams
  mpu keygen --sign -o server.sign >/dev/null 2>&1
  mpu keygen --sign -o other.sign >/dev/null 2>&1
  id=$(awk '{print $2}' server.sign.pub)
  mpu pack --sign-key server.sign -o s.tar model.mpuc copy-1.mpuc
  tar -tf s.tar | tail -1 | grep -qx mpu-bundle.sig
  run mpu unpack --trust server.sign.pub -C ok s.tar
  assert_success
  assert_output --partial "signed by trusted key $id"
  cmp model.mpuc ok/model.mpuc
  # another key, or no signature: exit 1, naming the signer
  run mpu unpack -t --trust other.sign.pub s.tar
  [ "$status" -eq 1 ]
  assert_output --partial "signed by key $id, which is not among the trusted keys"
  mpu pack -o u.tar model.mpuc
  refused_trust() { mkdir -p target; run mpu unpack --trust server.sign.pub -C target "$1"; [ "$status" -eq 1 ]; }
  refused_trust u.tar
  assert_output --partial "not signed"
  # either of two trusted keys will do; a keyring file holds both
  cat other.sign.pub server.sign.pub > ring.pub
  mpu unpack -t --trust ring.pub s.tar >/dev/null
  mpu unpack -t --trust other.sign.pub --trust server.sign.pub s.tar >/dev/null
  # the manifest changed and its digests recomputed: the signature no longer holds
  retar s.tar t.tar '
man = find("mpu-bundle.json"); j = json.loads(man[1]); j["source_date_epoch"] = 5; man[1] = json.dumps(j).encode()'
  mpu unpack -t t.tar >/dev/null || true
  run mpu unpack --trust server.sign.pub -C target t.tar
  [ "$status" -eq 1 ]
  assert_output --partial "signs another manifest"
  # ... and with the signature record's digest updated too, the signature fails
  retar s.tar t2.tar '
man = find("mpu-bundle.json"); j = json.loads(man[1]); j["source_date_epoch"] = 5; man[1] = json.dumps(j).encode()
s = find("mpu-bundle.sig"); js = json.loads(s[1]); js["manifest"]["digest"]["blake2b"] = hashlib.blake2b(man[1]).hexdigest(); s[1] = json.dumps(js).encode()'
  run mpu unpack --trust server.sign.pub -C target t2.tar
  [ "$status" -eq 1 ]
  assert_output --partial "signature by key $id that does not verify"
  [ -z "$(ls -A target)" ]
  # signing twice is reproducible (Ed25519 is deterministic)
  mpu pack --sign-key server.sign -o s2.tar copy-1.mpuc model.mpuc
  cmp s.tar s2.tar
  run mpu pack --sign-key server.sign.pub -o s3.tar model.mpuc
  [ "$status" -eq 2 ]
}

@test "examples: airgap.sh runs a signed round across a shared directory; replay.sh reproduces every server stream from the archive" {
  run "$REPO/examples/airgap.sh" ag
  assert_success
  assert_output --partial "signed by trusted key"
  assert_output --partial "unlearned.mpuc: ok"
  # only bundles and public keys crossed
  [ "$(ls ag/usb | tr '\n' ' ')" = "client.sign.pub server.sign.pub to-client.tar to-server.tar " ]
  [ ! -e ag/client/server.key ] && [ ! -e ag/client/model.mpuc ]
  mpu verify -q ag/server/unlearned.mpuc
  run env REPLAY_DIR=rp "$REPO/examples/replay.sh" ag/server/run.tar ag/server/server.key ag/server/server.sign.pub
  assert_success
  for f in copies.mpuc copy-1.mpuc copy-2.mpuc updates.mpuc unlearned.mpuc; do
    assert_output --partial "$f"
    cmp "rp/replayed/$([ "${f#copy-}" != "$f" ] && echo "split-${f#copy-}" || echo "$f")" "ag/server/$( [ "${f#copy-}" != "$f" ] && echo "outbox/$f" || echo "$f")"
  done
  # another key reproduces nothing; a key the archive's signer does not match is refused
  mpu keygen -o other.key
  run env REPLAY_DIR=rp2 "$REPO/examples/replay.sh" ag/server/run.tar other.key
  assert_failure
  run env REPLAY_DIR=rp3 "$REPO/examples/replay.sh" ag/server/run.tar ag/server/server.key ag/client/client.sign.pub
  [ "$status" -eq 1 ]
  assert_output --partial "not among the trusted keys"
}
