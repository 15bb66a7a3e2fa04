/*
 * reparam.h -- MPU's per-element math, written once for the CPU and CUDA
 * (spec/protocol.md, "Perturbation" and "Aggregation"):
 *
 *   zero-sum noise    eps0_k = c (z_k - mean z), the last copy minus the sum
 *                     of the others, so sum_k eps0_k == 0 exactly in float
 *   rotations         the RoPE-plane 2x2 rotations of the attention heads
 *   permutations      of the FFN's intermediate neurons
 *   aggregation       theta + eta * sum_k w_k delta_k, accumulated in double
 *
 * Every product and sum is one IEEE operation in a fixed order (no fused
 * multiply-add: CPU code is built with -ffp-contract=off, CUDA with
 * -fmad=false and the _rn intrinsics of hd.h), so the CPU and the GPU
 * produce the same bits.  The kernels (kernels/stage.h) call these
 * functions; nothing of this math is written twice.
 */
#ifndef MPU_REPARAM_H
#define MPU_REPARAM_H

#include <stddef.h>
#include <stdint.h>

#include "fp.h"
#include "hd.h"
#include "rng.h"

#define RP_MAX_COPIES 64 /* perturb refuses more */

/* The Philox counter of block b of a tensor's noise. */
MPU_HD rng_u4 noise_counter(uint64_t b) {
  rng_u4 ctr = {{(uint32_t)b, (uint32_t)(b >> 32), 0, 0}};
  return ctr;
}

/* The zero-sum noise of one element for every copy: eps0[k * stride] for
 * copy k from its standard normal z[k * stride] (scaled in place by sigma);
 * c = sqrt(M/(M-1)) rounded to float.  Sums run in order of k. */
MPU_HD void zero_sum_slot(float *eps0, float *z, size_t stride, int M, float sigma, float c) {
  float mean = 0, sum = 0;
  for (int k = 0; k < M; k++) {
    z[k * stride] = FMUL(sigma, z[k * stride]);
    mean = FADD(mean, z[k * stride]);
  }
  mean = mean / (float)M;
  for (int k = 0; k < M - 1; k++) {
    eps0[k * stride] = FMUL(c, FSUB(z[k * stride], mean));
    sum = FADD(sum, eps0[k * stride]);
  }
  eps0[(size_t)(M - 1) * stride] = -sum;
}

/* The zero-sum noise of elements 4b..4b+3 of one tensor for every copy:
 * eps0[k][j] for copy k and element 4b+j, from the copies' standard normals
 * z[k][0..3] of block b (scaled in place by sigma).  Each element on its
 * own (zero_sum_slot): the four never mix. */
MPU_HD void zero_sum4(float (*eps0)[4], float (*z)[4], int M, float sigma, float c) {
  for (int j = 0; j < 4; j++) zero_sum_slot(&eps0[0][j], &z[0][j], 4, M, sigma, c);
}

/* A noised element of copy k: theta + alpha_k eps0_k. */
MPU_HD float noised(float theta, float alpha, float eps0) { return FADD(theta, FMUL(alpha, eps0)); }

/* x rounded through a tensor's dtype (--dtype keep): RP_ROUND_NONE keeps
 * fp32, else bf16 or IEEE half, round to nearest even (lib/fp.h). */
enum { RP_ROUND_NONE = 0, RP_ROUND_BF16 = 1, RP_ROUND_F16 = 2 };
MPU_HD float round_through(float x, int how) {
  return how == RP_ROUND_BF16 ? bf16_to_f32(f32_to_bf16(x)) : how == RP_ROUND_F16 ? f16_to_f32(f32_to_f16(x)) : x;
}

/* The same, drawing the normals: keys[k] is copy k's Philox key for this
 * tensor (one Philox block gives the four normals of a block). */
MPU_HD void noise_zero_sum4(float (*eps0)[4], const uint32_t (*keys)[2], int M, uint64_t b, float sigma, float c) {
  float z[RP_MAX_COPIES][4];
  for (int k = 0; k < M; k++) rng_normal4(rng_philox(noise_counter(b), keys[k][0], keys[k][1]), z[k]);
  zero_sum4(eps0, z, M, sigma, c);
}

/* One RoPE-plane rotation: (x, y) on plane (p, p + D/2) of a head.
 * forward:  (c x + s y, -s x + c y)   -- S^T applied to rows, S to columns
 * inverse:  (c x - s y,  s x + c y) */
MPU_HD void rotate_pair(float *x, float *y, float c, float s, int inverse) {
  float a = *x, b = *y;
  if (!inverse) {
    *x = FADD(FMUL(c, a), FMUL(s, b));
    *y = FSUB(FMUL(c, b), FMUL(s, a));
  } else {
    *x = FSUB(FMUL(c, a), FMUL(s, b));
    *y = FADD(FMUL(s, a), FMUL(c, b));
  }
}

