/*
 * protocol.cu -- perturb, invert and denoise on a CUDA device, one tensor at
 * a time, streamed through in chunks: the host stages chunk i+1 into one
 * pinned buffer while the device copies in, computes and copies out chunk i
 * on the other buffer's stream (double buffering), so the device never
 * holds more than two chunks and a model of any size passes through.
 *
 * All the math is kernels/stage.h's thread bodies over lib/reparam.h, built
 * with -fmad=false: the bytes equal the CPU's (spec/protocol.md,
 * "Reproducibility").  This file only moves memory and launches.
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "err.h"
}
#include "gpu.h"

#define SLOT_MAX_BYTES ((size_t)1 << 30) /* device bytes per buffer: enough to saturate PCIe */
#define THREADS 256

struct gpu_slot {
  cudaStream_t stream;
  char *dev;             /* device buffer */
  float *hin, *hout;     /* pinned host buffers */
  size_t dev_bytes, hin_bytes, hout_bytes;
  int busy;              /* a chunk is in flight */
  size_t e0, e1;         /* its element range */
};

struct gpu_ctx {
  int dev;
  char name[256];
  size_t cap;            /* device bytes the context may use */
  struct gpu_slot slot[2];
  char *tab;             /* device copy of the job's tables */
  size_t tab_bytes;
};

#define CU(call)                                                                                          \
  do {                                                                                                    \
    cudaError_t err_ = (call);                                                                            \
    if (err_ != cudaSuccess) return mpu_fail(e, MPU_EUSAGE, "CUDA: %s: %s", #call, cudaGetErrorString(err_)); \
  } while (0)

/* ---------------------------------------------------------------- kernels */
__global__ void k_noise(stage_job j, stage_tables tb, size_t e0, size_t e1, size_t cap, const float *theta, float *X) {
  size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  stage_noise(&j, tb, e0, e1, cap, theta, X, t);
}

/* blockIdx.y is the copy */
__global__ void k_publish(stage_job j, stage_tables tb, size_t e0, size_t items, size_t cap, const float *X, float *O,
                          const float *R, float *Dl) {
  size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  int k = blockIdx.y;
  size_t off = (size_t)k * cap;
  if (t < items) stage_publish(&j, tb, k, e0, X + off, O + off, R ? R + off : NULL, R ? Dl + off : NULL, t);
}

__global__ void k_aggregate(const float *theta, const float *D, size_t cap, const double *w, int M, double eta,
                            float *out, size_t n) {
  size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t < n) stage_aggregate(theta, D, cap, w, M, eta, out, t);
}

static unsigned blocks_for(size_t n) { return (unsigned)((n + THREADS - 1) / THREADS); }

/* ---------------------------------------------------------------- devices */
extern "C" int gpu_count(char *why, size_t n) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    snprintf(why, n, "%s", cudaGetErrorString(err));
    cudaGetLastError(); /* clear it */
    return 0;
  }
  if (count == 0) snprintf(why, n, "the CUDA runtime sees none");
  return count;
}

extern "C" int gpu_create(gpu_ctx **out, size_t cap, mpu_err *e) {
  *out = NULL;
  gpu_ctx *g = (gpu_ctx *)calloc(1, sizeof *g);
  if (!g) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  *out = g; /* gpu_close frees what was made, even on failure */
  CU(cudaSetDevice(0));
  cudaDeviceProp prop;
  CU(cudaGetDeviceProperties(&prop, 0));
  snprintf(g->name, sizeof g->name, "%s", prop.name);
  size_t free_b = 0, total_b = 0;
  CU(cudaMemGetInfo(&free_b, &total_b));
  g->cap = cap ? cap : free_b / 10 * 8;
  if (g->cap > free_b) g->cap = free_b;
  for (int s = 0; s < 2; s++) CU(cudaStreamCreateWithFlags(&g->slot[s].stream, cudaStreamNonBlocking));
  return 0;
}

