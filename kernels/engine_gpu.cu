/*
 * engine_gpu.cu -- the Llama-family engine on the GPU (see engine_gpu.h).
 *
 * The same layers, in the same order and with the same formulas, as
 * lib/ops.c and lib/model.c: read those first; this file mirrors them.
 * Matrix products go to cuBLAS (row-major products written as the
 * column-major product of the transposes); everything else is a small kernel
 * per layer and direction.  Reductions that the CPU does in double (RMSNorm
 * statistics, softmax sums, the gradient norm) are done in double here too,
 * as fixed trees: run to run the results are the same bits.  Column sums
 * (bias, norm weight and embedding gradients) go one thread per column over
 * the rows in order, the CPU's order, with no atomics.
 *
 * Build with -fmad=false so that no multiply-add is contracted: the
 * elementwise kernels (SwiGLU, RoPE, AdamW) then round as the CPU's do.
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine_gpu.h"
#include "engine_gpu_plan.h"

#define THREADS 256
#define NORM_BLOCK 8192 /* lib/optim.c's block of the gradient norm */

struct egpu {
  egpu_model d;
  egpu_layer *layer; /* owned copies of d.layer and d.tensor_offset */
  size_t *toff;
  int math;
  cublasHandle_t h;
  cublasStatus_t blas_err; /* the first failed cuBLAS call since the last check */
  float *params, *grads, *m, *v;
  float *acts;
  egpu_plan_t p;
  size_t maxB, maxT, B, T;
  int32_t *ids, *targets;
  double *part, *part_host;
  size_t part_n;
  /* decoding */
  float *dec;
  size_t dec_len;
  size_t bytes;
};

/* ---------------------------------------------------------------- errors */
static int cuda_fail(mpu_err *e, cudaError_t err, const char *what) {
  return mpu_fail(e, MPU_EUSAGE, "CUDA: %s: %s", what, cudaGetErrorString(err));
}
#define CU(call, what)                                   \
  do {                                                   \
    cudaError_t err_ = (call);                           \
    if (err_ != cudaSuccess) return cuda_fail(e, err_, what); \
  } while (0)

/* Kernel launch errors and cuBLAS failures since the last check. */
static int check(egpu *g, const char *what, mpu_err *e) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return cuda_fail(e, err, what);
  if (g->blas_err != CUBLAS_STATUS_SUCCESS) {
    cublasStatus_t s = g->blas_err;
    g->blas_err = CUBLAS_STATUS_SUCCESS;
    return mpu_fail(e, MPU_EUSAGE, "cuBLAS: %s: %s", what, cublasGetStatusString(s));
  }
  return 0;
}

static int dev_alloc(egpu *g, void **p, size_t bytes, const char *what, mpu_err *e) {
  cudaError_t err = cudaMalloc(p, bytes ? bytes : 1);
  if (err != cudaSuccess)
    return mpu_fail(e, MPU_EUSAGE, "CUDA: out of device memory for %s (%.2f GB): %s", what, bytes * 1e-9,
                    cudaGetErrorString(err));
  g->bytes += bytes;
  return 0;
}

static unsigned blocks(size_t n) { return (unsigned)((n + THREADS - 1) / THREADS); }

/* ---------------------------------------------------------------- reductions */
/* Tree reductions over one block of THREADS threads, in a fixed order (the
 * same pairs combine on every run, so the result's bits do not vary). */
template <typename T, typename Combine>
__device__ T block_reduce(T v, T *sh, Combine combine) {
  int t = threadIdx.x;
  sh[t] = v;
  __syncthreads();
  for (int s = THREADS / 2; s > 0; s >>= 1) {
    if (t < s) sh[t] = combine(sh[t], sh[t + s]);
    __syncthreads();
  }
  T r = sh[0];
  __syncthreads();
  return r;
}

struct add_op {
  template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct max_op {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

__device__ double block_sum(double v, double *sh) { return block_reduce(v, sh, add_op()); }
__device__ float block_sumf(float v, float *sh) { return block_reduce(v, sh, add_op()); }
__device__ float block_max(float v, float *sh) { return block_reduce(v, sh, max_op()); }

/* ---------------------------------------------------------------- kernels */
__global__ void embed_fwd(float *out, const int32_t *ids, const float *embed, size_t N, size_t H) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < N * H) out[i] = embed[(size_t)ids[i / H] * H + i % H];
}

/* One thread per column, rows in position order (a token may repeat). */
__global__ void embed_bwd(float *dembed, const float *dout, const int32_t *ids, size_t N, size_t H) {
  size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= H) return;
  for (size_t n = 0; n < N; n++) dembed[(size_t)ids[n] * H + c] += dout[n * H + c];
}

__global__ void rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, size_t H, float eps) {
  __shared__ double sh[THREADS];
  size_t n = blockIdx.x;
  const float *xn = x + n * H;
  double ss = 0;
  for (size_t c = threadIdx.x; c < H; c += THREADS) ss += (double)xn[c] * xn[c];
  ss = block_sum(ss, sh);
  float r = (float)(1.0 / sqrt(ss / (double)H + (double)eps));
  if (threadIdx.x == 0) rstd[n] = r;
  for (size_t c = threadIdx.x; c < H; c += THREADS) out[n * H + c] = w[c] * (xn[c] * r);
}

__global__ void rmsnorm_bwd_dx(float *dx, const float *dout, const float *x, const float *w, const float *rstd,
                               size_t H) {
  __shared__ double sh[THREADS];
  size_t n = blockIdx.x;
  const float *xn = x + n * H, *g = dout + n * H;
  float r = rstd[n];
  double m = 0;
  for (size_t c = threadIdx.x; c < H; c += THREADS) m += (double)(w[c] * g[c]) * (xn[c] * r);
  m = block_sum(m, sh);
  float mean = (float)(m / (double)H);
  for (size_t c = threadIdx.x; c < H; c += THREADS) dx[n * H + c] += r * (w[c] * g[c] - (xn[c] * r) * mean);
}

