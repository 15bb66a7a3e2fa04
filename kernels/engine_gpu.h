/*
 * engine_gpu.h -- the Llama-family engine on an NVIDIA GPU: the C face of
 * kernels/engine_gpu.cu (cuBLAS for the matrix products, own kernels for the
 * rest), in the same shape as lib/model.c's CPU engine so that model.c can
 * hand it the work when the device is cuda.
 *
 * The GPU keeps its own copy of the parameters (uploaded at egpu_open), the
 * gradients, the AdamW moments and the activations; the host sees per-token
 * NLL and log-sum-exp after every forward, and logits, gradients and
 * parameters when it asks.  Everything is fp32 in memory; `math` says how
 * cuBLAS may compute the products (exact fp32, TF32 or bf16 tensor cores).
 *
 * Built without CUDA (MPU_CUDA=0), kernels/engine_gpu_stub.c provides the same functions:
 * egpu_probe says why there is no GPU and everything else fails.
 *
 * Every function that can fail returns 0 or an mpu_err status (lib/err.h).
 */
#ifndef MPU_ENGINE_GPU_H
#define MPU_ENGINE_GPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "err.h" /* C functions, also from the CUDA side */

/* An absent tensor (a bias the architecture lacks). */
#define EGPU_NONE ((size_t)-1)

/* How cuBLAS computes the matrix products. */
enum { EGPU_MATH_FP32 = 0, EGPU_MATH_TF32 = 1, EGPU_MATH_BF16 = 2 };

/* Offsets of one layer's tensors in the flat parameter array. */
typedef struct {
  size_t attn_norm, wq, bq, wk, bk, wv, bv, wo, bo;
  size_t mlp_norm, wg, bg, wu, bu, wd, bd;
} egpu_layer;

/* The model as the GPU needs it: sizes, and where each tensor lies in the
 * flat parameter array (the host's layout, so gradients and parameters copy
 * back as one block). */
typedef struct {
  size_t vocab, hidden, inter, layers, heads, kv_heads, head_dim, window;
  float eps;
  size_t nparams;
  size_t embed, final_norm, lm_head; /* lm_head == embed when tied */
  const egpu_layer *layer;           /* [layers] */
  size_t ntensors;
  const size_t *tensor_offset;       /* [ntensors], ascending; tensor t ends where t+1 begins */
} egpu_model;

typedef struct egpu egpu;

/* 0 when a CUDA device can be used; otherwise a status and, in e, why not
 * (no CUDA in this build, no device, a driver error). */
int egpu_probe(mpu_err *e);
/* Parameters uploaded, a cuBLAS handle made; math is EGPU_MATH_*. */
int egpu_open(egpu **g, const egpu_model *d, const float *params, int math, mpu_err *e);
void egpu_close(egpu *g);

/* Activations for up to B sequences of T tokens; cos/sin are the rotary
 * tables [T, head_dim/2] (ops.c's rope_tables, so both engines use one). */
int egpu_plan(egpu *g, size_t B, size_t T, const float *cos, const float *sin, mpu_err *e);
/* Forward over ids[B*T]; targets[n] < 0 is unscored.  nll[B*T] and lse[B*T]
 * come back to the host. */
int egpu_forward(egpu *g, const int32_t *ids, const int32_t *targets, size_t B, size_t T, float *nll, float *lse,
                 mpu_err *e);
/* The last forward's logits [B*T, V] to the host. */
int egpu_get_logits(egpu *g, float *logits, mpu_err *e);
/* Backward of sum_n w[n] nll[n] (w != NULL), or from d loss / d logits the
 * host gives in dlogits[B*T, V] (w == NULL); adds into the gradients. */
int egpu_backward(egpu *g, const float *w, const float *dlogits, mpu_err *e);

/* Gradients: zeroed (allocated the first time); copied to the host. */
int egpu_zero_grad(egpu *g, mpu_err *e);
int egpu_get_grads(egpu *g, float *grads, mpu_err *e);
int egpu_get_params(egpu *g, float *params, mpu_err *e);

/* L2 norm of the gradients of the tensors with skip[t] == 0 (skip may be
 * NULL), in double, over fixed blocks added in order (deterministic). */
int egpu_grad_norm(egpu *g, const uint8_t *skip, double *norm, mpu_err *e);

/* One optimizer update of every tensor with skip[t] == 0: the gradient
 * times scale (clipping), then torch.optim.AdamW's single-tensor update
 * (sgd != 0: torch.optim.SGD).  wd[t] is tensor t's weight decay.  first:
 * the moments start from zero (a new optimizer). */
typedef struct {
  int sgd, first;
  float lr, beta1, beta2, eps, scale, step_size, bc2_sqrt;
  const float *wd;
  const uint8_t *skip;
} egpu_step_args;
int egpu_step(egpu *g, const egpu_step_args *a, mpu_err *e);

/* Incremental decoding of one sequence with a key/value cache: the rotary
 * tables hold max_len positions; logits[V] of the next token to the host. */
int egpu_decode_init(egpu *g, size_t max_len, const float *cos, const float *sin, mpu_err *e);
int egpu_decode_step(egpu *g, int32_t token, size_t pos, float *logits, mpu_err *e);

/* Bytes of device memory in use by this engine (parameters, gradients,
 * moments, activations, cache), for reports. */
size_t egpu_bytes(const egpu *g);

#ifdef __cplusplus
}
#endif

#endif
