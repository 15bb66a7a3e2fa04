/*
 * model.h -- a Llama-family model in fp32 on the CPU: parameters, gradients
 * and activations, each in one allocation with named views into it (as
 * llm.c does), forward and backward through the whole stack.
 *
 *   model_load      from an .mpuc stream (any float dtype; computed in fp32)
 *   model_plan      activations for at most B sequences of T tokens
 *   model_forward   ids[B,T] -> per-position NLL of targets[B,T] (target < 0: unscored)
 *   model_backward  accumulates into the gradients d(sum w_n nll_n)/d(params)
 *   model_save      back to a stream, each tensor in its original dtype or another
 */
#ifndef MPU_MODEL_H
#define MPU_MODEL_H

#include <stdint.h>

#include "llama.h"
#include "mstream.h"

/* Where a model computes: the CPU (the reference) or a CUDA GPU
 * (kernels/engine_gpu.h).  AUTO: the GPU when there is one. */
enum { MODEL_CPU = 0, MODEL_CUDA = 1, MODEL_AUTO = -1 };
struct egpu;

typedef struct {
  float *attn_norm, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;
  float *mlp_norm, *wg, *bg, *wu, *bu, *wd, *bd;
} layer_view;

/* Pointers into one flat array (parameters, gradients or optimizer state). */
typedef struct {
  float *embed, *final_norm, *lm_head; /* lm_head == embed when tied */
  layer_view *layer;
} param_view;

/* Per-layer activations kept for the backward. */
typedef struct {
  float *in;           /* [N,H] residual stream entering the layer */
  float *ln1, *rstd1;  /* [N,H], [N] */
  float *q, *k, *v;    /* [N,Q], [N,KV], [N,KV] after bias and RoPE */
  float *att;          /* [B,Hq,T,T] */
  float *atty;         /* [N,Q] */
  float *mid;          /* [N,H] residual after attention */
  float *ln2, *rstd2;  /* [N,H], [N] */
  float *gate, *up, *act; /* [N,F] each */
} layer_acts;

/* A tensor the engine does not compute with, kept to be written back as it
 * came (e.g. rotary_emb.inv_freq buffers of old checkpoints). */
typedef struct {
  mpuc_entry entry;
  char *name;
  uint8_t *data;
} passthrough;

typedef struct {
  llama_config c;
  json_t *header;          /* the input stream's header (config, blobs, listing) */
  int copy;                /* 1-based copy taken from a multi-copy stream; 0: single */
  llama_tensor *tensors;   /* the tensors the engine computes with */
  size_t ntensors;
  size_t *offset;          /* each tensor's offset in the flat arrays */
  int *dtype;              /* each tensor's dtype in the input stream */
  uint8_t *shared;         /* each tensor: one entry for every copy in the input */
  uint8_t *frozen;         /* each tensor: not trained (the optimizer leaves it) */
  size_t nparams;
  float *params, *grads;
  param_view P, G;
  passthrough *extra;      /* tensors not in the layout, in stream order */
  size_t nextra;
  struct {
    char *name;
    uint8_t *data;
    size_t size;
  } *blobs;
  size_t nblobs;
  float *inv_freq;         /* [D/2] */
  /* activations, planned by model_plan */
  size_t maxB, maxT, B, T;
  float *acts_mem;
  layer_acts *L;
  float *emb, *out, *lnf, *rstdf, *logits, *lse, *nll;
  float *rope_cos, *rope_sin;
  float *scratch;          /* backward buffers */
  int32_t *ids, *targets;
  /* key/value cache for decoding */
  float *kv_mem, **kcache, **vcache, *dec;
  size_t kv_len;
  /* the GPU engine, when device is MODEL_CUDA: attached at the first plan,
   * gradient zeroing or decoding; from then on it holds the authoritative
   * parameters, gradients and optimizer moments, and the host arrays are
   * brought up to date only when asked (model_sync_host, model_save,
   * model_copy, model_release_work).  The host keeps nll, lse and (when
   * fetched) logits. */
  int device, math;        /* MODEL_CPU / MODEL_CUDA; EGPU_MATH_* */
  struct egpu *gpu;
  int logits_stale;        /* the host's logits are not the last forward's */
  mpu_err gpu_err;         /* the first GPU failure, for the calls that return no status */
} model;

