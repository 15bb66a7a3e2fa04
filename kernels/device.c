/*
 * device.c -- choosing where the server stages compute (--device), the same
 * in builds with and without CUDA.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gpu.h"

int gpu_parse_device(const char *s) {
  return !strcmp(s, "auto") ? GPU_DEVICE_AUTO : !strcmp(s, "cpu") ? GPU_DEVICE_CPU : !strcmp(s, "cuda") ? GPU_DEVICE_CUDA : -1;
}

int gpu_open(int mode, gpu_ctx **g, mpu_err *e) {
  *g = NULL;
  if (mode == GPU_DEVICE_CPU) return 0;
  char why[200] = "";
  int n = gpu_count(why, sizeof why);
  if (n <= 0) {
    if (mode == GPU_DEVICE_AUTO) return 0;
    return mpu_fail(e, MPU_EUSAGE, "--device cuda: no CUDA device (%s); use --device cpu or auto", why);
  }
  size_t cap = 0;
  const char *m = getenv("MPU_GPU_MEM");
  if (m && *m) {
    int64_t v = cli_parse_size(m);
    if (v <= 0) return mpu_fail(e, MPU_EUSAGE, "MPU_GPU_MEM: '%s' is not a size", m);
    cap = (size_t)v;
  }
  return gpu_create(g, cap, e);
}
