/*
 * model.c -- loading, running and saving a Llama-family model (see model.h).
 */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fp.h"
#include "jsonx.h"
#include "model_gpu.h"
#include "ops.h"
#include "prov.h"

/* ---------------------------------------------------------------- layout */
static float **view_slot(param_view *v, int role, int layer) {
  layer_view *l = layer >= 0 ? &v->layer[layer] : NULL;
  switch (role) {
  case LT_EMBED: return &v->embed;
  case LT_FINAL_NORM: return &v->final_norm;
  case LT_LM_HEAD: return &v->lm_head;
  case LT_ATTN_NORM: return &l->attn_norm;
  case LT_Q: return &l->wq;
  case LT_Q_BIAS: return &l->bq;
  case LT_K: return &l->wk;
  case LT_K_BIAS: return &l->bk;
  case LT_V: return &l->wv;
  case LT_V_BIAS: return &l->bv;
  case LT_O: return &l->wo;
  case LT_O_BIAS: return &l->bo;
  case LT_MLP_NORM: return &l->mlp_norm;
  case LT_GATE: return &l->wg;
  case LT_GATE_BIAS: return &l->bg;
  case LT_UP: return &l->wu;
  case LT_UP_BIAS: return &l->bu;
  case LT_DOWN: return &l->wd;
  case LT_DOWN_BIAS: return &l->bd;
  }
  return NULL;
}

static void point(param_view *v, const model *m, float *base) {
  memset(v->layer, 0, (size_t)m->c.layers * sizeof *v->layer);
  v->embed = v->final_norm = v->lm_head = NULL;
  for (size_t i = 0; i < m->ntensors; i++)
    *view_slot(v, m->tensors[i].role, m->tensors[i].layer) = base + m->offset[i];
  if (m->c.tied) v->lm_head = v->embed;
}

static uint64_t elems(const llama_tensor *t) { return t->dims[0] * (t->ndim > 1 ? t->dims[1] : 1); }

/* ---------------------------------------------------------------- loading */
static int to_f32(float *dst, const uint8_t *src, uint64_t n, int dtype) {
  switch (dtype) {
  case MPUC_DT_F32: memcpy(dst, src, n * 4); return 0;
  case MPUC_DT_BF16:
    for (uint64_t i = 0; i < n; i++) dst[i] = bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    return 0;
  case MPUC_DT_F16:
    for (uint64_t i = 0; i < n; i++) dst[i] = f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    return 0;
  }
  return -1;
}

/* One model's layout and memory, from the stream's header. */
static int model_setup(model *m, ms_reader *in, mpu_err *e) {
  memset(m, 0, sizeof *m);
  m->header = json_incref(in->header);
  if (llama_config_parse(json_object_get(in->header, "config"), &m->c, e)) return mpu_fail_ctx(e, "%s", in->name);
  m->ntensors = llama_tensors(&m->c, &m->tensors);
  m->offset = calloc(m->ntensors + 1, sizeof *m->offset);
  m->dtype = calloc(m->ntensors + 1, sizeof *m->dtype);
  m->shared = calloc(m->ntensors + 1, 1);
  m->frozen = calloc(m->ntensors + 1, 1);
  m->P.layer = calloc((size_t)m->c.layers, sizeof(layer_view));
  m->G.layer = calloc((size_t)m->c.layers, sizeof(layer_view));
  if (!m->tensors || !m->offset || !m->dtype || !m->shared || !m->frozen || !m->P.layer || !m->G.layer)
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  for (size_t i = 0; i < m->ntensors; i++) {
    m->offset[i] = m->nparams;
    m->nparams += elems(&m->tensors[i]);
  }
  /* gradients come with the first model_zero_grad: models that are only
   * scored, or wait their turn to be trained, do without */
  m->params = malloc(m->nparams * sizeof(float));
  if (!m->params)
    return mpu_fail(e, MPU_EUSAGE, "out of memory for %zu parameters (%.1f GB in fp32)", m->nparams, m->nparams * 4e-9);
  point(&m->P, m, m->params);
  return 0;
}

