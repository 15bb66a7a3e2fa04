/*
 * model_gpu.c -- a model's work handed to the GPU engine (see model_gpu.h).
 */
#include "model_gpu.h"

#include <stdlib.h>
#include <string.h>

#include "ops.h"

static size_t off(const model *m, const float *p) { return p ? (size_t)(p - m->params) : EGPU_NONE; }

void model_gpu_layout(const model *m, egpu_model *d, egpu_layer *layers) {
  const llama_config *c = &m->c;
  memset(d, 0, sizeof *d);
  d->vocab = (size_t)c->vocab;
  d->hidden = (size_t)c->hidden;
  d->inter = (size_t)c->inter;
  d->layers = (size_t)c->layers;
  d->heads = (size_t)c->heads;
  d->kv_heads = (size_t)c->kv_heads;
  d->head_dim = (size_t)c->head_dim;
  d->window = (size_t)c->sliding_window;
  d->eps = (float)c->eps; /* model.c passes (float)c->eps to the CPU's norms */
  d->nparams = m->nparams;
  d->embed = off(m, m->P.embed);
  d->final_norm = off(m, m->P.final_norm);
  d->lm_head = off(m, m->P.lm_head);
  for (size_t l = 0; l < d->layers; l++) {
    const layer_view *v = &m->P.layer[l];
    layers[l] = (egpu_layer){off(m, v->attn_norm), off(m, v->wq), off(m, v->bq), off(m, v->wk), off(m, v->bk),
                             off(m, v->wv), off(m, v->bv), off(m, v->wo), off(m, v->bo), off(m, v->mlp_norm),
                             off(m, v->wg), off(m, v->bg), off(m, v->wu), off(m, v->bu), off(m, v->wd), off(m, v->bd)};
  }
  d->layer = layers;
  d->ntensors = m->ntensors;
  d->tensor_offset = m->offset;
}

int model_gpu_attach(model *m, mpu_err *e) {
  if (m->gpu || m->device != MODEL_CUDA) return 0;
  egpu_layer *layers = malloc(((size_t)m->c.layers + 1) * sizeof *layers);
  if (!layers) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  egpu_model d;
  model_gpu_layout(m, &d, layers);
  int rc = egpu_open(&m->gpu, &d, m->params, m->math, e);
  free(layers);
  return rc;
}

int model_gpu_detach(model *m, mpu_err *e) {
  if (!m->gpu) return 0;
  int rc = egpu_get_params(m->gpu, m->params, e);
  egpu_close(m->gpu);
  m->gpu = NULL;
  return rc;
}

int model_gpu_plan(model *m, size_t B, size_t T, mpu_err *e) {
  if (model_gpu_attach(m, e)) return e->status;
  if (m->acts_mem && !m->L && B <= m->maxB && T <= m->maxT) return 0;
  free(m->acts_mem);
  free(m->L);
  free(m->ids);
  m->L = NULL;
  m->acts_mem = NULL;
  size_t N = B * T, V = (size_t)m->c.vocab, half = (size_t)m->c.head_dim / 2;
  m->acts_mem = malloc((N * V + 2 * N + 2 * T * half + 1) * sizeof(float));
  m->ids = malloc((2 * N + 1) * sizeof(int32_t));
  if (!m->acts_mem || !m->ids) {
    free(m->acts_mem);
    m->acts_mem = NULL;
    return mpu_fail(e, MPU_EUSAGE, "out of memory for the logits of %zu x %zu tokens (%.2f GB)", B, T, N * V * 4e-9);
  }
  m->targets = m->ids + N;
  m->logits = m->acts_mem;
  m->lse = m->logits + N * V;
  m->nll = m->lse + N;
  m->rope_cos = m->nll + N;
  m->rope_sin = m->rope_cos + T * half;
  /* what only the CPU engine uses stays unset */
  m->emb = m->out = m->lnf = m->rstdf = m->scratch = NULL;
  rope_tables(m->rope_cos, m->rope_sin, m->inv_freq, T, (size_t)m->c.head_dim);
  if (egpu_plan(m->gpu, B, T, m->rope_cos, m->rope_sin, e)) {
    free(m->acts_mem);
    m->acts_mem = NULL;
    return e->status;
  }
  m->maxB = B;
  m->maxT = T;
  m->logits_stale = 1;
  return 0;
}

int model_gpu_decode_init(model *m, size_t max_len, mpu_err *e) {
  if (model_gpu_attach(m, e)) return e->status;
  size_t half = (size_t)m->c.head_dim / 2, V = (size_t)m->c.vocab;
  free(m->kv_mem);
  free(m->kcache);
  m->kcache = m->vcache = NULL;
  /* host: the logits of a step, then the tables for the upload */
  m->kv_mem = malloc((V + 2 * max_len * half + 1) * sizeof(float));
  if (!m->kv_mem) return mpu_fail(e, MPU_EUSAGE, "out of memory for a %zu-token cache", max_len);
  m->dec = m->kv_mem;
  float *cosv = m->kv_mem + V, *sinv = cosv + max_len * half;
  rope_tables(cosv, sinv, m->inv_freq, max_len, (size_t)m->c.head_dim);
  if (egpu_decode_init(m->gpu, max_len, cosv, sinv, e)) return e->status;
  m->kv_len = max_len;
  return 0;
}

void model_gpu_decay(const model *m, const uint8_t *decay, double weight_decay, float *wd) {
  for (size_t t = 0; t < m->ntensors; t++) wd[t] = decay[t] ? (float)weight_decay : 0.0f;
}