extern "C" void gpu_close(gpu_ctx *g) {
  if (!g) return;
  for (int s = 0; s < 2; s++) {
    struct gpu_slot *S = &g->slot[s];
    if (S->stream) cudaStreamSynchronize(S->stream), cudaStreamDestroy(S->stream);
    cudaFree(S->dev);
    cudaFreeHost(S->hin);
    cudaFreeHost(S->hout);
  }
  cudaFree(g->tab);
  free(g);
}

extern "C" const char *gpu_name(const gpu_ctx *g) { return g ? g->name : "none"; }

/* Buffers of each slot at least this large (grown, never shrunk). */
static int slots_reserve(gpu_ctx *g, size_t dev, size_t hin, size_t hout, mpu_err *e) {
  for (int s = 0; s < 2; s++) {
    struct gpu_slot *S = &g->slot[s];
    CU(cudaStreamSynchronize(S->stream));
    S->busy = 0; /* whatever an earlier failed call left in flight is dropped */
    if (S->dev_bytes < dev) {
      CU(cudaFree(S->dev));
      S->dev = NULL, S->dev_bytes = 0;
      CU(cudaMalloc((void **)&S->dev, dev));
      S->dev_bytes = dev;
    }
    if (S->hin_bytes < hin) {
      CU(cudaFreeHost(S->hin));
      S->hin = NULL, S->hin_bytes = 0;
      CU(cudaHostAlloc((void **)&S->hin, hin, cudaHostAllocDefault));
      S->hin_bytes = hin;
    }
    if (S->hout_bytes < hout) {
      CU(cudaFreeHost(S->hout));
      S->hout = NULL, S->hout_bytes = 0;
      CU(cudaHostAlloc((void **)&S->hout, hout, cudaHostAllocDefault));
      S->hout_bytes = hout;
    }
  }
  return 0;
}

/* Copies host tables to the device table area: n pieces of (src, bytes);
 * each piece's device address comes back in dst[i] (256-byte aligned). */
static int tables_upload(gpu_ctx *g, int n, const void *const *src, const size_t *bytes, void **dst, mpu_err *e) {
  size_t total = 0;
  for (int i = 0; i < n; i++) total += (bytes[i] + 255) / 256 * 256;
  if (total > g->tab_bytes) {
    CU(cudaFree(g->tab));
    g->tab = NULL, g->tab_bytes = 0;
    CU(cudaMalloc((void **)&g->tab, total ? total : 256));
    g->tab_bytes = total;
  }
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    dst[i] = src[i] ? g->tab + off : NULL;
    if (src[i] && bytes[i]) CU(cudaMemcpy(dst[i], src[i], bytes[i], cudaMemcpyHostToDevice));
    off += (bytes[i] + 255) / 256 * 256;
  }
  /* the slots' streams do not wait for the default stream: make sure the
   * tables have landed before a kernel reads them */
  CU(cudaDeviceSynchronize());
  return 0;
}

/* Elements per chunk: two slots of at most SLOT_MAX_BYTES each within the cap. */
static size_t slot_budget(const gpu_ctx *g, size_t per_elem) {
  size_t room = g->cap > g->tab_bytes ? (g->cap - g->tab_bytes) / 2 : 0;
  if (room > SLOT_MAX_BYTES) room = SLOT_MAX_BYTES;
  return room / per_elem;
}

/* ---------------------------------------------------------------- perturb and invert */
/* Copies a finished chunk out of its slot's pinned buffer into the caller's arrays. */
static void perturb_drain(const stage_job *j, struct gpu_slot *S, size_t cap, float **pub, float **delta) {
  size_t e = S->e1 - S->e0;
  for (int k = 0; k < j->M; k++) {
    stage_rows_out(j, k, S->e0, S->e1, S->hout + (size_t)k * cap, pub[k]);
    if (delta) memcpy(delta[k] + S->e0, S->hout + (size_t)(j->M + k) * cap, e * sizeof(float));
  }
  S->busy = 0;
}

