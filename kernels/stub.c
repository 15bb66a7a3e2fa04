/*
 * stub.c -- the GPU interface in a build without CUDA (make CUDA=0, or no
 * nvcc): there is never a device, so gpu_open gives the CPU for --device
 * auto and a clear error for --device cuda, and nothing else is reached.
 * In a CUDA build (MPU_CUDA=1) kernels/protocol.cu defines these instead.
 */
#include <stdio.h>

#include "gpu.h"

#if !MPU_CUDA
int gpu_count(char *why, size_t n) {
  snprintf(why, n, "this mpu was built without CUDA; rebuild with nvcc present or make CUDA=1");
  return 0;
}
int gpu_create(gpu_ctx **g, size_t cap, mpu_err *e) {
  (void)cap;
  *g = NULL;
  return mpu_fail(e, MPU_EUSAGE, "no CUDA device: built without CUDA");
}
void gpu_close(gpu_ctx *g) { (void)g; }
const char *gpu_name(const gpu_ctx *g) { return (void)g, "none"; }
int gpu_perturb(gpu_ctx *g, const stage_job *j, const float *theta, float *const *ret, float **pub, float **delta,
                mpu_err *e) {
  (void)g, (void)j, (void)theta, (void)ret, (void)pub, (void)delta;
  return mpu_fail(e, MPU_EUSAGE, "no CUDA device: built without CUDA");
}
int gpu_aggregate(gpu_ctx *g, const float *theta, const float *delta, size_t n, const double *w, int M, double eta,
                  float *out, mpu_err *e) {
  (void)g, (void)theta, (void)delta, (void)n, (void)w, (void)M, (void)eta, (void)out;
  return mpu_fail(e, MPU_EUSAGE, "no CUDA device: built without CUDA");
}
double gpu_copy_rate(gpu_ctx *g, size_t bytes, mpu_err *e) {
  (void)g, (void)bytes;
  mpu_fail(e, MPU_EUSAGE, "no CUDA device: built without CUDA");
  return 0;
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int mpu_stub_unused;
#endif
