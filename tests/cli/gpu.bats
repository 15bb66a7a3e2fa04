#!/usr/bin/env bats
# --device: the CPU/GPU choice of perturb, invert and denoise.  The GPU
# cases themselves are `make test-gpu` (tests/gpu/run.sh); here they are
# skipped with "no GPU" unless one is usable.

load helper

has_gpu() {
  ! mpu perturb --device cuda --key /dev/null --copies 2 --kappa 0 /dev/null 2>&1 | grep -q "no CUDA device"
}

@test "--device cuda without a GPU: exit 2, 'no CUDA device'; auto and cpu give the same bytes" {
  has_gpu && skip "a GPU is usable here (make test-gpu checks it)"
  round_setup
  for prog in "perturb --copies 2 --kappa 0.01" "invert --onto model.mpuc" "denoise --onto model.mpuc"; do
    run mpu $prog --device cuda --key server.key model.mpuc
    assert_failure 2
    assert_output --partial "no CUDA device"
  done
  mpu perturb --device auto --key server.key --copies 2 --kappa 0.01 model.mpuc > auto.mpuc
  mpu perturb --device cpu --key server.key --copies 2 --kappa 0.01 model.mpuc > cpu.mpuc
  cmp auto.mpuc cpu.mpuc
  mpu invert --device auto --key server.key --onto model.mpuc cpu.mpuc > u-auto.mpuc
  mpu invert --device cpu --key server.key --onto model.mpuc cpu.mpuc > u-cpu.mpuc
  cmp u-auto.mpuc u-cpu.mpuc
  mpu denoise --device auto --key server.key --onto model.mpuc u-auto.mpuc > n-auto.mpuc
  mpu denoise --key server.key --onto model.mpuc u-cpu.mpuc > n-cpu.mpuc
  cmp n-auto.mpuc n-cpu.mpuc
  run mpu perturb --device gpu --key server.key --copies 2 --kappa 0 model.mpuc
  assert_failure 2
  assert_output --partial "not auto, cpu or cuda"
}

@test "GPU: perturb, invert and denoise give the CPU's bytes" {
  has_gpu || skip "no GPU (make test-gpu runs the GPU checks where there is one)"
  round_setup
  mpu perturb --device cpu --key server.key --copies 2 --kappa 0.01 model.mpuc > cpu.mpuc
  mpu perturb --device cuda --key server.key --copies 2 --kappa 0.01 model.mpuc > gpu.mpuc
  cmp cpu.mpuc gpu.mpuc
  mpu invert --device cpu --key server.key --onto model.mpuc cpu.mpuc > u-cpu.mpuc
  MPU_GPU_MEM=256K mpu invert --device cuda --key server.key --onto model.mpuc cpu.mpuc > u-gpu.mpuc
  cmp u-cpu.mpuc u-gpu.mpuc
  mpu denoise --device cpu --key server.key --onto model.mpuc u-cpu.mpuc > n-cpu.mpuc
  MPU_GPU_MEM=256K mpu denoise --device cuda --key server.key --onto model.mpuc u-cpu.mpuc > n-gpu.mpuc
  cmp n-cpu.mpuc n-gpu.mpuc
}

@test "device code of the server stages: only correctly rounded operations (no FMA, approximations or libm)" {
  nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null) || skip "no nvcc"
  # the Makefile's flags; PTX is what ptxas turns into machine code, unfused
  "$nvcc" -std=c++17 -O2 -fmad=false -arch=compute_90 -I"$REPO/format" -I"$REPO/lib" -I"$REPO/kernels" \
    -DMPU_CUDA=1 -D_GNU_SOURCE -ptx "$REPO/kernels/protocol.cu" -o protocol.ptx
  grep -qE '^\s*mul\.rn\.f64' protocol.ptx           # the math is there
  run grep -E '^\s*(fma|mad)\.[a-z]*\.?f(32|64)|\.approx|\.ftz|^\s*(sin|cos|lg2|ex2|rsqrt)\.' protocol.ptx
  assert_failure 1                                   # and nothing but IEEE basic operations
}
