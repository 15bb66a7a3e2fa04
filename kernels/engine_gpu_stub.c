/*
 * engine_gpu_stub.c -- kernels/engine_gpu.h in a build without CUDA: the
 * programs link, and asking for the GPU says why there is none.  A CUDA
 * CUDA build compiles kernels/engine_gpu.cu instead and defines MPU_CUDA=1
 * (the Makefile passes -DMPU_CUDA=0 or 1), which empties this file.
 */
#include "engine_gpu.h"

#if !MPU_CUDA

static int no_cuda(mpu_err *e) {
  return mpu_fail(e, MPU_EUSAGE, "no CUDA device (this mpu was built without CUDA); use --device cpu");
}

int egpu_probe(mpu_err *e) { return no_cuda(e); }
int egpu_open(egpu **g, const egpu_model *d, const float *params, int math, mpu_err *e) {
  (void)d, (void)params, (void)math;
  *g = NULL;
  return no_cuda(e);
}
void egpu_close(egpu *g) { (void)g; }
int egpu_plan(egpu *g, size_t B, size_t T, const float *cos, const float *sin, mpu_err *e) {
  (void)g, (void)B, (void)T, (void)cos, (void)sin;
  return no_cuda(e);
}
int egpu_forward(egpu *g, const int32_t *ids, const int32_t *targets, size_t B, size_t T, float *nll, float *lse,
                 mpu_err *e) {
  (void)g, (void)ids, (void)targets, (void)B, (void)T, (void)nll, (void)lse;
  return no_cuda(e);
}
int egpu_get_logits(egpu *g, float *logits, mpu_err *e) {
  (void)g, (void)logits;
  return no_cuda(e);
}
int egpu_backward(egpu *g, const float *w, const float *dlogits, mpu_err *e) {
  (void)g, (void)w, (void)dlogits;
  return no_cuda(e);
}
int egpu_zero_grad(egpu *g, mpu_err *e) {
  (void)g;
  return no_cuda(e);
}
int egpu_get_grads(egpu *g, float *grads, mpu_err *e) {
  (void)g, (void)grads;
  return no_cuda(e);
}
int egpu_get_params(egpu *g, float *params, mpu_err *e) {
  (void)g, (void)params;
  return no_cuda(e);
}
int egpu_grad_norm(egpu *g, const uint8_t *skip, double *norm, mpu_err *e) {
  (void)g, (void)skip;
  *norm = 0;
  return no_cuda(e);
}
int egpu_step(egpu *g, const egpu_step_args *a, mpu_err *e) {
  (void)g, (void)a;
  return no_cuda(e);
}
int egpu_decode_init(egpu *g, size_t max_len, const float *cos, const float *sin, mpu_err *e) {
  (void)g, (void)max_len, (void)cos, (void)sin;
  return no_cuda(e);
}
int egpu_decode_step(egpu *g, int32_t token, size_t pos, float *logits, mpu_err *e) {
  (void)g, (void)token, (void)pos, (void)logits;
  return no_cuda(e);
}
size_t egpu_bytes(const egpu *g) {
  (void)g;
  return 0;
}

#else
typedef int engine_gpu_stub_unused; /* ISO C wants something in a file */
#endif
