#!/usr/bin/env bats
# --device for the programs that run a model (score, train, unlearn,
# generate, eval): cpu is the default and the reference; cuda where no GPU
# can be used fails before reading anything, with status 2 and the reason;
# auto falls back to the CPU and gives its bytes.  The GPU's own numbers are
# checked by tests/gpu/engine.sh on a GPU machine.

load helper

ENG=$REPO/tests/fixtures/engine

setup() {
  cd "$BATS_TEST_TMPDIR"
  mpu import -q "$ENG/llama_gqa" > m.mpuc
  echo '{"input_ids":[1,2,3,4,5]}' > d.jsonl
  echo '{"question":"a b","answer":"c d"}' > qa.jsonl
}

no_gpu() { ! mpu score --device cuda --data d.jsonl m.mpuc > /dev/null 2>&1; }

@test "--device cuda without a usable GPU: exit 2, the reason, nothing written" {
  no_gpu || skip "a GPU is usable here (tests/gpu/engine.sh checks it)"
  run mpu score --device cuda --data d.jsonl m.mpuc
  assert_failure 2
  assert_output --partial "--device cuda: no CUDA device"
  run mpu train --device cuda --data d.jsonl -o t.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "--device cuda: no CUDA device"
  [ ! -e t.mpuc ]
  run mpu unlearn --device cuda --algo ga --forget d.jsonl -o u.mpuc m.mpuc
  assert_failure 2
  assert_output --partial "--device cuda: no CUDA device"
  [ ! -e u.mpuc ]
  run mpu generate --device cuda --prompt hi m.mpuc
  assert_failure 2
  assert_output --partial "--device cuda: no CUDA device"
  run mpu eval --device cuda --forget qa.jsonl m.mpuc
  assert_failure 2
  assert_output --partial "--device cuda: no CUDA device"
}

@test "--device auto without a GPU gives the CPU's bytes; a bad --device is a usage error" {
  no_gpu || skip "a GPU is usable here"
  mpu score --device cpu --data d.jsonl m.mpuc > cpu.out
  mpu score --device auto --data d.jsonl m.mpuc > auto.out
  mpu score --data d.jsonl m.mpuc > default.out
  cmp cpu.out auto.out
  cmp cpu.out default.out
  mpu train --device auto --epochs 1 --data d.jsonl -o a.mpuc m.mpuc
  mpu train --epochs 1 --data d.jsonl -o c.mpuc m.mpuc
  cmp a.mpuc c.mpuc
  run mpu score --device gpu --data d.jsonl m.mpuc
  assert_failure 2
  assert_output --partial "--device: 'gpu' is not cpu, cuda or auto"
  run mpu unlearn --device tpu --algo ga --forget d.jsonl -o u.mpuc m.mpuc
  assert_failure 2
}