extern "C" int gpu_perturb(gpu_ctx *g, const stage_job *j, const float *theta, float *const *ret, float **pub,
                           float **delta, mpu_err *e) {
  size_t M = (size_t)j->M, inv = ret ? 1 : 0;
  /* the tables first: their size counts against the cap */
  const void *src[5] = {j->keys, j->alpha, j->cs, j->sn, j->perm};
  size_t bytes[5] = {M * 2 * sizeof(uint32_t), M * sizeof(float), j->cs ? M * j->nangles * sizeof(float) : 0,
                     j->sn ? M * j->nangles * sizeof(float) : 0, j->perm ? M * j->nperm * sizeof(uint32_t) : 0};
  void *dst[5];
  if (tables_upload(g, 5, src, bytes, dst, e)) return e->status;
  stage_tables tb = {(const uint32_t(*)[2])dst[0], (const float *)dst[1], (const float *)dst[2], (const float *)dst[3],
                     (const uint32_t *)dst[4]};
  /* device floats per element: theta, x_k, pub_k (+ ret_k, delta_k) */
  size_t per_dev = (1 + 2 * M + 2 * M * inv) * sizeof(float);
  size_t cap = stage_chunk(&j->L, j->n, slot_budget(g, per_dev));
  if (!cap)
    return mpu_fail(e, MPU_EUSAGE, "GPU memory cap of %zu bytes is too small for one chunk of %zu elements (%zu copies); "
                    "raise MPU_GPU_MEM", g->cap, stage_unit(&j->L), M);
  if (slots_reserve(g, per_dev * cap, (1 + M * inv) * cap * sizeof(float), (M + M * inv) * cap * sizeof(float), e))
    return e->status;
  size_t i = 0;
  for (size_t e0 = 0; e0 < j->n; e0 += cap, i++) {
    struct gpu_slot *S = &g->slot[i & 1];
    if (S->busy) {
      CU(cudaStreamSynchronize(S->stream));
      perturb_drain(j, S, cap, pub, delta);
    }
    size_t e1 = e0 + cap < j->n ? e0 + cap : j->n, n = e1 - e0;
    float *d_theta = (float *)S->dev, *X = d_theta + cap, *O = X + M * cap;
    float *R = inv ? O + M * cap : NULL, *Dl = inv ? R + M * cap : NULL;
    memcpy(S->hin, theta + e0, n * sizeof(float));
    CU(cudaMemcpyAsync(d_theta, S->hin, n * sizeof(float), cudaMemcpyHostToDevice, S->stream));
    for (size_t k = 0; inv && k < M; k++) {
      float *h = S->hin + (1 + k) * cap;
      stage_rows_in(j, (int)k, e0, e1, ret[k], h);
      CU(cudaMemcpyAsync(R + k * cap, h, n * sizeof(float), cudaMemcpyHostToDevice, S->stream));
    }
    size_t nb = (n + 3) / 4, items = stage_items(&j->L, n);
    k_noise<<<blocks_for(nb), THREADS, 0, S->stream>>>(*j, tb, e0, e1, cap, d_theta, X);
    k_publish<<<dim3(blocks_for(items), (unsigned)M), THREADS, 0, S->stream>>>(*j, tb, e0, items, cap, X, O, R, Dl);
    CU(cudaGetLastError());
    for (size_t k = 0; k < M; k++) {
      CU(cudaMemcpyAsync(S->hout + k * cap, O + k * cap, n * sizeof(float), cudaMemcpyDeviceToHost, S->stream));
      if (inv)
        CU(cudaMemcpyAsync(S->hout + (M + k) * cap, Dl + k * cap, n * sizeof(float), cudaMemcpyDeviceToHost, S->stream));
    }
    S->busy = 1, S->e0 = e0, S->e1 = e1;
  }
  /* the last two chunks, oldest first */
  for (size_t q = i >= 2 ? i - 2 : 0; q < i; q++) {
    struct gpu_slot *S = &g->slot[q & 1];
    if (!S->busy) continue;
    CU(cudaStreamSynchronize(S->stream));
    perturb_drain(j, S, cap, pub, delta);
  }
  return 0;
}