__global__ void rmsnorm_bwd_dw(float *dw, const float *dout, const float *x, const float *rstd, size_t N, size_t H) {
  size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= H) return;
  float acc = dw[c];
  for (size_t n = 0; n < N; n++) acc += dout[n * H + c] * (x[n * H + c] * rstd[n]);
  dw[c] = acc;
}

__global__ void bias_add(float *out, const float *b, size_t N, size_t OUT) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < N * OUT) out[i] += b[i % OUT];
}

__global__ void bias_bwd(float *db, const float *dout, size_t N, size_t OUT) {
  size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= OUT) return;
  float acc = db[o];
  for (size_t n = 0; n < N; n++) acc += dout[n * OUT + o];
  db[o] = acc;
}

/* ops.c's rope_apply: one thread per (position, head, pair). */
__global__ void rope_k(float *x, const float *cosv, const float *sinv, size_t NT, size_t T, size_t heads, size_t D,
                       float sign) {
  size_t half = D / 2, i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= NT * heads * half) return;
  size_t k = i % half, h = (i / half) % heads, bt = i / (half * heads), t = bt % T;
  float *v = x + bt * heads * D + h * D;
  float c = cosv[t * half + k], sn = sign * sinv[t * half + k];
  float x1 = v[k], x2 = v[k + half];
  v[k] = x1 * c - x2 * sn;
  v[k + half] = x2 * c + x1 * sn;
}

/* Keys/values [N, Hkv*D] repeated to [N, Hq*D] (query head h reads kv head h/rep). */
__global__ void repkv_fwd(float *out, const float *in, size_t N, size_t Hq, size_t rep, size_t D) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N * Hq * D) return;
  size_t d = i % D, h = (i / D) % Hq, n = i / (D * Hq);
  out[i] = in[n * (Hq / rep) * D + (h / rep) * D + d];
}

/* The sum over a group's query heads, in head order (the CPU's order). */
__global__ void repkv_bwd(float *din, const float *dout, size_t N, size_t Hkv, size_t rep, size_t D) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N * Hkv * D) return;
  size_t d = i % D, gh = (i / D) % Hkv, n = i / (D * Hkv);
  const float *src = dout + n * Hkv * rep * D + gh * rep * D + d;
  float s = 0;
  for (size_t r = 0; r < rep; r++) s += src[r * D];
  din[i] = s;
}

/* One block per row (b, h, i) of the scores: scale, causal (and sliding
 * window) mask, softmax; zeros outside the window. */
__global__ void softmax_fwd(float *att, size_t T, size_t window, float scale) {
  __shared__ double sh[THREADS];
  __shared__ float shf[THREADS];
  size_t row = blockIdx.x, i = row % T;
  float *a = att + row * T;
  size_t j0 = window && i + 1 > window ? i + 1 - window : 0;
  float mx = -INFINITY;
  for (size_t j = j0 + threadIdx.x; j <= i; j += THREADS) {
    a[j] = a[j] * scale;
    mx = fmaxf(mx, a[j]);
  }
  mx = block_max(mx, shf);
  double sum = 0;
  for (size_t j = j0 + threadIdx.x; j <= i; j += THREADS) {
    a[j] = expf(a[j] - mx);
    sum += a[j];
  }
  sum = block_sum(sum, sh);
  float inv = (float)(1.0 / sum);
  for (size_t j = threadIdx.x; j < T; j += THREADS) a[j] = j >= j0 && j <= i ? a[j] * inv : 0.0f;
}

/* dS = A (dA - rowsum(A dA)) scale, in place on dA. */
__global__ void softmax_bwd(float *ds, const float *att, size_t T, float scale) {
  __shared__ float shf[THREADS];
  size_t row = blockIdx.x, i = row % T;
  const float *a = att + row * T;
  float *d = ds + row * T;
  float s = 0;
  for (size_t j = threadIdx.x; j <= i; j += THREADS) s += a[j] * d[j];
  s = block_sumf(s, shf);
  for (size_t j = threadIdx.x; j < T; j += THREADS) d[j] = j <= i && a[j] != 0.0f ? a[j] * (d[j] - s) * scale : 0.0f;
}

__global__ void swiglu_fwd(float *out, const float *gate, const float *up, size_t N) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N) return;
  float g = gate[i];
  out[i] = g / (1.0f + expf(-g)) * up[i];
}

__global__ void swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t N) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N) return;
  float g = gate[i], s = 1.0f / (1.0f + expf(-g)), silu = g * s;
  dup[i] = dout[i] * silu;
  dgate[i] = dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
}

__global__ void add_k(float *out, const float *x, size_t N) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < N) out[i] += x[i];
}

/* One block per position: log-sum-exp (sum in double) and the NLL. */
__global__ void ce_fwd(float *nll, float *lse, const float *logits, const int32_t *target, size_t V) {
  __shared__ double sh[THREADS];
  __shared__ float shf[THREADS];
  size_t n = blockIdx.x;
  const float *l = logits + n * V;
  float mx = -INFINITY;
  for (size_t v = threadIdx.x; v < V; v += THREADS) mx = fmaxf(mx, l[v]);
  mx = block_max(mx, shf);
  double s = 0;
  for (size_t v = threadIdx.x; v < V; v += THREADS) s += exp((double)(l[v] - mx));
  s = block_sum(s, sh);
  if (threadIdx.x == 0) {
    float z = mx + (float)log(s);
    lse[n] = z;
    nll[n] = target[n] >= 0 ? z - l[target[n]] : 0.0f;
  }
}