/* The angles of one copy's rotations in one layer: for kv head j and plane p
 * (p < D/2), phi ~ U[0, 2 pi) from Philox(key, counter j*D/2 + p). */
MPU_HD void rotation_angle(const uint32_t key[2], uint64_t index, float *c, float *s) {
  rng_u4 ctr = {{(uint32_t)index, (uint32_t)(index >> 32), 0x726f7461u /* "rota" */, 0}};
  rng_u4 r = rng_philox(ctr, key[0], key[1]);
  double sn, cs;
  rng_sincos2pi((double)r.v[0] * (1.0 / 4294967296.0), &sn, &cs);
  *c = (float)cs;
  *s = (float)sn;
}

/* Rotates the heads of a [heads*D, cols] row-major matrix (q/k/v weights, or
 * a bias with cols = 1): head h uses kv head h / rep's angles cs/sn[j*D/2 + p]. */
MPU_HD void rotate_rows(float *w, size_t heads, size_t D, size_t cols, size_t rep, const float *cs, const float *sn,
                       int inverse) {
  size_t half = D / 2;
  for (size_t h = 0; h < heads; h++)
    for (size_t p = 0; p < half; p++) {
      size_t a = (h / rep) * half + p;
      float *ra = w + (h * D + p) * cols, *rb = w + (h * D + p + half) * cols;
      for (size_t col = 0; col < cols; col++) rotate_pair(ra + col, rb + col, cs[a], sn[a], inverse);
    }
}

/* Rotates the column blocks of a [rows, heads*D] matrix (the output projection). */
MPU_HD void rotate_cols(float *w, size_t rows, size_t heads, size_t D, size_t rep, const float *cs, const float *sn,
                       int inverse) {
  size_t half = D / 2, width = heads * D;
  for (size_t r = 0; r < rows; r++)
    for (size_t h = 0; h < heads; h++)
      for (size_t p = 0; p < half; p++) {
        size_t a = (h / rep) * half + p;
        float *row = w + r * width + h * D;
        rotate_pair(row + p, row + p + half, cs[a], sn[a], inverse);
      }
}

/* The FFN permutation of one copy and layer: Fisher-Yates from Philox. */
static inline void permutation_make(uint32_t *perm, size_t n, const uint32_t key[2]) {
  for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
  for (size_t i = n; i > 1; i--) {
    rng_u4 ctr = {{(uint32_t)i, 0, 0x7065726du /* "perm" */, 0}};
    rng_u4 r = rng_philox(ctr, key[0], key[1]);
    size_t j = (size_t)((((uint64_t)r.v[0] << 32) | r.v[1]) % i);
    uint32_t t = perm[i - 1];
    perm[i - 1] = perm[j];
    perm[j] = t;
  }
}

/* Rows of a [n, cols] matrix: forward out[r] = in[perm[r]]; inverse out[perm[r]] = in[r]. */
static inline void permute_rows(float *out, const float *in, const uint32_t *perm, size_t n, size_t cols, int inverse) {
  for (size_t r = 0; r < n; r++) {
    const float *src = in + (size_t)(inverse ? r : perm[r]) * cols;
    float *dst = out + (size_t)(inverse ? perm[r] : r) * cols;
    for (size_t c = 0; c < cols; c++) dst[c] = src[c];
  }
}

/* Columns of a [rows, n] matrix, the same way. */
static inline void permute_cols(float *out, const float *in, const uint32_t *perm, size_t rows, size_t n, int inverse) {
  for (size_t r = 0; r < rows; r++)
    for (size_t c = 0; c < n; c++) {
      if (inverse) out[r * n + perm[c]] = in[r * n + c];
      else out[r * n + c] = in[r * n + perm[c]];
    }
}

/* Which T_k a tensor gets, and its shape as the transforms see it (the
 * CPU's transform() and the kernels read the same description). */
enum { RP_NONE = 0, RP_ROT_ROWS, RP_ROT_COLS, RP_PERM_ROWS, RP_PERM_COLS };
typedef struct {
  int kind;
  size_t rows, cols; /* the tensor as [rows, cols]; a bias has cols = 1 */
  size_t heads, D;   /* rotations: heads * D rows (ROT_ROWS) or columns (ROT_COLS) */
  size_t rep;        /* query heads per kv head (1 for k and v) */
} rp_layout;

/* theta + eta * sum_k w_k delta_k for one element, in double, copies in order. */
MPU_HD float aggregate(float theta, const float *delta, size_t stride, const double *w, int M, double eta) {
  double acc = 0.0;
  for (int k = 0; k < M; k++) acc = DADD(acc, DMUL(w[k], (double)delta[(size_t)k * stride]));
  return (float)DADD((double)theta, DMUL(eta, acc));
}

#endif
