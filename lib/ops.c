/*
 * ops.c -- transformer layers on the CPU (see ops.h).
 */
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

static int n_threads = 1;

/* One pool of threads, OpenMP's: OpenBLAS runs single-threaded inside our
 * parallel regions.  Two pools (OpenMP's spinning between regions, and
 * OpenBLAS's own) starve each other when cores are few or shared: measured
 * 10x slower on two cores. */
void ops_set_threads(int n) {
  if (n < 1) n = 1;
  n_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(1);
}

/* C[M,N] = op(A) op(B) + beta C (row-major; op(A) is M x K), cut into
 * tiles of fixed size that the threads share.  Each tile is one
 * single-threaded sgemm call whose shape depends only on M and N, so every
 * element is the same sum in the same order for any number of threads. */
#define TILE_M 128
#define TILE_N 512
static void gemm(int transA, int transB, size_t M, size_t N, size_t K, const float *A, size_t lda, const float *B,
                 size_t ldb, float beta, float *C, size_t ldc) {
  size_t tm = (M + TILE_M - 1) / TILE_M, tn = (N + TILE_N - 1) / TILE_N, tiles = tm * tn;
  int par = n_threads > 1 && tiles > 1 && (double)M * (double)N * (double)K >= (double)(1 << 20);
#pragma omp parallel for schedule(dynamic, 1) if (par)
  for (size_t t = 0; t < tiles; t++) {
    size_t i0 = (t / tn) * TILE_M, j0 = (t % tn) * TILE_N;
    size_t mi = M - i0 < TILE_M ? M - i0 : TILE_M, nj = N - j0 < TILE_N ? N - j0 : TILE_N;
    const float *a = transA ? A + i0 : A + i0 * lda, *b = transB ? B + j0 * ldb : B + j0;
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, (int)mi,
                (int)nj, (int)K, 1.0f, a, (int)lda, b, (int)ldb, beta, C + i0 * ldc + j0, (int)ldc);
  }
}

/* Whether a loop of about `work` elementary operations is worth waking the
 * other threads for: below this, starting a parallel region costs more than
 * it saves (decoding one token at a time is made of such loops). */
#define PAR(work) ((size_t)(work) >= 16384)

int ops_threads(void) { return n_threads; }

/* A dot product with four accumulators, in a fixed order. */
static inline float dot(const float *a, const float *b, size_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; i++) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

/* y += a * x */
static inline void axpy(float *y, float a, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

void embed_forward(float *out, const int32_t *ids, const float *embed, size_t N, size_t H) {
#pragma omp parallel for schedule(static) if (PAR(N * H))
  for (size_t n = 0; n < N; n++) memcpy(out + n * H, embed + (size_t)ids[n] * H, H * sizeof(float));
}

void embed_backward(float *dembed, const float *dout, const int32_t *ids, size_t N, size_t H) {
  /* A token may repeat, so rows are added in position order, parallel over columns. */
#pragma omp parallel for schedule(static) if (PAR(N * H))
  for (size_t c0 = 0; c0 < H; c0 += 64) {
    size_t c1 = c0 + 64 < H ? c0 + 64 : H;
    for (size_t n = 0; n < N; n++) {
      float *d = dembed + (size_t)ids[n] * H;
      const float *g = dout + n * H;
      for (size_t c = c0; c < c1; c++) d[c] += g[c];
    }
  }
}

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, size_t N, size_t H, float eps) {
#pragma omp parallel for schedule(static) if (PAR(N * H))
  for (size_t n = 0; n < N; n++) {
    const float *xn = x + n * H;
    double ss = 0;
    for (size_t c = 0; c < H; c++) ss += (double)xn[c] * xn[c];
    float r = (float)(1.0 / sqrt(ss / (double)H + (double)eps));
    rstd[n] = r;
    float *o = out + n * H;
    for (size_t c = 0; c < H; c++) o[c] = w[c] * (xn[c] * r);
  }
}

void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                      size_t N, size_t H) {
#pragma omp parallel for schedule(static) if (PAR(N * H))
  for (size_t n = 0; n < N; n++) {
    const float *xn = x + n * H, *g = dout + n * H;
    float r = rstd[n];
    /* d/dx of w * x * r(x): r * (w*g - xhat * mean(w*g*xhat)) */
    double m = 0;
    for (size_t c = 0; c < H; c++) m += (double)(w[c] * g[c]) * (xn[c] * r);
    float mean = (float)(m / (double)H);
    float *d = dx + n * H;
    for (size_t c = 0; c < H; c++) d[c] += r * (w[c] * g[c] - (xn[c] * r) * mean);
  }
  /* dw[c] = sum_n g * xhat, parallel over columns, rows in order */
#pragma omp parallel for schedule(static) if (PAR(N * H))
  for (size_t c0 = 0; c0 < H; c0 += 16) {
    size_t c1 = c0 + 16 < H ? c0 + 16 : H;
    for (size_t n = 0; n < N; n++) {
      const float *xn = x + n * H, *g = dout + n * H;
      float r = rstd[n];
      for (size_t c = c0; c < c1; c++) dw[c] += g[c] * (xn[c] * r);
    }
  }
}

