/*
 * stage.h -- what the GPU does for perturb, invert and denoise, written so
 * the CPU can run it too: the job description, the body of every kernel
 * thread (MPU_HD, calling lib/reparam.h's per-element math and nothing
 * else), and the host's staging of a chunk into and out of the pinned
 * buffers.  kernels/protocol.cu wraps the bodies in __global__ functions and
 * moves the chunks with asynchronous copies on two streams;
 * stage_run_host() below runs the same chunks, bodies and staging in plain
 * loops, so tests/unit/test_hd.c checks everything but the CUDA plumbing on
 * a machine without a GPU.
 *
 * A tensor goes through in chunks of whole rows (whole heads for q/k/v
 * rows), in its original coordinates, so a tensor larger than the device
 * pool still streams:
 *   noise   one thread per 4-element block: x_k = theta + alpha_k eps0_k
 *   publish one thread per item (a rotation pair, or an element):
 *           pub_k = round(T_k x_k), and for invert
 *           delta_k = T_k^-1(ret_k - pub_k)
 *   The FFN row permutation moves whole rows, so the host does it while it
 *   copies a chunk out of (pub) or into (ret) the pinned buffers: the kernels
 *   see rows in original order.  Column permutations and rotations stay
 *   within a chunk and are done on the device.
 */
#ifndef MPU_KERNELS_STAGE_H
#define MPU_KERNELS_STAGE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "reparam.h"

/* One tensor's perturbation for every copy; the tables are host memory,
 * indexed [k][...] for copy k. */
typedef struct {
  rp_layout L;
  size_t n;                  /* elements (rows * cols) */
  int M;                     /* copies */
  float sigma, c;            /* noise scale; sqrt(M/(M-1)) as float */
  int round;                 /* RP_ROUND_*: what the client receives */
  const uint32_t (*keys)[2]; /* [M] noise keys of this tensor */
  const float *alpha;        /* [M] */
  const float *cs, *sn;      /* [M][nangles] rotations (ROT_*), else NULL */
  size_t nangles;            /* kv heads * D/2 */
  const uint32_t *perm;      /* [M][nperm] permutations (PERM_*), else NULL */
  const uint32_t *pinv;      /* [M][nperm] their inverses (PERM_ROWS) */
  size_t nperm;
} stage_job;

/* The tables as the threads see them (device memory on the GPU). */
typedef struct {
  const uint32_t (*keys)[2];
  const float *alpha, *cs, *sn;
  const uint32_t *perm;
} stage_tables;

/* ---------------------------------------------------------------- chunks */
/* Elements of the smallest chunk: whole heads of rows for ROT_ROWS (a
 * rotation pairs rows p and p + D/2 of a head), else whole rows; and a
 * multiple of 4, so every chunk but the last starts and ends on a noise
 * block (the four elements of one Philox block share its draw). */
MPU_HD size_t stage_unit(const rp_layout *L) {
  size_t u = L->kind == RP_ROT_ROWS ? L->D * L->cols : L->cols;
  if (u == 0) u = 1;
  while (u % 4) u += L->kind == RP_ROT_ROWS ? L->D * L->cols : L->cols;
  return u;
}

/* Elements per chunk when at most `budget` fit: 0 if not even one unit does. */
static inline size_t stage_chunk(const rp_layout *L, size_t n, size_t budget) {
  size_t u = stage_unit(L), c = budget / u * u;
  if (c >= n) return n;
  return c;
}

/* Work items of the publish step for a chunk of e elements. */
MPU_HD size_t stage_items(const rp_layout *L, size_t e) {
  return L->kind == RP_ROT_ROWS || L->kind == RP_ROT_COLS ? e / 2 : e;
}

/* ---------------------------------------------------------------- thread bodies */
/* Noise of block t of the chunk [e0, e1) (e0 % 4 == 0): x_k into X + k * cap. */
MPU_HD void stage_noise(const stage_job *j, stage_tables tb, size_t e0, size_t e1, size_t cap, const float *theta,
                        float *X, size_t t) {
  uint64_t b = (uint64_t)(e0 / 4 + t);
  if (4 * b >= e1) return;
  float eps[RP_MAX_COPIES][4];
  noise_zero_sum4(eps, tb.keys, j->M, b, j->sigma, j->c);
  for (int k = 0; k < j->M; k++)
    for (size_t q = 0; q < 4 && 4 * b + q < e1; q++) {
      size_t i = (size_t)(4 * b + q - e0);
      X[(size_t)k * cap + i] = noised(theta[i], tb.alpha[k], eps[k][q]);
    }
}

/* Item t of copy k in the chunk starting at element e0: pub (O) from x (X);
 * for invert (R and Dl not NULL) also delta from the returned values R. */
