/*
 * gpu.h -- the C interface of the CUDA kernels (the .cu files here), callable from
 * lib/ and bin/ whether or not the build has CUDA: without it (make CUDA=0,
 * or no nvcc) kernels/stub.c answers "no CUDA device" and the programs run
 * on the CPU.  Every function gives the same bits as the CPU path
 * (kernels/stage.h, spec/protocol.md "Reproducibility").
 */
#ifndef MPU_KERNELS_GPU_H
#define MPU_KERNELS_GPU_H

#include <stddef.h>

#include "err.h"
#include "stage.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --device: where the server stages compute. */
enum { GPU_DEVICE_AUTO = 0, GPU_DEVICE_CPU = 1, GPU_DEVICE_CUDA = 2 };
/* "auto", "cpu" or "cuda" -> GPU_DEVICE_*; -1 for anything else. */
int gpu_parse_device(const char *s);

typedef struct gpu_ctx gpu_ctx;

/* Usable CUDA devices (0 without CUDA, a driver or a device); when 0, why
 * says why in a few words. */
int gpu_count(char *why, size_t n);
/* The device for a --device mode: *g NULL for the CPU (cpu, or auto without
 * a usable GPU); cuda without one fails with status 2 ("no CUDA device").
 * MPU_GPU_MEM (bytes, K/M/G suffixes) caps the device memory the kernels
 * take, so a model larger than the cap streams through in chunks. */
int gpu_open(int mode, gpu_ctx **g, mpu_err *e);
void gpu_close(gpu_ctx *g);
/* gpu_open's work once a device is known to exist: the context on device
 * 0 with at most cap bytes of device memory (0: as much as fits). */
int gpu_create(gpu_ctx **g, size_t cap, mpu_err *e);
/* The device's name, for notes ("NVIDIA H200"). */
const char *gpu_name(const gpu_ctx *g);

/* perturb (ret NULL): pub[k] = the published copy k of theta, as
 * perturb_tensor; invert (ret given): also delta[k] = T_k^-1(ret[k] - pub[k]).
 * Host arrays of j->n floats each. */
int gpu_perturb(gpu_ctx *g, const stage_job *j, const float *theta, float *const *ret, float **pub, float **delta,
                mpu_err *e);
/* denoise: out[i] = aggregate(theta[i], delta + i, n, w, M, eta) (lib/reparam.h). */
int gpu_aggregate(gpu_ctx *g, const float *theta, const float *delta, size_t n, const double *w, int M, double eta,
                  float *out, mpu_err *e);

/* Bytes per second of a plain pinned host -> device -> host round trip of
 * `bytes` (the bench's yardstick); 0 on error. */
double gpu_copy_rate(gpu_ctx *g, size_t bytes, mpu_err *e);

#ifdef __cplusplus
}
#endif

#endif