/* Puts one entry's bytes where they belong in m. */
static int model_take(model *m, const mpuc_entry *en, const char *name, const uint8_t *raw, char *seen, mpu_err *e) {
  if (en->kind == MPUC_KIND_BLOB) {
    void *nb = realloc(m->blobs, (m->nblobs + 1) * sizeof *m->blobs);
    if (!nb) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    m->blobs = nb;
    m->blobs[m->nblobs].name = strdup(name);
    m->blobs[m->nblobs].data = malloc(en->raw_size + 1);
    memcpy(m->blobs[m->nblobs].data, raw, en->raw_size);
    m->blobs[m->nblobs].size = (size_t)en->raw_size;
    m->nblobs++;
    return 0;
  }
  int layer, role = llama_role(name, &layer);
  size_t idx = m->ntensors;
  for (size_t i = 0; role >= 0 && i < m->ntensors; i++)
    if (m->tensors[i].role == role && m->tensors[i].layer == layer) idx = i;
  if (idx == m->ntensors) {
    /* Not part of the computation: keep it to write back as it came. */
    void *nx = realloc(m->extra, (m->nextra + 1) * sizeof *m->extra);
    if (!nx) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    m->extra = nx;
    passthrough *x = &m->extra[m->nextra++];
    x->entry = *en;
    x->name = strdup(name);
    x->entry.name = x->name;
    x->data = malloc(en->raw_size + 1);
    memcpy(x->data, raw, en->raw_size);
    return 0;
  }
  llama_tensor *t = &m->tensors[idx];
  int shape_ok = en->ndim == t->ndim && en->dims[0] == t->dims[0] && (t->ndim == 1 || en->dims[1] == t->dims[1]);
  if (!shape_ok) {
    char want[64], got[128] = "";
    snprintf(want, sizeof want, t->ndim == 1 ? "[%llu]" : "[%llu, %llu]", (unsigned long long)t->dims[0],
             (unsigned long long)t->dims[1]);
    for (unsigned d = 0; d < en->ndim; d++)
      snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", d ? ", " : "[", (unsigned long long)en->dims[d]);
    return mpu_fail(e, MPU_EVERIFY, "tensor %s has shape %s%s but the config needs %s", name, got, en->ndim ? "]" : "[]",
                    want);
  }
  if (to_f32(m->params + m->offset[idx], raw, elems(t), en->dtype))
    return mpu_fail(e, MPU_EUSAGE, "tensor %s is %s; the engine computes on F32, BF16 and F16", name,
                    mpuc_dtype_name(en->dtype));
  m->dtype[idx] = en->dtype;
  m->shared[idx] = en->copy == MPUC_COPY_SHARED;
  if (seen[idx]) return mpu_fail(e, MPU_EVERIFY, "tensor %s appears twice", name);
  seen[idx] = 1;
  return 0;
}

static void rope_frequencies(model *m);

int model_load_copies(model *const *ms, int first, int count, ms_reader *in, mpu_err *e) {
  long copies = (long)json_integer_value(json_object_get(in->header, "copies"));
  if (first < 0 || first + count > copies)
    return mpu_fail(e, MPU_EUSAGE, "copies %d..%d: %s holds %ld", first + 1, first + count, in->name, copies);
  int rc = 0;
  char **seen = calloc((size_t)count, sizeof *seen);
  for (int k = 0; !rc && k < count; k++) {
    rc = model_setup(ms[k], in, e);
    if (!rc && !(seen[k] = calloc(ms[k]->ntensors + 1, 1))) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  const mpuc_entry *en;
  int more;
  uint8_t *raw = NULL;
  size_t raw_cap = 0;
  while (!rc && (more = ms_next_entry(in, &en, e)) == 1) {
    char name[MPUC_MAX_NAME + 1];
    ms_entry_name(en, name, sizeof name);
    int all = en->kind == MPUC_KIND_BLOB || en->copy == MPUC_COPY_SHARED || copies == 1;
    int k = all ? -1 : (int)en->copy - first;
    if (!all && (k < 0 || k >= count)) continue; /* another copy: verified, skipped */
    if (en->raw_size > raw_cap) {
      free(raw);
      raw = malloc(raw_cap = en->raw_size);
      if (!raw) {
        rc = mpu_fail(e, MPU_EUSAGE, "out of memory for %s", name);
        break;
      }
    }
    if ((rc = ms_read_entry(in, raw, e))) break;
    for (int j = all ? 0 : k; !rc && j < (all ? count : k + 1); j++) rc = model_take(ms[j], en, name, raw, seen[j], e);
  }
  free(raw);
  if (!rc) rc = e->status;
  for (int k = 0; !rc && k < count; k++)
    for (size_t i = 0; !rc && i < ms[k]->ntensors; i++)
      if (!seen[k][i])
        rc = mpu_fail(e, MPU_EVERIFY, "the checkpoint lacks tensor %s, which the config needs", ms[k]->tensors[i].name);
  for (int k = 0; k < count; k++) {
    free(seen[k]);
    ms[k]->copy = copies > 1 ? first + k + 1 : 0;
    if (!rc) rope_frequencies(ms[k]);
  }
  free(seen);
  return rc;
}

int model_load(model *m, ms_reader *in, int copy, mpu_err *e) {
  long copies = (long)json_integer_value(json_object_get(in->header, "copies"));
  if (copies > 1 && copy < 0) {
    memset(m, 0, sizeof *m);
    return mpu_fail(e, MPU_EUSAGE, "%s holds %ld copies of the model; choose one with --copy K", in->name, copies);
  }
  return model_load_copies(&m, copy < 0 ? 0 : copy, 1, in, e);
}

/* RoPE frequencies, as transformers computes them (in float32). */
static void rope_frequencies(model *m) {
  size_t half = (size_t)m->c.head_dim / 2;
  m->inv_freq = malloc(half * sizeof(float));
  for (size_t i = 0; i < half; i++) {
    float f = (float)(1.0 / pow(m->c.rope_theta, (double)(float)(2 * i) / (double)m->c.head_dim));
    if (m->c.rope_scaling.type == ROPE_LINEAR) {
      f = f / (float)m->c.rope_scaling.factor;
    } else if (m->c.rope_scaling.type == ROPE_LLAMA3) {
      double lo = m->c.rope_scaling.low_freq_factor, hi = m->c.rope_scaling.high_freq_factor;
      double old = (double)m->c.rope_scaling.original_max_pos, factor = m->c.rope_scaling.factor;
      double wavelen = 2 * M_PI / f;
      if (wavelen > old / lo) f = (float)(f / factor);
      else if (wavelen >= old / hi) {
        double smooth = (old / wavelen - lo) / (hi - lo);
        f = (float)((1 - smooth) * f / factor + smooth * f);
      }
    }
    m->inv_freq[i] = f;
  }
}

int model_copy(model *dst, const model *src, mpu_err *e) {
  memset(dst, 0, sizeof *dst);
  /* the GPU holds src's current weights: bring them to src's host copy
   * (stale, not different: src is logically unchanged) */
  if (src->gpu && egpu_get_params(src->gpu, src->params, e)) return e->status;
  dst->device = src->device;
  dst->math = src->math;
  dst->c = src->c;
  dst->copy = src->copy;
  dst->ntensors = src->ntensors;
  dst->nparams = src->nparams;
  dst->tensors = malloc(src->ntensors * sizeof *dst->tensors);
  dst->offset = malloc(src->ntensors * sizeof *dst->offset);
  dst->dtype = malloc(src->ntensors * sizeof *dst->dtype);
  dst->shared = calloc(src->ntensors + 1, 1);
  dst->frozen = calloc(src->ntensors + 1, 1);
  dst->params = malloc(src->nparams * sizeof(float));
  dst->P.layer = calloc((size_t)src->c.layers + 1, sizeof(layer_view));
  dst->G.layer = calloc((size_t)src->c.layers + 1, sizeof(layer_view));
  size_t half = (size_t)src->c.head_dim / 2;
  dst->inv_freq = malloc(half * sizeof(float));
  if (!dst->tensors || !dst->offset || !dst->dtype || !dst->shared || !dst->frozen || !dst->params || !dst->P.layer || !dst->G.layer || !dst->inv_freq)
    return mpu_fail(e, MPU_EUSAGE, "out of memory for a copy of the model");
  memcpy(dst->tensors, src->tensors, src->ntensors * sizeof *dst->tensors);
  memcpy(dst->offset, src->offset, src->ntensors * sizeof *dst->offset);
  memcpy(dst->dtype, src->dtype, src->ntensors * sizeof *dst->dtype);
  memcpy(dst->params, src->params, src->nparams * sizeof(float));
  memcpy(dst->inv_freq, src->inv_freq, half * sizeof(float));
  point(&dst->P, dst, dst->params);
  if (src->header) dst->header = json_incref(src->header);
  return 0;
}

/* ---------------------------------------------------------------- planning */
int model_plan(model *m, size_t B, size_t T, mpu_err *e) {
  if (T > (size_t)m->c.max_pos)
    return mpu_fail(e, MPU_EUSAGE, "sequences of %zu tokens are longer than max_position_embeddings (%lld)", T,
                    (long long)m->c.max_pos);
  if (m->device == MODEL_CUDA) return model_gpu_plan(m, B, T, e);
  if (m->acts_mem && m->L && B <= m->maxB && T <= m->maxT) return 0;
  free(m->acts_mem);
  free(m->L);
  free(m->ids);
  size_t N = B * T, H = (size_t)m->c.hidden, F = (size_t)m->c.inter, V = (size_t)m->c.vocab;
  size_t Q = (size_t)(m->c.heads * m->c.head_dim), KV = (size_t)(m->c.kv_heads * m->c.head_dim);
  size_t Lc = (size_t)m->c.layers, att = B * (size_t)m->c.heads * T * T;
  size_t per_layer = N * H + N * H + N + N * Q + 2 * N * KV + att + N * Q + N * H + N * H + N + 3 * N * F;
  size_t rope = T * (size_t)m->c.head_dim;
  /* backward scratch: dres, dln, dq, dk, dv, datty, dgate, dup, dact, dmid */
  size_t scratch = 3 * N * H + 2 * N * Q + 2 * N * KV + 3 * N * F;
  size_t total = Lc * per_layer + N * H /* emb */ + N * H /* out */ + N * H + N /* lnf */ + N * V + 2 * N + rope + scratch;
  m->acts_mem = malloc(total * sizeof(float));
  m->L = calloc(Lc, sizeof *m->L);
  m->ids = malloc(2 * N * sizeof(int32_t));
  if (!m->acts_mem || !m->L || !m->ids)
    return mpu_fail(e, MPU_EUSAGE, "out of memory planning activations for %zu x %zu tokens (%.2f GB)", B, T,
                    total * 4e-9);
  m->targets = m->ids + N;
  float *p = m->acts_mem;
#define TAKE(ptr, n) do { ptr = p; p += (n); } while (0)
  for (size_t l = 0; l < Lc; l++) {
    layer_acts *a = &m->L[l];
    TAKE(a->in, N * H);
    TAKE(a->ln1, N * H);
    TAKE(a->rstd1, N);
    TAKE(a->q, N * Q);
    TAKE(a->k, N * KV);
    TAKE(a->v, N * KV);
    TAKE(a->att, att);
    TAKE(a->atty, N * Q);
    TAKE(a->mid, N * H);
    TAKE(a->ln2, N * H);
    TAKE(a->rstd2, N);
    TAKE(a->gate, N * F);
    TAKE(a->up, N * F);
    TAKE(a->act, N * F);
  }
  TAKE(m->emb, N * H);
  TAKE(m->out, N * H);
  TAKE(m->lnf, N * H);
  TAKE(m->rstdf, N);
  TAKE(m->logits, N * V);
  TAKE(m->lse, N);
  TAKE(m->nll, N);
  TAKE(m->rope_cos, rope / 2);
  TAKE(m->rope_sin, rope / 2);
  TAKE(m->scratch, scratch);
#undef TAKE
  m->maxB = B;
  m->maxT = T;
  rope_tables(m->rope_cos, m->rope_sin, m->inv_freq, T, (size_t)m->c.head_dim);
  return 0;
}

/* ---------------------------------------------------------------- forward */
int model_forward(model *m, const int32_t *ids, const int32_t *targets, size_t B, size_t T) {
  if (m->gpu) {
    m->B = B;
    m->T = T;
    memcpy(m->ids, ids, B * T * sizeof *ids);
    memcpy(m->targets, targets, B * T * sizeof *targets);
    m->logits_stale = 1;
    return egpu_forward(m->gpu, ids, targets, B, T, m->nll, m->lse, &m->gpu_err);
  }
  const llama_config *c = &m->c;
  size_t N = B * T, H = (size_t)c->hidden, F = (size_t)c->inter, V = (size_t)c->vocab, D = (size_t)c->head_dim;
  size_t Hq = (size_t)c->heads, Hkv = (size_t)c->kv_heads, Q = Hq * D, KV = Hkv * D;
  m->B = B;
  m->T = T;
  memcpy(m->ids, ids, N * sizeof *ids);
  memcpy(m->targets, targets, N * sizeof *targets);
  /* The rope tables hold maxT rows; positions are per sequence. */
  embed_forward(m->emb, ids, m->P.embed, N, H);
  const float *x = m->emb;
  for (size_t l = 0; l < (size_t)c->layers; l++) {
    layer_acts *a = &m->L[l];
    layer_view *w = &m->P.layer[l];
    if (x != a->in) memcpy(a->in, x, N * H * sizeof(float));
    rmsnorm_forward(a->ln1, a->rstd1, a->in, w->attn_norm, N, H, (float)c->eps);
    matmul_forward(a->q, a->ln1, w->wq, w->bq, N, H, Q);
    matmul_forward(a->k, a->ln1, w->wk, w->bk, N, H, KV);
    matmul_forward(a->v, a->ln1, w->wv, w->bv, N, H, KV);
    rope_forward(a->q, m->rope_cos, m->rope_sin, B, T, Hq, D);
    rope_forward(a->k, m->rope_cos, m->rope_sin, B, T, Hkv, D);
    attention_forward(a->atty, a->att, a->q, a->k, a->v, B, T, Hq, Hkv, D, (size_t)c->sliding_window);
    matmul_forward(a->mid, a->atty, w->wo, w->bo, N, Q, H);
    add_inplace(a->mid, a->in, N * H);
    rmsnorm_forward(a->ln2, a->rstd2, a->mid, w->mlp_norm, N, H, (float)c->eps);
    matmul_forward(a->gate, a->ln2, w->wg, w->bg, N, H, F);
    matmul_forward(a->up, a->ln2, w->wu, w->bu, N, H, F);
    swiglu_forward(a->act, a->gate, a->up, N * F);
    float *next = l + 1 < (size_t)c->layers ? m->L[l + 1].in : m->out;
    matmul_forward(next, a->act, w->wd, w->bd, N, F, H);
    add_inplace(next, a->mid, N * H);
    x = next;
  }
  if (c->layers == 0) memcpy(m->out, m->emb, N * H * sizeof(float));
  rmsnorm_forward(m->lnf, m->rstdf, m->out, m->P.final_norm, N, H, (float)c->eps);
  matmul_forward(m->logits, m->lnf, m->P.lm_head, NULL, N, H, V);
  crossentropy_forward(m->nll, m->lse, m->logits, targets, N, V);
  return 0;
}

/* ---------------------------------------------------------------- backward */
int model_backward(model *m, const float *w) {
  if (m->gpu) {
    m->logits_stale = 1; /* the device's logits become their gradient */
    return egpu_backward(m->gpu, w, NULL, &m->gpu_err);
  }
  crossentropy_backward(m->logits, m->lse, m->targets, w, m->B * m->T, (size_t)m->c.vocab);
  return model_backward_logits(m);
}

int model_backward_logits(model *m) {
  if (m->gpu) return egpu_backward(m->gpu, NULL, m->logits, &m->gpu_err);
  const llama_config *c = &m->c;
  size_t B = m->B, T = m->T, N = B * T, H = (size_t)c->hidden, F = (size_t)c->inter, V = (size_t)c->vocab;
  size_t D = (size_t)c->head_dim, Hq = (size_t)c->heads, Hkv = (size_t)c->kv_heads, Q = Hq * D, KV = Hkv * D;
  float *p = m->scratch;
  float *dres = p, *dln = p + N * H, *dmid = p + 2 * N * H;
  float *dq = p + 3 * N * H, *datty = dq + N * Q, *dk = datty + N * Q, *dv = dk + N * KV;
  float *dgate = dv + N * KV, *dup = dgate + N * F, *dact = dup + N * F;

  /* logits -> final norm */
  memset(dln, 0, N * H * sizeof(float));
  matmul_backward(dln, m->G.lm_head, NULL, m->logits, m->lnf, m->P.lm_head, N, H, V);
  memset(dres, 0, N * H * sizeof(float));
  rmsnorm_backward(dres, m->G.final_norm, dln, m->out, m->P.final_norm, m->rstdf, N, H);

  for (size_t l = (size_t)c->layers; l-- > 0;) {
    layer_acts *a = &m->L[l];
    layer_view *pw = &m->P.layer[l], *gw = &m->G.layer[l];
    /* mlp: out = mid + down(act);  dres is d(out) */
    memcpy(dmid, dres, N * H * sizeof(float));
    memset(dact, 0, N * F * sizeof(float));
    matmul_backward(dact, gw->wd, gw->bd, dres, a->act, pw->wd, N, F, H);
    swiglu_backward(dgate, dup, dact, a->gate, a->up, N * F);
    memset(dln, 0, N * H * sizeof(float));
    matmul_backward(dln, gw->wg, gw->bg, dgate, a->ln2, pw->wg, N, H, F);
    matmul_backward(dln, gw->wu, gw->bu, dup, a->ln2, pw->wu, N, H, F);
    rmsnorm_backward(dmid, gw->mlp_norm, dln, a->mid, pw->mlp_norm, a->rstd2, N, H);
    /* attention: mid = in + o(atty) */
    memcpy(dres, dmid, N * H * sizeof(float));
    memset(datty, 0, N * Q * sizeof(float));
    matmul_backward(datty, gw->wo, gw->bo, dmid, a->atty, pw->wo, N, Q, H);
    attention_backward(dq, dk, dv, NULL, datty, a->att, a->q, a->k, a->v, B, T, Hq, Hkv, D);
    rope_backward(dq, m->rope_cos, m->rope_sin, B, T, Hq, D);
    rope_backward(dk, m->rope_cos, m->rope_sin, B, T, Hkv, D);
    memset(dln, 0, N * H * sizeof(float));
    matmul_backward(dln, gw->wq, gw->bq, dq, a->ln1, pw->wq, N, H, Q);
    matmul_backward(dln, gw->wk, gw->bk, dk, a->ln1, pw->wk, N, H, KV);
    matmul_backward(dln, gw->wv, gw->bv, dv, a->ln1, pw->wv, N, H, KV);
    rmsnorm_backward(dres, gw->attn_norm, dln, a->in, pw->attn_norm, a->rstd1, N, H);
  }
  embed_backward(m->G.embed, dres, m->ids, N, H);
  return 0;
}

int model_zero_grad(model *m, mpu_err *e) {
  if (m->device == MODEL_CUDA) return model_gpu_attach(m, e) ? e->status : egpu_zero_grad(m->gpu, e);
  if (!m->grads) {
    if (!(m->grads = calloc(m->nparams, sizeof(float))))
      return mpu_fail(e, MPU_EUSAGE, "out of memory for the gradients of %zu parameters (%.1f GB)", m->nparams,
                      m->nparams * 4e-9);
    point(&m->G, m, m->grads);
    return 0;
  }
  memset(m->grads, 0, m->nparams * sizeof(float));
  return 0;
}

void model_release_work(model *m) {
  /* the trained weights back to the host; a failure is kept for model_save */
  mpu_err e = {0};
  if (model_gpu_detach(m, &e) && !m->gpu_err.status) m->gpu_err = e;
  free(m->grads);
  m->grads = NULL;
  free(m->acts_mem);
  free(m->L);
  free(m->ids);
  m->acts_mem = NULL;
  m->L = NULL;
  m->ids = m->targets = NULL;
  m->maxB = m->maxT = 0;
}

void model_decay_mask(const model *m, uint8_t *decay) {
  for (size_t i = 0; i < m->ntensors; i++) {
    int r = m->tensors[i].role;
    decay[i] = !(r == LT_ATTN_NORM || r == LT_MLP_NORM || r == LT_FINAL_NORM || r == LT_Q_BIAS || r == LT_K_BIAS ||
                 r == LT_V_BIAS || r == LT_O_BIAS || r == LT_GATE_BIAS || r == LT_UP_BIAS || r == LT_DOWN_BIAS);
  }
}

/* ---------------------------------------------------------------- device */
int model_set_device(model *m, int device, int math, mpu_err *e) {
  if (device == MODEL_CUDA && egpu_probe(e)) return mpu_fail_ctx(e, "--device cuda");
  if (device != MODEL_CUDA && m->gpu) {
    /* back to the CPU: its buffers are planned afresh */
    if (model_gpu_detach(m, e)) return e->status;
    model_release_work(m);
  }
  m->device = device == MODEL_CUDA ? MODEL_CUDA : MODEL_CPU;
  m->math = math;
  return 0;
}

int model_fetch_logits(model *m, mpu_err *e) {
  if (!m->gpu || !m->logits_stale) return 0;
  if (egpu_get_logits(m->gpu, m->logits, e)) return e->status;
  m->logits_stale = 0;
  return 0;
}

int model_fetch_grads(model *m, mpu_err *e) {
  if (!m->gpu) return 0;
  if (!m->grads) {
    if (!(m->grads = calloc(m->nparams, sizeof(float))))
      return mpu_fail(e, MPU_EUSAGE, "out of memory for the gradients of %zu parameters", m->nparams);
    point(&m->G, m, m->grads);
  }
  return egpu_get_grads(m->gpu, m->grads, e) || egpu_get_params(m->gpu, m->params, e) ? e->status : 0;
}

int model_sync_host(model *m, mpu_err *e) { return m->gpu ? egpu_get_params(m->gpu, m->params, e) : 0; }

int model_error(const model *m, mpu_err *e) {
  if (!m->gpu_err.status) return mpu_fail(e, MPU_EUSAGE, "the GPU engine failed");
  return mpu_fail(e, m->gpu_err.status, "%s", m->gpu_err.msg);
}

/* ---------------------------------------------------------------- decoding */
int model_decode_init(model *m, size_t max_len, mpu_err *e) {
  const llama_config *c = &m->c;
  if (max_len > (size_t)c->max_pos) max_len = (size_t)c->max_pos;
  if (m->device == MODEL_CUDA) return model_gpu_decode_init(m, max_len, e);
  size_t L = (size_t)c->layers, KV = (size_t)(c->kv_heads * c->head_dim), Q = (size_t)(c->heads * c->head_dim);
  size_t H = (size_t)c->hidden, F = (size_t)c->inter, V = (size_t)c->vocab;
  free(m->kv_mem);
  free(m->kcache);
  m->kv_mem = malloc((2 * L * max_len * KV + 4 * H + 2 * Q + 3 * F + V + max_len) * sizeof(float));
  m->kcache = malloc(2 * (L ? L : 1) * sizeof(float *));
  if (!m->kv_mem || !m->kcache) return mpu_fail(e, MPU_EUSAGE, "out of memory for a %zu-token cache", max_len);
  m->vcache = m->kcache + L;
  for (size_t l = 0; l < L; l++) {
    m->kcache[l] = m->kv_mem + 2 * l * max_len * KV;
    m->vcache[l] = m->kcache[l] + max_len * KV;
  }
  m->dec = m->kv_mem + 2 * L * max_len * KV;
  m->kv_len = max_len;
  return 0;
}

/* Rotates one position's heads in place (the rope_apply math for a single t). */
static void rope_one(float *x, const float *inv_freq, size_t pos, size_t heads, size_t D) {
  size_t half = D / 2;
  for (size_t i = 0; i < half; i++) {
    float a = (float)pos * inv_freq[i], cs = (float)cos((double)a), sn = (float)sin((double)a);
    for (size_t h = 0; h < heads; h++) {
      float *v = x + h * D, x1 = v[i], x2 = v[i + half];
      v[i] = x1 * cs - x2 * sn;
      v[i + half] = x2 * cs + x1 * sn;
    }
  }
}

const float *model_decode_step(model *m, int32_t token, size_t pos) {
  const llama_config *c = &m->c;
  size_t H = (size_t)c->hidden, F = (size_t)c->inter, V = (size_t)c->vocab, D = (size_t)c->head_dim;
  size_t Hq = (size_t)c->heads, Hkv = (size_t)c->kv_heads, Q = Hq * D, KV = Hkv * D, rep = Hq / Hkv;
  if (pos >= m->kv_len) return NULL;
  if (m->gpu) return egpu_decode_step(m->gpu, token, pos, m->dec, &m->gpu_err) ? NULL : m->dec;
  float *x = m->dec, *ln = x + H, *tmp = ln + H, *o = tmp + H, *q = o + H, *atty = q + Q, *gate = atty + Q;
  float *up = gate + F, *act = up + F, *logits = act + F, *scores = logits + V;
  memcpy(x, m->P.embed + (size_t)token * H, H * sizeof(float));
  float eps = (float)c->eps, scale = 1.0f / sqrtf((float)D);
  size_t window = (size_t)c->sliding_window, j0 = window && pos + 1 > window ? pos + 1 - window : 0;
  for (size_t l = 0; l < (size_t)c->layers; l++) {
    layer_view *w = &m->P.layer[l];
    float *kc = m->kcache[l] + pos * KV, *vc = m->vcache[l] + pos * KV;
    rmsnorm_forward(ln, tmp, x, w->attn_norm, 1, H, eps);
    matmul_forward(q, ln, w->wq, w->bq, 1, H, Q);
    matmul_forward(kc, ln, w->wk, w->bk, 1, H, KV);
    matmul_forward(vc, ln, w->wv, w->bv, 1, H, KV);
    rope_one(q, m->inv_freq, pos, Hq, D);
    rope_one(kc, m->inv_freq, pos, Hkv, D);
    for (size_t h = 0; h < Hq; h++) {
      size_t g = h / rep;
      float mx = -INFINITY;
      for (size_t j = j0; j <= pos; j++) {
        const float *kj = m->kcache[l] + j * KV + g * D;
        float s = 0;
        for (size_t d = 0; d < D; d++) s += q[h * D + d] * kj[d];
        scores[j] = s * scale;
        if (scores[j] > mx) mx = scores[j];
      }
      double sum = 0;
      for (size_t j = j0; j <= pos; j++) {
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
      }
      float *y = atty + h * D;
      memset(y, 0, D * sizeof(float));
      for (size_t j = j0; j <= pos; j++) {
        float p = (float)(scores[j] / sum);
        const float *vj = m->vcache[l] + j * KV + g * D;
        for (size_t d = 0; d < D; d++) y[d] += p * vj[d];
      }
    }
    matmul_forward(o, atty, w->wo, w->bo, 1, Q, H);
    add_inplace(x, o, H);
    rmsnorm_forward(ln, tmp, x, w->mlp_norm, 1, H, eps);
    matmul_forward(gate, ln, w->wg, w->bg, 1, H, F);
    matmul_forward(up, ln, w->wu, w->bu, 1, H, F);
    swiglu_forward(act, gate, up, F);
    matmul_forward(o, act, w->wd, w->bd, 1, F, H);
    add_inplace(x, o, H);
  }
  rmsnorm_forward(ln, tmp, x, m->P.final_norm, 1, H, eps);
  matmul_forward(logits, ln, m->P.lm_head, NULL, 1, H, V);
  return logits;
}

void model_free(model *m) {
  egpu_close(m->gpu);
  free(m->kv_mem);
  free(m->kcache);
  free(m->tensors);
  free(m->offset);
  free(m->dtype);
  free(m->shared);
  free(m->frozen);
  free(m->params);
  free(m->grads);
  free(m->P.layer);
  free(m->G.layer);
  for (size_t i = 0; i < m->nextra; i++) {
    free(m->extra[i].name);
    free(m->extra[i].data);
  }
  free(m->extra);
  for (size_t i = 0; i < m->nblobs; i++) {
    free(m->blobs[i].name);
    free(m->blobs[i].data);
  }
  free(m->blobs);
  free(m->inv_freq);
  free(m->acts_mem);
  free(m->L);
  free(m->ids);
  if (m->header) json_decref(m->header);
  memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- saving */
static void from_f32(uint8_t *dst, const float *src, uint64_t n, int dtype) {
  if (dtype == MPUC_DT_F32) {
    memcpy(dst, src, n * 4);
    return;
  }
  for (uint64_t i = 0; i < n; i++) {
    uint16_t h = dtype == MPUC_DT_BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
    dst[2 * i] = (uint8_t)h;
    dst[2 * i + 1] = (uint8_t)(h >> 8);
  }
}

/* Whether tensor j was one shared entry in the input and is still the same
 * in every copy (e.g. frozen): then it stays one shared entry. */
static int same_in_every_copy(model *const *ms, int M, size_t j) {
  for (int k = 0; k < M; k++)
    if (!ms[k]->shared[j] || ms[k]->dtype[j] != ms[0]->dtype[j]) return 0;
  size_t n = (size_t)elems(&ms[0]->tensors[j]);
  for (int k = 1; k < M; k++)
    if (memcmp(ms[k]->params + ms[k]->offset[j], ms[0]->params + ms[0]->offset[j], n * sizeof(float))) return 0;
  return 1;
}

/* Whether the tensor called name is written as one shared entry. */
static int entry_shared(model *const *ms, int M, const char *name) {
  const model *m = ms[0];
  for (size_t j = 0; j < m->ntensors; j++)
    if (!strcmp(m->tensors[j].name, name)) return same_in_every_copy(ms, M, j);
  for (size_t x = 0; x < m->nextra; x++)
    if (!strcmp(m->extra[x].name, name)) return m->extra[x].entry.copy == MPUC_COPY_SHARED;
  return 0;
}

int model_save(model *const *ms, int M, const char *path, const stream_options *o, int dtype, json_t *h,
               const char *extra_json, mpu_err *e) {
  /* the weights as the GPU has them, or the failure that lost them */
  for (int k = 0; k < M; k++) {
    if (ms[k]->gpu_err.status) {
      json_decref(h);
      return model_error(ms[k], e);
    }
    if (ms[k]->gpu && model_sync_host(ms[k], e)) {
      json_decref(h);
      return e->status;
    }
  }
  const model *m = ms[0];
  /* The listing: the input's blobs, then every tensor in the input's order,
   * each for every copy. */
  json_t *in_tensors = json_object_get(m->header, "tensors");
  json_t *listing = json_array(), *t;
  size_t i;
  json_array_foreach(in_tensors, i, t) {
    json_t *item = json_pack("{s:O, s:O, s:O}", "name", json_object_get(t, "name"), "dtype", json_object_get(t, "dtype"),
                             "shape", json_object_get(t, "shape"));
    if (M > 1 && entry_shared(ms, M, json_string_value(json_object_get(t, "name"))))
      json_object_set_new(item, "shared", json_true());
    int dt = mpuc_dtype_from_name(json_string_value(json_object_get(t, "dtype")));
    if (dtype && (dt == MPUC_DT_F32 || dt == MPUC_DT_BF16 || dt == MPUC_DT_F16))
      json_object_set_new(item, "dtype", json_string(mpuc_dtype_name(dtype)));
    json_array_append_new(listing, item);
  }
  json_object_set_new(h, "tensors", listing);
  json_object_set_new(h, "blobs", json_deep_copy(json_object_get(m->header, "blobs")));
  json_object_set_new(h, "copies", json_integer(M));
  prov_copy_model(h, m->header);
  /* one copy taken out of a round's multi-copy stream says which it is */
  json_t *record = json_object_get(h, "mpu");
  if (M == 1 && m->copy && json_is_object(record)) json_object_set_new(record, "copy", json_integer(m->copy));
  json_t *cfg = json_object_get(h, "config");
  if (dtype && json_is_object(cfg)) json_object_set_new(cfg, "torch_dtype", json_string(torch_dtype_name(dtype)));
  char *hj = json_canonical(h);
  json_decref(h);
  if (!hj) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  ms_writer w;
  int rc = ms_writer_open(&w, path, o, hj, e);
  free(hj);
  for (size_t b = 0; !rc && b < m->nblobs; b++) {
    mpuc_entry en = {.name = m->blobs[b].name, .name_len = strlen(m->blobs[b].name), .kind = MPUC_KIND_BLOB,
                     .raw_size = m->blobs[b].size};
    rc = ms_write_entry(&w, &en, m->blobs[b].data, e);
  }
  uint8_t *buf = NULL;
  size_t cap = 0;
  json_array_foreach(in_tensors, i, t) {
    const char *name = json_string_value(json_object_get(t, "name"));
    for (int k = 0; !rc && k < M; k++) {
      const model *mk = ms[k];
      size_t j;
      for (j = 0; j < mk->ntensors && strcmp(mk->tensors[j].name, name); j++) {}
      if (j == mk->ntensors) { /* a passthrough tensor, as it came */
        size_t x;
        for (x = 0; x < mk->nextra && strcmp(mk->extra[x].name, name); x++) {}
        mpuc_entry en = mk->extra[x].entry;
        if (M == 1 || en.copy != MPUC_COPY_SHARED) en.copy = (uint32_t)k;
        rc = ms_write_entry(&w, &en, mk->extra[x].data, e);
        if (en.copy == MPUC_COPY_SHARED) break;
        continue;
      }
      int shared = M > 1 && same_in_every_copy(ms, M, j); /* as the listing says */
      int dt = dtype ? dtype : mk->dtype[j];
      uint64_t n = elems(&mk->tensors[j]);
      size_t need = (size_t)n * (mpuc_dtype_bits(dt) / 8);
      if (need > cap) {
        free(buf);
        buf = malloc(cap = need);
        if (!buf) {
          rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
          break;
        }
      }
      from_f32(buf, mk->params + mk->offset[j], n, dt);
      mpuc_entry en = {.name = name, .name_len = strlen(name), .dtype = dt, .ndim = mk->tensors[j].ndim,
                       .copy = shared ? MPUC_COPY_SHARED : (uint32_t)k};
      en.dims[0] = mk->tensors[j].dims[0];
      en.dims[1] = mk->tensors[j].dims[1];
      rc = ms_write_entry(&w, &en, buf, e);
      if (shared) break;
    }
    if (rc) break;
  }
  free(buf);
  if (!rc) rc = ms_writer_close(&w, extra_json, e);
  if (rc) ms_writer_abort(&w);
  return rc;
}