/* In place: w[n] (softmax - onehot), the gradient of sum_n w[n] nll[n]. */
__global__ void ce_bwd(float *logits, const float *lse, const int32_t *target, const float *w, size_t V) {
  size_t n = blockIdx.x;
  float *l = logits + n * V, wn = w[n];
  for (size_t v = threadIdx.x; v < V; v += THREADS) l[v] = wn == 0.0f ? 0.0f : wn * expf(l[v] - lse[n]);
  __syncthreads();
  if (threadIdx.x == 0 && wn != 0.0f && target[n] >= 0) l[target[n]] -= wn;
}

/* Sums of squares of blocks of NORM_BLOCK elements, one block each. */
__global__ void sumsq_blocks(double *part, const float *g, size_t n) {
  __shared__ double sh[THREADS];
  size_t lo = (size_t)blockIdx.x * NORM_BLOCK, hi = lo + NORM_BLOCK < n ? lo + NORM_BLOCK : n;
  double s = 0;
  for (size_t i = lo + threadIdx.x; i < hi; i += THREADS) s += (double)g[i] * g[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

/* torch.optim.AdamW's single-tensor update, in lib/optim.c's order. */
__global__ void adamw_k(float *p, const float *g, float *m, float *v, size_t n, float scale, float decay, float b1,
                        float b2, float eps, float step_size, float bc2_sqrt) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float gi = g[i] * scale;
  float pi = p[i] * decay;
  float mi = m[i] * b1 + (1.0f - b1) * gi;
  float vi = v[i] * b2 + (1.0f - b2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  float denom = sqrtf(vi) / bc2_sqrt + eps;
  p[i] = pi - step_size * (mi / denom);
}

__global__ void sgd_k(float *p, const float *g, size_t n, float lr, float scale, float wd) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] -= lr * (g[i] * scale + wd * p[i]);
}

/* Decoding: one block per query head over the cache, model.c's
 * model_decode_step (dot products in d order, the sum in double). */
__global__ void decode_attention(float *atty, float *scores, const float *q, const float *kc, const float *vc,
                                 size_t pos, size_t j0, size_t Hq, size_t rep, size_t D, size_t KV, size_t maxlen,
                                 float scale) {
  __shared__ double sh[THREADS];
  __shared__ float shf[THREADS];
  size_t h = blockIdx.x, gh = h / rep;
  float *sc = scores + h * maxlen;
  const float *qh = q + h * D;
  float mx = -INFINITY;
  for (size_t j = j0 + threadIdx.x; j <= pos; j += THREADS) {
    const float *kj = kc + j * KV + gh * D;
    float s = 0;
    for (size_t d = 0; d < D; d++) s += qh[d] * kj[d];
    sc[j] = s * scale;
    mx = fmaxf(mx, sc[j]);
  }
  mx = block_max(mx, shf);
  double sum = 0;
  for (size_t j = j0 + threadIdx.x; j <= pos; j += THREADS) {
    sc[j] = expf(sc[j] - mx);
    sum += sc[j];
  }
  sum = block_sum(sum, sh);
  __syncthreads();
  for (size_t d = threadIdx.x; d < D; d += THREADS) {
    float y = 0;
    for (size_t j = j0; j <= pos; j++) y += (float)(sc[j] / sum) * vc[j * KV + gh * D + d];
    atty[h * D + d] = y;
  }
}

/* ---------------------------------------------------------------- products */
/* C[M,N] = op(A) op(B) + beta C in row-major terms, batch times with strides
 * sA, sB, sC: the column-major product C^T = op(B)^T op(A)^T. */
static void gemm(egpu *g, int ta, int tb, size_t M, size_t N, size_t K, const float *A, size_t lda, long long sA,
                 const float *B, size_t ldb, long long sB, float beta, float *C, size_t ldc, long long sC, int batch) {
  const float one = 1.0f;
  cublasComputeType_t ct = g->math == EGPU_MATH_TF32   ? CUBLAS_COMPUTE_32F_FAST_TF32
                           : g->math == EGPU_MATH_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                                       : CUBLAS_COMPUTE_32F;
  cublasStatus_t s = cublasGemmStridedBatchedEx(g->h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                                (int)N, (int)M, (int)K, &one, B, CUDA_R_32F, (int)ldb, sB, A,
                                                CUDA_R_32F, (int)lda, sA, &beta, C, CUDA_R_32F, (int)ldc, sC, batch, ct,
                                                CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS && g->blas_err == CUBLAS_STATUS_SUCCESS) g->blas_err = s;
}

/* out[N,OUT] = x[N,IN] W[OUT,IN]^T (+ b) */
static void matmul_fwd(egpu *g, float *out, const float *x, const float *W, const float *b, size_t N, size_t IN,
                       size_t OUT) {
  gemm(g, 0, 1, N, OUT, IN, x, IN, 0, W, IN, 0, 0.0f, out, OUT, 0, 1);
  if (b) bias_add<<<blocks(N * OUT), THREADS>>>(out, b, N, OUT);
}

/* dx += dout W;  dW += dout^T x;  db += column sums of dout */
static void matmul_bwd(egpu *g, float *dx, float *dW, float *db, const float *dout, const float *x, const float *W,
                       size_t N, size_t IN, size_t OUT) {
  if (dx) gemm(g, 0, 0, N, IN, OUT, dout, OUT, 0, W, IN, 0, 1.0f, dx, IN, 0, 1);
  gemm(g, 1, 0, OUT, IN, N, dout, OUT, 0, x, IN, 0, 1.0f, dW, IN, 0, 1);
  if (db) bias_bwd<<<blocks(OUT), THREADS>>>(db, dout, N, OUT);
}

/* ---------------------------------------------------------------- life */
extern "C" int egpu_probe(mpu_err *e) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess)
    return mpu_fail(e, MPU_EUSAGE, "no CUDA device (%s); use --device cpu", cudaGetErrorString(err));
  if (n < 1) return mpu_fail(e, MPU_EUSAGE, "no CUDA device (none found); use --device cpu");
  return 0;
}

