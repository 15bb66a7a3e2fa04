#!/usr/bin/env bats
# spec/vectors: committed streams and what must be reported for them.

load helper

VEC=$REPO/spec/vectors
GOOD="micro-f32 micro-bf16-store micro-bf16-converted multicopy empty"

@test "inspect reports each vector exactly as committed" {
  for v in $GOOD; do
    mpu inspect "$VEC/$v.mpuc" | diff -u "$VEC/$v.inspect.txt" -
    mpu inspect --json "$VEC/$v.mpuc" | diff -u "$VEC/$v.inspect.jsonl" -
  done
}

@test "verify gives each vector's committed ids and digests" {
  for v in $GOOD; do
    mpu verify --json "$VEC/$v.mpuc" | sed "s|\"file\":\"[^\"]*\"|\"file\":\"$v.mpuc\"|" | diff -u "$VEC/$v.verify.json" -
  done
}

@test "stock zstd accepts every vector" {
  for v in $GOOD; do zstd -qt "$VEC/$v.mpuc"; done
}

@test "today's writer reproduces the vectors" {
  [ -n "${MPU_TOOLS:-}" ] || skip "MPU_TOOLS not set (run through make test)"
  "$VEC/make.sh" regen > /dev/null
  cmp "$VEC/micro-bf16-store.mpuc" regen/micro-bf16-store.mpuc
  for v in $GOOD; do
    a=$(jq_py 'print(o["stream_id"], o["content_digest"]["xxh3_128"])' < "$VEC/$v.verify.json")
    b=$(jq_py 'print(o["stream_id"], o["content_digest"]["xxh3_128"])' < "regen/$v.verify.json")
    [ "$a" = "$b" ] || { echo "$v: $a vs $b"; false; }
  done
}

@test "damaged vectors fail with the committed status and message" {
  for f in "$VEC"/bad/*.mpuc; do
    name=$(basename "$f" .mpuc)
    want_status=$(sed -n 1p "$VEC/bad/$name.expect")
    want_msg=$(sed -n 2p "$VEC/bad/$name.expect")
    run mpu verify "$f"
    [ "$status" -eq "$want_status" ] || { echo "$name: status $status: $output"; false; }
    [[ "$output" == *"$want_msg"* ]] || { echo "$name: '$output' lacks '$want_msg'"; false; }
  done
}
