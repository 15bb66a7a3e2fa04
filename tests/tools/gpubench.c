/*
 * gpubench -- the yardstick of bench/gpu/run.sh: how fast a plain pinned
 * host -> device -> host copy of N bytes runs on this machine's GPU.
 *
 *   gpubench copy BYTES    prints bytes per second; exit 2 without a GPU
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gpu.h"

int main(int argc, char **argv) {
  cli_init("gpubench", argc, argv);
  if (argc != 3 || strcmp(argv[1], "copy")) return cli_usage_error("usage: gpubench copy BYTES");
  int64_t n = cli_parse_size(argv[2]);
  if (n <= 0) return cli_usage_error("'%s' is not a size", argv[2]);
  mpu_err e = {0};
  gpu_ctx *g = NULL;
  if (gpu_open(GPU_DEVICE_CUDA, &g, &e)) return cli_report(&e);
  double r = gpu_copy_rate(g, (size_t)n, &e);
  gpu_close(g);
  if (r <= 0) return cli_report(&e);
  printf("%.0f\n", r);
  return 0;
}