extern "C" int egpu_open(egpu **out, const egpu_model *d, const float *params, int math, mpu_err *e) {
  *out = NULL;
  if (egpu_probe(e)) return e->status;
  egpu *g = (egpu *)calloc(1, sizeof *g);
  if (!g) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  g->d = *d;
  g->math = math;
  g->layer = (egpu_layer *)malloc((d->layers + 1) * sizeof *g->layer);
  g->toff = (size_t *)malloc((d->ntensors + 1) * sizeof *g->toff);
  if (!g->layer || !g->toff) {
    egpu_close(g);
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  memcpy(g->layer, d->layer, d->layers * sizeof *g->layer);
  memcpy(g->toff, d->tensor_offset, d->ntensors * sizeof *g->toff);
  g->toff[d->ntensors] = d->nparams;
  g->d.layer = g->layer;
  g->d.tensor_offset = g->toff;
  for (size_t t = 0; t < d->ntensors; t++) g->part_n += (g->toff[t + 1] - g->toff[t] + NORM_BLOCK - 1) / NORM_BLOCK;
  int rc = 0;
  if (cublasCreate(&g->h) != CUBLAS_STATUS_SUCCESS) rc = mpu_fail(e, MPU_EUSAGE, "cuBLAS: cannot create a handle");
  if (!rc) rc = dev_alloc(g, (void **)&g->params, d->nparams * sizeof(float), "the parameters", e);
  if (!rc) rc = dev_alloc(g, (void **)&g->part, (g->part_n + 1) * sizeof(double), "the gradient norm", e);
  if (!rc && !(g->part_host = (double *)malloc((g->part_n + 1) * sizeof(double))))
    rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  if (!rc) {
    cudaError_t err = cudaMemcpy(g->params, params, d->nparams * sizeof(float), cudaMemcpyHostToDevice);
    if (err != cudaSuccess) rc = cuda_fail(e, err, "uploading the parameters");
  }
  if (rc) {
    egpu_close(g);
    return rc;
  }
  *out = g;
  return 0;
}

extern "C" void egpu_close(egpu *g) {
  if (!g) return;
  cudaFree(g->params);
  cudaFree(g->grads);
  cudaFree(g->m);
  cudaFree(g->v);
  cudaFree(g->acts);
  cudaFree(g->ids);
  cudaFree(g->part);
  cudaFree(g->dec);
  if (g->h) cublasDestroy(g->h);
  free(g->part_host);
  free(g->layer);
  free(g->toff);
  free(g);
}

extern "C" size_t egpu_bytes(const egpu *g) { return g ? g->bytes : 0; }

extern "C" int egpu_plan(egpu *g, size_t B, size_t T, const float *cosv, const float *sinv, mpu_err *e) {
  const egpu_model *d = &g->d;
  if (!(g->acts && B <= g->maxB && T <= g->maxT)) {
    egpu_plan_t p;
    size_t total = egpu_plan_acts(&p, B, T, d->hidden, d->inter, d->vocab, d->heads, d->kv_heads, d->head_dim, d->layers);
    if (g->acts) {
      cudaFree(g->acts);
      cudaFree(g->ids);
      g->bytes -= g->p.total * sizeof(float) + 2 * g->maxB * g->maxT * sizeof(int32_t);
      g->acts = NULL;
      g->ids = NULL;
    }
    if (dev_alloc(g, (void **)&g->acts, total * sizeof(float), "the activations", e) ||
        dev_alloc(g, (void **)&g->ids, 2 * B * T * sizeof(int32_t), "the token ids", e))
      return e->status;
    g->targets = g->ids + B * T;
    g->p = p;
    g->maxB = B;
    g->maxT = T;
  }
  /* The tables for maxT rows: positions are per sequence. */
  size_t half = d->head_dim / 2;
  CU(cudaMemcpy(g->acts + g->p.cos, cosv, T * half * sizeof(float), cudaMemcpyHostToDevice), "rotary tables");
  CU(cudaMemcpy(g->acts + g->p.sin, sinv, T * half * sizeof(float), cudaMemcpyHostToDevice), "rotary tables");
  return 0;
}

/* ---------------------------------------------------------------- forward */
#define PRM(off) ((off) == EGPU_NONE ? (float *)NULL : g->params + (off))
#define GRD(off) ((off) == EGPU_NONE ? (float *)NULL : g->grads + (off))

static void attention_fwd(egpu *g, float *atty, float *att, const float *q, const float *k, const float *v, size_t B,
                          size_t T) {
  const egpu_model *d = &g->d;
  size_t Hq = d->heads, Hkv = d->kv_heads, D = d->head_dim, Q = Hq * D, N = B * T, rep = Hq / Hkv;
  const float *kx = k, *vx = v;
  if (rep > 1) {
    float *ks = g->acts + g->p.kx, *vs = g->acts + g->p.vx;
    repkv_fwd<<<blocks(N * Q), THREADS>>>(ks, k, N, Hq, rep, D);
    repkv_fwd<<<blocks(N * Q), THREADS>>>(vs, v, N, Hq, rep, D);
    kx = ks;
    vx = vs;
  }
  /* per sequence, a batch over heads: scores Q K^T, softmax, then A V */
  for (size_t b = 0; b < B; b++)
    gemm(g, 0, 1, T, T, D, q + b * T * Q, Q, (long long)D, kx + b * T * Q, Q, (long long)D, 0.0f, att + b * Hq * T * T,
         T, (long long)(T * T), (int)Hq);
  softmax_fwd<<<(unsigned)(B * Hq * T), THREADS>>>(att, T, d->window, 1.0f / sqrtf((float)D));
  for (size_t b = 0; b < B; b++)
    gemm(g, 0, 0, T, D, T, att + b * Hq * T * T, T, (long long)(T * T), vx + b * T * Q, Q, (long long)D, 0.0f,
         atty + b * T * Q, Q, (long long)D, (int)Hq);
}

extern "C" int egpu_forward(egpu *g, const int32_t *ids, const int32_t *targets, size_t B, size_t T, float *nll,
                            float *lse, mpu_err *e) {
  const egpu_model *d = &g->d;
  if (!g->acts || B > g->maxB || T > g->maxT) return mpu_fail(e, MPU_EUSAGE, "GPU engine: forward beyond its plan");
  size_t N = B * T, H = d->hidden, F = d->inter, V = d->vocab, D = d->head_dim;
  size_t Hq = d->heads, Hkv = d->kv_heads, Q = Hq * D, KV = Hkv * D;
  float eps = d->eps;
  const egpu_plan_t *p = &g->p;
  float *A = g->acts, *cosv = A + p->cos, *sinv = A + p->sin;
  g->B = B;
  g->T = T;
  CU(cudaMemcpy(g->ids, ids, N * sizeof(int32_t), cudaMemcpyHostToDevice), "uploading token ids");
  CU(cudaMemcpy(g->targets, targets, N * sizeof(int32_t), cudaMemcpyHostToDevice), "uploading targets");
  embed_fwd<<<blocks(N * H), THREADS>>>(A + p->emb, g->ids, PRM(d->embed), N, H);
  const float *x = A + p->emb;
  for (size_t l = 0; l < d->layers; l++) {
    float *L = A + l * p->per_layer;
    const egpu_layer *w = &g->layer[l];
    float *in = L + p->l.in, *ln1 = L + p->l.ln1, *q = L + p->l.q, *k = L + p->l.k, *v = L + p->l.v;
    float *att = L + p->l.att, *atty = L + p->l.atty, *mid = L + p->l.mid, *ln2 = L + p->l.ln2;
    float *gate = L + p->l.gate, *up = L + p->l.up, *act = L + p->l.act;
    if (x != in) CU(cudaMemcpy(in, x, N * H * sizeof(float), cudaMemcpyDeviceToDevice), "copy");
    rmsnorm_fwd<<<(unsigned)N, THREADS>>>(ln1, L + p->l.rstd1, in, PRM(w->attn_norm), H, eps);
    matmul_fwd(g, q, ln1, PRM(w->wq), PRM(w->bq), N, H, Q);
    matmul_fwd(g, k, ln1, PRM(w->wk), PRM(w->bk), N, H, KV);
    matmul_fwd(g, v, ln1, PRM(w->wv), PRM(w->bv), N, H, KV);
    rope_k<<<blocks(N * Hq * (D / 2)), THREADS>>>(q, cosv, sinv, N, T, Hq, D, 1.0f);
    rope_k<<<blocks(N * Hkv * (D / 2)), THREADS>>>(k, cosv, sinv, N, T, Hkv, D, 1.0f);
    attention_fwd(g, atty, att, q, k, v, B, T);
    matmul_fwd(g, mid, atty, PRM(w->wo), PRM(w->bo), N, Q, H);
    add_k<<<blocks(N * H), THREADS>>>(mid, in, N * H);
    rmsnorm_fwd<<<(unsigned)N, THREADS>>>(ln2, L + p->l.rstd2, mid, PRM(w->mlp_norm), H, eps);
    matmul_fwd(g, gate, ln2, PRM(w->wg), PRM(w->bg), N, H, F);
    matmul_fwd(g, up, ln2, PRM(w->wu), PRM(w->bu), N, H, F);
    swiglu_fwd<<<blocks(N * F), THREADS>>>(act, gate, up, N * F);
    float *next = l + 1 < d->layers ? A + (l + 1) * p->per_layer + p->l.in : A + p->out;
    matmul_fwd(g, next, act, PRM(w->wd), PRM(w->bd), N, F, H);
    add_k<<<blocks(N * H), THREADS>>>(next, mid, N * H);
    x = next;
  }
  if (d->layers == 0) CU(cudaMemcpy(A + p->out, A + p->emb, N * H * sizeof(float), cudaMemcpyDeviceToDevice), "copy");
  rmsnorm_fwd<<<(unsigned)N, THREADS>>>(A + p->lnf, A + p->rstdf, A + p->out, PRM(d->final_norm), H, eps);
  matmul_fwd(g, A + p->logits, A + p->lnf, PRM(d->lm_head), NULL, N, H, V);
  ce_fwd<<<(unsigned)N, THREADS>>>(A + p->nll, A + p->lse, A + p->logits, g->targets, V);
  if (check(g, "forward", e)) return e->status;
  CU(cudaMemcpy(nll, A + p->nll, N * sizeof(float), cudaMemcpyDeviceToHost), "the NLL to the host");
  CU(cudaMemcpy(lse, A + p->lse, N * sizeof(float), cudaMemcpyDeviceToHost), "the log-sum-exp to the host");
  return 0;
}

extern "C" int egpu_get_logits(egpu *g, float *logits, mpu_err *e) {
  CU(cudaMemcpy(logits, g->acts + g->p.logits, g->B * g->T * g->d.vocab * sizeof(float), cudaMemcpyDeviceToHost),
     "the logits to the host");
  return 0;
}

/* ---------------------------------------------------------------- backward */
static void attention_bwd(egpu *g, float *dq, float *dk, float *dv, const float *datty, const float *att,
                          const float *q, const float *k, const float *v, size_t B, size_t T) {
  const egpu_model *d = &g->d;
  size_t Hq = d->heads, Hkv = d->kv_heads, D = d->head_dim, Q = Hq * D, N = B * T, rep = Hq / Hkv;
  const egpu_plan_t *p = &g->p;
  float *ds = g->acts + p->ds;
  const float *kx = k, *vx = v;
  float *dkx = dk, *dvx = dv;
  if (rep > 1) {
    /* the repeated keys and values again (the forward's are another layer's by now) */
    float *ks = g->acts + p->kx, *vs = g->acts + p->vx;
    repkv_fwd<<<blocks(N * Q), THREADS>>>(ks, k, N, Hq, rep, D);
    repkv_fwd<<<blocks(N * Q), THREADS>>>(vs, v, N, Hq, rep, D);
    kx = ks;
    vx = vs;
    dkx = g->acts + p->dkx;
    dvx = g->acts + p->dvx;
  }
  long long TT = (long long)(T * T), sD = (long long)D;
  for (size_t b = 0; b < B; b++) {
    /* d att = dO V^T;  dV = A^T dO */
    gemm(g, 0, 1, T, T, D, datty + b * T * Q, Q, sD, vx + b * T * Q, Q, sD, 0.0f, ds + b * Hq * T * T, T, TT, (int)Hq);
    gemm(g, 1, 0, T, D, T, att + b * Hq * T * T, T, TT, datty + b * T * Q, Q, sD, 0.0f, dvx + b * T * Q, Q, sD, (int)Hq);
  }
  softmax_bwd<<<(unsigned)(B * Hq * T), THREADS>>>(ds, att, T, 1.0f / sqrtf((float)D));
  for (size_t b = 0; b < B; b++) {
    /* dQ = dS K;  dK = dS^T Q */
    gemm(g, 0, 0, T, D, T, ds + b * Hq * T * T, T, TT, kx + b * T * Q, Q, sD, 0.0f, dq + b * T * Q, Q, sD, (int)Hq);
    gemm(g, 1, 0, T, D, T, ds + b * Hq * T * T, T, TT, q + b * T * Q, Q, sD, 0.0f, dkx + b * T * Q, Q, sD, (int)Hq);
  }
  if (rep > 1) {
    repkv_bwd<<<blocks(N * Hkv * D), THREADS>>>(dk, dkx, N, Hkv, rep, D);
    repkv_bwd<<<blocks(N * Hkv * D), THREADS>>>(dv, dvx, N, Hkv, rep, D);
  }
}

extern "C" int egpu_backward(egpu *g, const float *w, const float *dlogits, mpu_err *e) {
  const egpu_model *d = &g->d;
  if (!g->grads) return mpu_fail(e, MPU_EUSAGE, "GPU engine: backward before the gradients were zeroed");
  size_t B = g->B, T = g->T, N = B * T, H = d->hidden, F = d->inter, V = d->vocab, D = d->head_dim;
  size_t Hq = d->heads, Hkv = d->kv_heads, Q = Hq * D, KV = Hkv * D;
  const egpu_plan_t *p = &g->p;
  float *A = g->acts, *cosv = A + p->cos, *sinv = A + p->sin, *logits = A + p->logits;
  if (w) {
    CU(cudaMemcpy(A + p->w, w, N * sizeof(float), cudaMemcpyHostToDevice), "uploading token weights");
    ce_bwd<<<(unsigned)N, THREADS>>>(logits, A + p->lse, g->targets, A + p->w, V);
  } else {
    CU(cudaMemcpy(logits, dlogits, N * V * sizeof(float), cudaMemcpyHostToDevice), "uploading d loss / d logits");
  }
  float *dres = A + p->dres, *dln = A + p->dln, *dmid = A + p->dmid, *dq = A + p->dq, *datty = A + p->datty;
  float *dk = A + p->dk, *dv = A + p->dv, *dgate = A + p->dgate, *dup = A + p->dup, *dact = A + p->dact;
  size_t NH = N * H * sizeof(float);

  /* logits -> final norm */
  CU(cudaMemset(dln, 0, NH), "memset");
  matmul_bwd(g, dln, GRD(d->lm_head), NULL, logits, A + p->lnf, PRM(d->lm_head), N, H, V);
  CU(cudaMemset(dres, 0, NH), "memset");
  rmsnorm_bwd_dx<<<(unsigned)N, THREADS>>>(dres, dln, A + p->out, PRM(d->final_norm), A + p->rstdf, H);
  rmsnorm_bwd_dw<<<blocks(H), THREADS>>>(GRD(d->final_norm), dln, A + p->out, A + p->rstdf, N, H);

  for (size_t l = d->layers; l-- > 0;) {
    float *L = A + l * p->per_layer;
    const egpu_layer *w8 = &g->layer[l];
    float *in = L + p->l.in, *ln1 = L + p->l.ln1, *q = L + p->l.q, *k = L + p->l.k, *v = L + p->l.v;
    float *att = L + p->l.att, *atty = L + p->l.atty, *mid = L + p->l.mid, *ln2 = L + p->l.ln2;
    float *gate = L + p->l.gate, *up = L + p->l.up, *act = L + p->l.act;
    /* mlp: out = mid + down(act); dres is d(out) */
    CU(cudaMemcpy(dmid, dres, NH, cudaMemcpyDeviceToDevice), "copy");
    CU(cudaMemset(dact, 0, N * F * sizeof(float)), "memset");
    matmul_bwd(g, dact, GRD(w8->wd), GRD(w8->bd), dres, act, PRM(w8->wd), N, F, H);
    swiglu_bwd<<<blocks(N * F), THREADS>>>(dgate, dup, dact, gate, up, N * F);
    CU(cudaMemset(dln, 0, NH), "memset");
    matmul_bwd(g, dln, GRD(w8->wg), GRD(w8->bg), dgate, ln2, PRM(w8->wg), N, H, F);
    matmul_bwd(g, dln, GRD(w8->wu), GRD(w8->bu), dup, ln2, PRM(w8->wu), N, H, F);
    rmsnorm_bwd_dx<<<(unsigned)N, THREADS>>>(dmid, dln, mid, PRM(w8->mlp_norm), L + p->l.rstd2, H);
    rmsnorm_bwd_dw<<<blocks(H), THREADS>>>(GRD(w8->mlp_norm), dln, mid, L + p->l.rstd2, N, H);
    /* attention: mid = in + o(atty) */
    CU(cudaMemcpy(dres, dmid, NH, cudaMemcpyDeviceToDevice), "copy");
    CU(cudaMemset(datty, 0, N * Q * sizeof(float)), "memset");
    matmul_bwd(g, datty, GRD(w8->wo), GRD(w8->bo), dmid, atty, PRM(w8->wo), N, Q, H);
    attention_bwd(g, dq, dk, dv, datty, att, q, k, v, B, T);
    rope_k<<<blocks(N * Hq * (D / 2)), THREADS>>>(dq, cosv, sinv, N, T, Hq, D, -1.0f);
    rope_k<<<blocks(N * Hkv * (D / 2)), THREADS>>>(dk, cosv, sinv, N, T, Hkv, D, -1.0f);
    CU(cudaMemset(dln, 0, NH), "memset");
    matmul_bwd(g, dln, GRD(w8->wq), GRD(w8->bq), dq, ln1, PRM(w8->wq), N, H, Q);
    matmul_bwd(g, dln, GRD(w8->wk), GRD(w8->bk), dk, ln1, PRM(w8->wk), N, H, KV);
    matmul_bwd(g, dln, GRD(w8->wv), GRD(w8->bv), dv, ln1, PRM(w8->wv), N, H, KV);
    rmsnorm_bwd_dx<<<(unsigned)N, THREADS>>>(dres, dln, in, PRM(w8->attn_norm), L + p->l.rstd1, H);
    rmsnorm_bwd_dw<<<blocks(H), THREADS>>>(GRD(w8->attn_norm), dln, in, L + p->l.rstd1, N, H);
  }
  embed_bwd<<<blocks(H), THREADS>>>(GRD(d->embed), dres, g->ids, N, H);
  return check(g, "backward", e);
}

/* ---------------------------------------------------------------- optimizer */
extern "C" int egpu_zero_grad(egpu *g, mpu_err *e) {
  if (!g->grads && dev_alloc(g, (void **)&g->grads, g->d.nparams * sizeof(float), "the gradients", e))
    return e->status;
  CU(cudaMemset(g->grads, 0, g->d.nparams * sizeof(float)), "zeroing the gradients");
  return 0;
}

extern "C" int egpu_get_grads(egpu *g, float *grads, mpu_err *e) {
  if (!g->grads) return mpu_fail(e, MPU_EUSAGE, "GPU engine: no gradients yet");
  CU(cudaMemcpy(grads, g->grads, g->d.nparams * sizeof(float), cudaMemcpyDeviceToHost), "the gradients to the host");
  return 0;
}

extern "C" int egpu_get_params(egpu *g, float *params, mpu_err *e) {
  CU(cudaMemcpy(params, g->params, g->d.nparams * sizeof(float), cudaMemcpyDeviceToHost), "the parameters to the host");
  return 0;
}

extern "C" int egpu_grad_norm(egpu *g, const uint8_t *skip, double *norm, mpu_err *e) {
  if (!g->grads) return mpu_fail(e, MPU_EUSAGE, "GPU engine: no gradients yet");
  size_t at = 0;
  for (size_t t = 0; t < g->d.ntensors; t++) {
    size_t n = g->toff[t + 1] - g->toff[t], nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
    if (nb && !(skip && skip[t])) sumsq_blocks<<<(unsigned)nb, THREADS>>>(g->part + at, g->grads + g->toff[t], n);
    at += nb;
  }
  if (check(g, "gradient norm", e)) return e->status;
  CU(cudaMemcpy(g->part_host, g->part, at * sizeof(double), cudaMemcpyDeviceToHost), "the gradient norm");
  /* the blocks in tensor and block order, lib/optim.c's order */
  double total = 0;
  at = 0;
  for (size_t t = 0; t < g->d.ntensors; t++) {
    size_t n = g->toff[t + 1] - g->toff[t], nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
    if (!(skip && skip[t]))
      for (size_t k = 0; k < nb; k++) total += g->part_host[at + k];
    at += nb;
  }
  *norm = sqrt(total);
  return 0;
}

extern "C" int egpu_step(egpu *g, const egpu_step_args *a, mpu_err *e) {
  size_t bytes = g->d.nparams * sizeof(float);
  if (!g->grads) return mpu_fail(e, MPU_EUSAGE, "GPU engine: a step without gradients");
  if (!a->sgd) {
    if (!g->m && (dev_alloc(g, (void **)&g->m, bytes, "AdamW's first moments", e) ||
                  dev_alloc(g, (void **)&g->v, bytes, "AdamW's second moments", e)))
      return e->status;
    if (a->first) {
      CU(cudaMemset(g->m, 0, bytes), "memset");
      CU(cudaMemset(g->v, 0, bytes), "memset");
    }
  }
  for (size_t t = 0; t < g->d.ntensors; t++) {
    if (a->skip && a->skip[t]) continue;
    size_t lo = g->toff[t], n = g->toff[t + 1] - lo;
    if (!n) continue;
    if (a->sgd) sgd_k<<<blocks(n), THREADS>>>(g->params + lo, g->grads + lo, n, a->lr, a->scale, a->wd[t]);
    else
      adamw_k<<<blocks(n), THREADS>>>(g->params + lo, g->grads + lo, g->m + lo, g->v + lo, n, a->scale,
                                      1.0f - a->lr * a->wd[t], a->beta1, a->beta2, a->eps, a->step_size, a->bc2_sqrt);
  }
  return check(g, "optimizer step", e);
}

/* ---------------------------------------------------------------- decoding */
/* The decoding buffers: the cache, then x, ln, rstd, o, q, atty, gate, up,
 * act, logits, scores[Hq, max_len], cos, sin. */
typedef struct {
  float *kc, *vc, *x, *ln, *rstd, *o, *q, *atty, *gate, *up, *act, *logits, *scores, *cos, *sin;
} dec_view;

static size_t dec_floats(const egpu_model *d, size_t len, dec_view *v, float *base) {
  size_t at = 0, L = d->layers, KV = d->kv_heads * d->head_dim, Q = d->heads * d->head_dim, H = d->hidden;
  size_t F = d->inter, half = d->head_dim / 2;
#define DTAKE(f, n) (v->f = base + egpu_take(&at, (n)))
  DTAKE(kc, L * len * KV);
  DTAKE(vc, L * len * KV);
  DTAKE(x, H);
  DTAKE(ln, H);
  DTAKE(rstd, 1);
  DTAKE(o, H);
  DTAKE(q, Q);
  DTAKE(atty, Q);
  DTAKE(gate, F);
  DTAKE(up, F);
  DTAKE(act, F);
  DTAKE(logits, d->vocab);
  DTAKE(scores, d->heads * len);
  DTAKE(cos, len * half);
  DTAKE(sin, len * half);
#undef DTAKE
  return at;
}

extern "C" int egpu_decode_init(egpu *g, size_t max_len, const float *cosv, const float *sinv, mpu_err *e) {
  dec_view v;
  size_t n = dec_floats(&g->d, max_len, &v, NULL);
  if (g->dec) {
    cudaFree(g->dec);
    g->bytes -= dec_floats(&g->d, g->dec_len, &v, NULL) * sizeof(float);
    g->dec = NULL;
  }
  if (dev_alloc(g, (void **)&g->dec, n * sizeof(float), "the key/value cache", e)) return e->status;
  g->dec_len = max_len;
  dec_floats(&g->d, max_len, &v, g->dec);
  size_t half = g->d.head_dim / 2;
  CU(cudaMemcpy(v.cos, cosv, max_len * half * sizeof(float), cudaMemcpyHostToDevice), "rotary tables");
  CU(cudaMemcpy(v.sin, sinv, max_len * half * sizeof(float), cudaMemcpyHostToDevice), "rotary tables");
  return 0;
}

extern "C" int egpu_decode_step(egpu *g, int32_t token, size_t pos, float *logits, mpu_err *e) {
  const egpu_model *d = &g->d;
  if (!g->dec || pos >= g->dec_len) return mpu_fail(e, MPU_EUSAGE, "GPU engine: decoding past its cache");
  size_t H = d->hidden, F = d->inter, V = d->vocab, D = d->head_dim, Hq = d->heads, Hkv = d->kv_heads;
  size_t Q = Hq * D, KV = Hkv * D, half = D / 2, len = g->dec_len;
  dec_view v;
  dec_floats(d, len, &v, g->dec);
  float eps = d->eps, scale = 1.0f / sqrtf((float)D);
  size_t j0 = d->window && pos + 1 > d->window ? pos + 1 - d->window : 0;
  CU(cudaMemcpy(v.x, PRM(d->embed) + (size_t)token * H, H * sizeof(float), cudaMemcpyDeviceToDevice), "embedding");
  const float *c = v.cos + pos * half, *s = v.sin + pos * half;
  for (size_t l = 0; l < d->layers; l++) {
    const egpu_layer *w = &g->layer[l];
    float *kl = v.kc + l * len * KV, *vl = v.vc + l * len * KV, *kp = kl + pos * KV, *vp = vl + pos * KV;
    rmsnorm_fwd<<<1, THREADS>>>(v.ln, v.rstd, v.x, PRM(w->attn_norm), H, eps);
    matmul_fwd(g, v.q, v.ln, PRM(w->wq), PRM(w->bq), 1, H, Q);
    matmul_fwd(g, kp, v.ln, PRM(w->wk), PRM(w->bk), 1, H, KV);
    matmul_fwd(g, vp, v.ln, PRM(w->wv), PRM(w->bv), 1, H, KV);
    rope_k<<<blocks(Hq * half), THREADS>>>(v.q, c, s, 1, 1, Hq, D, 1.0f);
    rope_k<<<blocks(Hkv * half), THREADS>>>(kp, c, s, 1, 1, Hkv, D, 1.0f);
    decode_attention<<<(unsigned)Hq, THREADS>>>(v.atty, v.scores, v.q, kl, vl, pos, j0, Hq, Hq / Hkv, D, KV, len, scale);
    matmul_fwd(g, v.o, v.atty, PRM(w->wo), PRM(w->bo), 1, Q, H);
    add_k<<<blocks(H), THREADS>>>(v.x, v.o, H);
    rmsnorm_fwd<<<1, THREADS>>>(v.ln, v.rstd, v.x, PRM(w->mlp_norm), H, eps);
    matmul_fwd(g, v.gate, v.ln, PRM(w->wg), PRM(w->bg), 1, H, F);
    matmul_fwd(g, v.up, v.ln, PRM(w->wu), PRM(w->bu), 1, H, F);
    swiglu_fwd<<<blocks(F), THREADS>>>(v.act, v.gate, v.up, F);
    matmul_fwd(g, v.o, v.act, PRM(w->wd), PRM(w->bd), 1, F, H);
    add_k<<<blocks(H), THREADS>>>(v.x, v.o, H);
  }
  rmsnorm_fwd<<<1, THREADS>>>(v.ln, v.rstd, v.x, PRM(d->final_norm), H, eps);
  matmul_fwd(g, v.logits, v.ln, PRM(d->lm_head), NULL, 1, H, V);
  if (check(g, "decoding", e)) return e->status;
  CU(cudaMemcpy(logits, v.logits, V * sizeof(float), cudaMemcpyDeviceToHost), "the logits to the host");
  return 0;
}