/* Reads a whole model (copy `copy`, 0-based, of a multi-copy stream; -1 for a
 * single-copy stream).  Every tensor is checked against the config's layout. */
int model_load(model *m, ms_reader *in, int copy, mpu_err *e);
/* Copies first..first+count-1 (0-based) of a stream into ms[0..count), in one
 * pass (a pipe cannot be read twice). */
int model_load_copies(model *const *ms, int first, int count, ms_reader *in, mpu_err *e);
void model_free(model *m);
/* A second model with the same layout and weights (no gradients), e.g. a
 * frozen teacher. */
int model_copy(model *dst, const model *src, mpu_err *e);
/* Plans activations for up to B sequences of up to T tokens. */
int model_plan(model *m, size_t B, size_t T, mpu_err *e);
/* Forward over ids[B*T] (row-major, B <= maxB, T <= maxT).  targets[n] is the
 * token position n predicts (-1: unscored).  Fills m->nll[B*T], m->lse and
 * m->logits (on the GPU: nll and lse; logits with model_fetch_logits).
 * Returns 0, or a status with the reason in m->gpu_err (GPU failures only). */
int model_forward(model *m, const int32_t *ids, const int32_t *targets, size_t B, size_t T);
/* Backward of sum_n w[n] * nll[n] after model_forward; adds into m->grads. */
int model_backward(model *m, const float *w);
/* Backward from gradients the caller wrote into m->logits (d loss / d logits,
 * [B*T, V]) in place of the logits, for losses that are not a weighting of
 * the NLL (soft targets).  On the GPU, fetch the logits first. */
int model_backward_logits(model *m);

/* Chooses the device (MODEL_CPU, MODEL_CUDA; AUTO is resolved by
 * engine_set_device) and, for CUDA, how cuBLAS computes (EGPU_MATH_*).
 * Fails when CUDA is asked for and cannot be used, saying why. */
int model_set_device(model *m, int device, int math, mpu_err *e);
/* Makes m->logits the last forward's (a copy from the GPU; nothing on the CPU). */
int model_fetch_logits(model *m, mpu_err *e);
/* Makes m->grads (allocated if need be) and m->params the GPU's. */
int model_fetch_grads(model *m, mpu_err *e);
int model_sync_host(model *m, mpu_err *e);
/* m->gpu_err copied into e (a GPU failure a call without a status met). */
int model_error(const model *m, mpu_err *e);
/* Zeroes the gradients (allocating them the first time). */
int model_zero_grad(model *m, mpu_err *e);
/* Frees gradients and activations, keeping the weights (a copy done with). */
void model_release_work(model *m);
/* Which parameters take weight decay (Hugging Face's Trainer rule: all but
 * biases and norm weights): fills a per-tensor flag array. */
void model_decay_mask(const model *m, uint8_t *decay);

/* Incremental decoding of one sequence with a key/value cache: positions
 * 0, 1, 2, ... fed one token at a time; returns the logits [V] for the next
 * token (valid until the next call). */
int model_decode_init(model *m, size_t max_len, mpu_err *e);
const float *model_decode_step(model *m, int32_t token, size_t pos); /* NULL: failed (model_error) */

/* Writes models ms[0..M) as copies 0..M-1 of one stream (tensor-major) to
 * path (NULL: stdout).  dtype: MPUC_DT_F32, BF16 or F16 for every float
 * tensor, or 0 to keep each tensor's own dtype.  header is the new stream's
 * header object (stolen); its listing, blobs, copies and model description
 * are filled in here from ms[0]'s input. */
int model_save(model *const *ms, int M, const char *path, const stream_options *o, int dtype, json_t *header,
               const char *extra_json, mpu_err *e);

#endif