void matmul_forward(float *out, const float *x, const float *W, const float *b, size_t N, size_t IN, size_t OUT) {
  gemm(0, 1, N, OUT, IN, x, IN, W, IN, 0.0f, out, OUT);
  if (b) {
#pragma omp parallel for schedule(static) if (PAR(N * OUT))
    for (size_t n = 0; n < N; n++)
      for (size_t o = 0; o < OUT; o++) out[n * OUT + o] += b[o];
  }
}

void matmul_backward(float *dx, float *dW, float *db, const float *dout, const float *x, const float *W, size_t N,
                     size_t IN, size_t OUT) {
  if (dx)
    gemm(0, 0, N, IN, OUT, dout, OUT, W, IN, 1.0f, dx, IN);
  gemm(1, 0, OUT, IN, N, dout, OUT, x, IN, 1.0f, dW, IN);
  if (db) {
#pragma omp parallel for schedule(static) if (PAR(N * OUT))
    for (size_t o0 = 0; o0 < OUT; o0 += 16) {
      size_t o1 = o0 + 16 < OUT ? o0 + 16 : OUT;
      for (size_t n = 0; n < N; n++)
        for (size_t o = o0; o < o1; o++) db[o] += dout[n * OUT + o];
    }
  }
}

void rope_tables(float *cosv, float *sinv, const float *inv_freq, size_t T, size_t D) {
  size_t half = D / 2;
  for (size_t t = 0; t < T; t++)
    for (size_t i = 0; i < half; i++) {
      /* transformers forms the angle as a float32 product, then takes cos/sin */
      float a = (float)t * inv_freq[i];
      cosv[t * half + i] = (float)cos((double)a);
      sinv[t * half + i] = (float)sin((double)a);
    }
}

static void rope_apply(float *x, const float *cosv, const float *sinv, size_t B, size_t T, size_t heads, size_t D,
                       float sign) {
  size_t half = D / 2, row = heads * D;
#pragma omp parallel for schedule(static) if (PAR(B * T * heads * D))
  for (size_t bt = 0; bt < B * T; bt++) {
    size_t t = bt % T;
    const float *c = cosv + t * half, *s = sinv + t * half;
    for (size_t h = 0; h < heads; h++) {
      float *v = x + bt * row + h * D;
      for (size_t i = 0; i < half; i++) {
        float x1 = v[i], x2 = v[i + half], sn = sign * s[i];
        v[i] = x1 * c[i] - x2 * sn;
        v[i + half] = x2 * c[i] + x1 * sn;
      }
    }
  }
}

void rope_forward(float *x, const float *cosv, const float *sinv, size_t B, size_t T, size_t heads, size_t D) {
  rope_apply(x, cosv, sinv, B, T, heads, D, 1.0f);
}

void rope_backward(float *dx, const float *cosv, const float *sinv, size_t B, size_t T, size_t heads, size_t D) {
  rope_apply(dx, cosv, sinv, B, T, heads, D, -1.0f);
}

/* Attention per (sequence, head) with matrix products: the scores Q K^T, a
 * causal (and optionally sliding-window) softmax, then A V.  Each task is one
 * thread's, with single-threaded BLAS inside, so the result does not depend
 * on the thread count. */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v, size_t B, size_t T,
                       size_t Hq, size_t Hkv, size_t D, size_t window) {
  size_t Q = Hq * D, KV = Hkv * D, rep = Hq / Hkv;
  float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for collapse(2) schedule(static) if (B * Hq > 1)
  for (size_t b = 0; b < B; b++)
    for (size_t h = 0; h < Hq; h++) {
      size_t g = h / rep;
      float *a = att + (b * Hq + h) * T * T;
      const float *qh = q + b * T * Q + h * D, *kg = k + b * T * KV + g * D, *vg = v + b * T * KV + g * D;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)D, 1.0f, qh, (int)Q, kg, (int)KV, 0.0f,
                  a, (int)T);
      for (size_t i = 0; i < T; i++) {
        float *ai = a + i * T;
        size_t j0 = window && i + 1 > window ? i + 1 - window : 0;
        float mx = -INFINITY;
        for (size_t j = j0; j <= i; j++) {
          ai[j] = ai[j] * scale;
          if (ai[j] > mx) mx = ai[j];
        }
        double sum = 0;
        for (size_t j = j0; j <= i; j++) {
          ai[j] = expf(ai[j] - mx);
          sum += ai[j];
        }
        float inv = (float)(1.0 / sum);
        for (size_t j = 0; j < T; j++) ai[j] = j >= j0 && j <= i ? ai[j] * inv : 0.0f;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)D, (int)T, 1.0f, a, (int)T, vg, (int)KV, 0.0f,
                  out + b * T * Q + h * D, (int)Q);
    }
}

void attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, size_t B, size_t T, size_t Hq, size_t Hkv,
                        size_t D) {
  (void)scratch;
  size_t Q = Hq * D, KV = Hkv * D, rep = Hq / Hkv;
  float scale = 1.0f / sqrtf((float)D);
  /* One task per (sequence, kv head): the query heads of a group add into
   * the same dk/dv rows, so they run in order inside the task. */
#pragma omp parallel for collapse(2) schedule(static) if (B * Hkv > 1)
  for (size_t b = 0; b < B; b++)
    for (size_t g = 0; g < Hkv; g++) {
      float *ds = malloc((T ? T * T : 1) * sizeof(float)); /* d att, then d scores */
      float *dkg = dk + b * T * KV + g * D, *dvg = dv + b * T * KV + g * D;
      const float *kg = k + b * T * KV + g * D, *vg = v + b * T * KV + g * D;
      for (size_t j = 0; j < T; j++) {
        memset(dkg + j * KV, 0, D * sizeof(float));
        memset(dvg + j * KV, 0, D * sizeof(float));
      }
      for (size_t h = g * rep; h < (g + 1) * rep; h++) {
        const float *a = att + (b * Hq + h) * T * T, *go = dout + b * T * Q + h * D, *qh = q + b * T * Q + h * D;
        /* d att = dO V^T ; dV += A^T dO */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)D, 1.0f, go, (int)Q, vg, (int)KV,
                    0.0f, ds, (int)T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)D, (int)T, 1.0f, a, (int)T, go, (int)Q, 1.0f,
                    dvg, (int)KV);
        /* softmax backward: dS = A (d att - rowsum(A d att)) scale */
        for (size_t i = 0; i < T; i++) {
          const float *ai = a + i * T;
          float *di = ds + i * T, s = 0;
          for (size_t j = 0; j <= i; j++) s += ai[j] * di[j];
          for (size_t j = 0; j < T; j++) di[j] = j <= i && ai[j] != 0.0f ? ai[j] * (di[j] - s) * scale : 0.0f;
        }
        /* dQ = dS K ; dK += dS^T Q */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)D, (int)T, 1.0f, ds, (int)T, kg, (int)KV,
                    0.0f, dq + b * T * Q + h * D, (int)Q);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)D, (int)T, 1.0f, ds, (int)T, qh, (int)Q, 1.0f,
                    dkg, (int)KV);
      }
      free(ds);
    }
}

void swiglu_forward(float *out, const float *gate, const float *up, size_t N) {
#pragma omp parallel for schedule(static) if (PAR(N))
  for (size_t i = 0; i < N; i++) {
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t N) {
#pragma omp parallel for schedule(static) if (PAR(N))
  for (size_t i = 0; i < N; i++) {
    float g = gate[i], s = 1.0f / (1.0f + expf(-g)), silu = g * s;
    dup[i] = dout[i] * silu;
    dgate[i] = dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
  }
}

void add_inplace(float *out, const float *x, size_t N) {
#pragma omp parallel for schedule(static) if (PAR(N))
  for (size_t i = 0; i < N; i++) out[i] += x[i];
}

void crossentropy_forward(float *nll, float *lse, const float *logits, const int32_t *target, size_t N, size_t V) {
#pragma omp parallel for schedule(static) if (PAR(N * V))
  for (size_t n = 0; n < N; n++) {
    const float *l = logits + n * V;
    float mx = l[0];
    for (size_t v = 1; v < V; v++)
      if (l[v] > mx) mx = l[v];
    double s = 0;
    for (size_t v = 0; v < V; v++) s += exp((double)(l[v] - mx));
    lse[n] = mx + (float)log(s);
    nll[n] = target[n] >= 0 ? lse[n] - l[target[n]] : 0.0f;
  }
}

void crossentropy_backward(float *logits, const float *lse, const int32_t *target, const float *w, size_t N, size_t V) {
#pragma omp parallel for schedule(static) if (PAR(N * V))
  for (size_t n = 0; n < N; n++) {
    float *l = logits + n * V;
    if (w[n] == 0.0f) {
      memset(l, 0, V * sizeof(float));
      continue;
    }
    for (size_t v = 0; v < V; v++) l[v] = w[n] * expf(l[v] - lse[n]);
    if (target[n] >= 0) l[target[n]] -= w[n];
  }
}
