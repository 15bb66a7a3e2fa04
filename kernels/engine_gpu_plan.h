/*
 * engine_gpu_plan.h -- where the GPU engine's activations and backward
 * buffers lie in its one device allocation, for B sequences of T tokens.
 *
 * Plain C that also compiles as CUDA: kernels/engine_gpu.cu lays out its
 * memory with it and tests/unit/test_engine_gpu.c checks it on machines
 * without a GPU (every buffer 256-byte aligned for cuBLAS, none overlapping,
 * the total the sum of the parts).  Sizes are in floats.
 */
#ifndef MPU_ENGINE_GPU_PLAN_H
#define MPU_ENGINE_GPU_PLAN_H

#include <stddef.h>

/* 64 floats: 256 bytes, cuBLAS's preferred alignment */
#define EGPU_ALIGN 64

/* Offsets inside one layer's block. */
typedef struct {
  size_t in, ln1, rstd1, q, k, v, att, atty, mid, ln2, rstd2, gate, up, act;
} egpu_layer_acts;

typedef struct {
  size_t N;            /* B*T */
  size_t per_layer;    /* floats in one layer's block; block l starts at l*per_layer */
  egpu_layer_acts l;
  /* after the layers */
  size_t emb, out, lnf, rstdf, logits, lse, nll, w;
  size_t cos, sin;     /* rotary tables [T, D/2] */
  /* backward buffers, shared by the layers */
  size_t dres, dln, dmid, dq, datty, dk, dv, dgate, dup, dact;
  size_t ds;           /* d attention probabilities, [B,Hq,T,T] */
  size_t kx, vx, dkx, dvx; /* keys/values repeated to Hq heads (GQA only; else size 0) */
  size_t total;
} egpu_plan_t;

static inline size_t egpu_round(size_t n) { return (n + EGPU_ALIGN - 1) / EGPU_ALIGN * EGPU_ALIGN; }

/* Takes n floats at *at (rounded up), returns where they start. */
static inline size_t egpu_take(size_t *at, size_t n) {
  size_t o = *at;
  *at += egpu_round(n);
  return o;
}

/* Fills p for B x T tokens of a model with hidden H, intermediate F,
 * vocabulary V, Hq query and Hkv key/value heads of D, L layers; returns
 * p->total. */
static inline size_t egpu_plan_acts(egpu_plan_t *p, size_t B, size_t T, size_t H, size_t F, size_t V, size_t Hq,
                                    size_t Hkv, size_t D, size_t L) {
  size_t N = B * T, Q = Hq * D, KV = Hkv * D, att = B * Hq * T * T, at = 0;
  int gqa = Hq != Hkv;
  p->N = N;
  egpu_layer_acts *a = &p->l;
  a->in = egpu_take(&at, N * H);
  a->ln1 = egpu_take(&at, N * H);
  a->rstd1 = egpu_take(&at, N);
  a->q = egpu_take(&at, N * Q);
  a->k = egpu_take(&at, N * KV);
  a->v = egpu_take(&at, N * KV);
  a->att = egpu_take(&at, att);
  a->atty = egpu_take(&at, N * Q);
  a->mid = egpu_take(&at, N * H);
  a->ln2 = egpu_take(&at, N * H);
  a->rstd2 = egpu_take(&at, N);
  a->gate = egpu_take(&at, N * F);
  a->up = egpu_take(&at, N * F);
  a->act = egpu_take(&at, N * F);
  p->per_layer = at;
  at = L * p->per_layer;
  p->emb = egpu_take(&at, N * H);
  p->out = egpu_take(&at, N * H);
  p->lnf = egpu_take(&at, N * H);
  p->rstdf = egpu_take(&at, N);
  p->logits = egpu_take(&at, N * V);
  p->lse = egpu_take(&at, N);
  p->nll = egpu_take(&at, N);
  p->w = egpu_take(&at, N);
  p->cos = egpu_take(&at, T * (D / 2));
  p->sin = egpu_take(&at, T * (D / 2));
  p->dres = egpu_take(&at, N * H);
  p->dln = egpu_take(&at, N * H);
  p->dmid = egpu_take(&at, N * H);
  p->dq = egpu_take(&at, N * Q);
  p->datty = egpu_take(&at, N * Q);
  p->dk = egpu_take(&at, N * KV);
  p->dv = egpu_take(&at, N * KV);
  p->dgate = egpu_take(&at, N * F);
  p->dup = egpu_take(&at, N * F);
  p->dact = egpu_take(&at, N * F);
  p->ds = egpu_take(&at, att);
  p->kx = egpu_take(&at, gqa ? N * Q : 0);
  p->vx = egpu_take(&at, gqa ? N * Q : 0);
  p->dkx = egpu_take(&at, gqa ? N * Q : 0);
  p->dvx = egpu_take(&at, gqa ? N * Q : 0);
  p->total = at;
  return at;
}

#endif