MPU_HD void stage_publish(const stage_job *j, stage_tables tb, int k, size_t e0, const float *X, float *O,
                          const float *R, float *Dl, size_t t) {
  const rp_layout *L = &j->L;
  size_t cols = L->cols;
  if (L->kind == RP_ROT_ROWS || L->kind == RP_ROT_COLS) {
    size_t half = L->D / 2, ia, a;
    if (L->kind == RP_ROT_ROWS) { /* item: (local head, plane p, column) */
      size_t col = t % cols, q = t / cols, p = q % half, hl = q / half, h = e0 / (L->D * cols) + hl;
      a = (h / L->rep) * half + p;
      ia = (hl * L->D + p) * cols + col;
      cols = half * cols; /* distance to the partner row, below */
    } else {                      /* item: (local row, head, plane p) */
      size_t per_row = L->heads * half, rl = t / per_row, q = t % per_row, h = q / half, p = q % half;
      a = (h / L->rep) * half + p;
      ia = rl * cols + h * L->D + p;
      cols = half;
    }
    size_t ib = ia + cols;
    float c = tb.cs[(size_t)k * j->nangles + a], s = tb.sn[(size_t)k * j->nangles + a];
    float x = X[ia], y = X[ib];
    rotate_pair(&x, &y, c, s, 0);
    x = round_through(x, j->round);
    y = round_through(y, j->round);
    O[ia] = x;
    O[ib] = y;
    if (R) {
      float dx = FSUB(R[ia], x), dy = FSUB(R[ib], y);
      rotate_pair(&dx, &dy, c, s, 1);
      Dl[ia] = dx;
      Dl[ib] = dy;
    }
    return;
  }
  size_t src = t, dst = t; /* where x comes from; where delta goes */
  if (L->kind == RP_PERM_COLS) {
    size_t r = t / cols, cc = t % cols;
    src = dst = r * cols + tb.perm[(size_t)k * j->nperm + cc];
  }
  float x = round_through(X[src], j->round);
  O[t] = x;
  if (R) Dl[dst] = FSUB(R[t], x);
}

/* Element t of denoise: theta + eta * sum_k w_k delta_k (delta_k at D + k * cap). */
MPU_HD void stage_aggregate(const float *theta, const float *D, size_t cap, const double *w, int M, double eta,
                            float *out, size_t t) {
  out[t] = aggregate(theta[t], D + t, cap, w, M, eta);
}

/* ---------------------------------------------------------------- host staging */
/* Copy k's rows [e0, e1) of a tensor in published coordinates (pub, ret)
 * from or to the chunk's rows in original order: the row permutation's
 * out[r] = in[perm[r]] is undone (in) or done (out) here; every other
 * layout is a plain copy. */
static inline void stage_rows_in(const stage_job *j, int k, size_t e0, size_t e1, const float *full, float *chunk) {
  if (j->L.kind != RP_PERM_ROWS) {
    memcpy(chunk, full + e0, (e1 - e0) * sizeof(float));
    return;
  }
  size_t cols = j->L.cols;
  const uint32_t *pinv = j->pinv + (size_t)k * j->nperm;
  for (size_t s = e0 / cols; s < e1 / cols; s++)
    memcpy(chunk + (s - e0 / cols) * cols, full + (size_t)pinv[s] * cols, cols * sizeof(float));
}
static inline void stage_rows_out(const stage_job *j, int k, size_t e0, size_t e1, const float *chunk, float *full) {
  if (j->L.kind != RP_PERM_ROWS) {
    memcpy(full + e0, chunk, (e1 - e0) * sizeof(float));
    return;
  }
  size_t cols = j->L.cols;
  const uint32_t *pinv = j->pinv + (size_t)k * j->nperm;
  for (size_t s = e0 / cols; s < e1 / cols; s++)
    memcpy(full + (size_t)pinv[s] * cols, chunk + (s - e0 / cols) * cols, cols * sizeof(float));
}

/* ---------------------------------------------------------------- the pipeline on the host */
/* The GPU's pipeline run in loops, chunk by chunk with at most `budget`
 * elements each (as a device pool would allow): pub[k] for every copy, and
 * with ret, delta[k] too.  The reference the unit test holds the kernels'
 * bodies and staging to; the CUDA path differs only in where the buffers
 * live and when the copies happen.  Returns -1 if out of memory or a unit
 * does not fit the budget. */
#include <stdlib.h>
static inline int stage_run_host(const stage_job *j, size_t budget, const float *theta, float *const *ret, float **pub,
                                 float **delta) {
  size_t cap = stage_chunk(&j->L, j->n, budget);
  if (!cap) return -1;
  size_t M = (size_t)j->M;
  float *X = (float *)malloc(M * cap * sizeof(float)), *O = (float *)malloc(M * cap * sizeof(float));
  float *R = ret ? (float *)malloc(M * cap * sizeof(float)) : NULL, *Dl = ret ? (float *)malloc(M * cap * sizeof(float)) : NULL;
  if (!X || !O || (ret && (!R || !Dl))) {
    free(X), free(O), free(R), free(Dl);
    return -1;
  }
  stage_tables tb = {j->keys, j->alpha, j->cs, j->sn, j->perm};
  for (size_t e0 = 0; e0 < j->n; e0 += cap) {
    size_t e1 = e0 + cap < j->n ? e0 + cap : j->n, e = e1 - e0;
    for (size_t t = 0; t < (e + 3) / 4; t++) stage_noise(j, tb, e0, e1, cap, theta + e0, X, t);
    for (int k = 0; k < j->M; k++) {
      if (ret) stage_rows_in(j, k, e0, e1, ret[k], R + (size_t)k * cap);
      for (size_t t = 0; t < stage_items(&j->L, e); t++)
        stage_publish(j, tb, k, e0, X + (size_t)k * cap, O + (size_t)k * cap, ret ? R + (size_t)k * cap : NULL,
                      ret ? Dl + (size_t)k * cap : NULL, t);
      stage_rows_out(j, k, e0, e1, O + (size_t)k * cap, pub[k]);
      if (ret) memcpy(delta[k] + e0, Dl + (size_t)k * cap, e * sizeof(float));
    }
  }
  free(X), free(O), free(R), free(Dl);
  return 0;
}

#endif