/* ---------------------------------------------------------------- denoise */
extern "C" int gpu_aggregate(gpu_ctx *g, const float *theta, const float *delta, size_t n, const double *w, int M,
                             double eta, float *out, mpu_err *e) {
  const void *src[1] = {w};
  size_t bytes[1] = {(size_t)M * sizeof(double)};
  void *dst[1];
  if (tables_upload(g, 1, src, bytes, dst, e)) return e->status;
  size_t per_dev = (size_t)(2 + M) * sizeof(float), cap = slot_budget(g, per_dev);
  if (cap > n) cap = n;
  if (!cap) return mpu_fail(e, MPU_EUSAGE, "GPU memory cap of %zu bytes is too small; raise MPU_GPU_MEM", g->cap);
  if (slots_reserve(g, per_dev * cap, (size_t)(1 + M) * cap * sizeof(float), cap * sizeof(float), e)) return e->status;
  size_t i = 0;
  for (size_t e0 = 0; e0 < n; e0 += cap, i++) {
    struct gpu_slot *S = &g->slot[i & 1];
    if (S->busy) {
      CU(cudaStreamSynchronize(S->stream));
      memcpy(out + S->e0, S->hout, (S->e1 - S->e0) * sizeof(float));
      S->busy = 0;
    }
    size_t e1 = e0 + cap < n ? e0 + cap : n, m = e1 - e0;
    float *d_theta = (float *)S->dev, *D = d_theta + cap, *d_out = D + (size_t)M * cap;
    memcpy(S->hin, theta + e0, m * sizeof(float));
    CU(cudaMemcpyAsync(d_theta, S->hin, m * sizeof(float), cudaMemcpyHostToDevice, S->stream));
    for (int k = 0; k < M; k++) {
      float *h = S->hin + (size_t)(1 + k) * cap;
      memcpy(h, delta + (size_t)k * n + e0, m * sizeof(float));
      CU(cudaMemcpyAsync(D + (size_t)k * cap, h, m * sizeof(float), cudaMemcpyHostToDevice, S->stream));
    }
    k_aggregate<<<blocks_for(m), THREADS, 0, S->stream>>>(d_theta, D, cap, (const double *)dst[0], M, eta, d_out, m);
    CU(cudaGetLastError());
    CU(cudaMemcpyAsync(S->hout, d_out, m * sizeof(float), cudaMemcpyDeviceToHost, S->stream));
    S->busy = 1, S->e0 = e0, S->e1 = e1;
  }
  for (size_t q = i >= 2 ? i - 2 : 0; q < i; q++) {
    struct gpu_slot *S = &g->slot[q & 1];
    if (!S->busy) continue;
    CU(cudaStreamSynchronize(S->stream));
    memcpy(out + S->e0, S->hout, (S->e1 - S->e0) * sizeof(float));
    S->busy = 0;
  }
  return 0;
}

/* ---------------------------------------------------------------- the yardstick */
extern "C" double gpu_copy_rate(gpu_ctx *g, size_t bytes, mpu_err *e) {
  float *h = NULL, *d = NULL;
  cudaEvent_t a, b;
  float ms = 0;
  cudaError_t err = cudaHostAlloc((void **)&h, bytes, cudaHostAllocDefault);
  if (err == cudaSuccess) err = cudaMalloc((void **)&d, bytes);
  if (err == cudaSuccess) err = cudaEventCreate(&a);
  if (err == cudaSuccess) err = cudaEventCreate(&b);
  if (err == cudaSuccess) {
    memset(h, 1, bytes);
    cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice); /* warm up */
    cudaEventRecord(a, g->slot[0].stream);
    cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, g->slot[0].stream);
    cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, g->slot[0].stream);
    cudaEventRecord(b, g->slot[0].stream);
    err = cudaEventSynchronize(b);
    if (err == cudaSuccess) err = cudaEventElapsedTime(&ms, a, b);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  cudaFree(d);
  cudaFreeHost(h);
  if (err != cudaSuccess) {
    mpu_fail(e, MPU_EUSAGE, "CUDA: copy rate: %s", cudaGetErrorString(err));
    return 0;
  }
  return ms > 0 ? (double)bytes / (ms / 1000.0) : 0;
}
