/*
 * optim.c -- AdamW and SGD updates, clipping and schedules (see optim.h).
 */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_gpu.h"

int optim_init(optimizer *o, const optim_config *cfg, const model *m, mpu_err *e) {
  memset(o, 0, sizeof *o);
  o->cfg = *cfg;
  o->decay = malloc(m->ntensors + 1);
  /* on the GPU the moments live with the model (kernels/engine_gpu.h) */
  if (cfg->kind == OPT_ADAMW && m->device != MODEL_CUDA) {
    o->m = calloc(m->nparams, sizeof(float));
    o->v = calloc(m->nparams, sizeof(float));
  }
  if (!o->decay || (cfg->kind == OPT_ADAMW && m->device != MODEL_CUDA && (!o->m || !o->v)))
    return mpu_fail(e, MPU_EUSAGE, "out of memory for the optimizer state");
  model_decay_mask(m, o->decay);
  return 0;
}

void optim_free(optimizer *o) {
  free(o->m);
  free(o->v);
  free(o->decay);
  memset(o, 0, sizeof *o);
}

double optim_lr(const optim_config *cfg, long step, long total) {
  if (cfg->schedule == SCHED_CONSTANT) {
    if (step < cfg->warmup_steps) return cfg->lr * (double)step / (double)cfg->warmup_steps;
    return cfg->lr;
  }
  /* transformers.get_linear_schedule_with_warmup: the first update of a
   * warm-up has learning rate 0, as in transformers. */
  if (step < cfg->warmup_steps) return cfg->lr * (double)step / (double)(cfg->warmup_steps > 1 ? cfg->warmup_steps : 1);
  double left = (double)(total - step) / (double)(total - cfg->warmup_steps > 1 ? total - cfg->warmup_steps : 1);
  return cfg->lr * (left > 0 ? left : 0);
}

/* Sums of squares over blocks of a fixed size, added in block order: the same
 * value for any thread count, and the blocks can run in parallel. */
#define NORM_BLOCK 8192
double grad_global_norm(const model *m) {
  if (m->gpu) {
    double norm;
    mpu_err e = {0};
    if (!egpu_grad_norm(m->gpu, m->frozen, &norm, &e)) return norm;
    /* kept for the caller's report (the sticky error is not the model's value) */
    if (!m->gpu_err.status) ((model *)m)->gpu_err = e;
    return NAN;
  }
  double total = 0;
  for (size_t t = 0; t < m->ntensors; t++) {
    if (m->frozen && m->frozen[t]) continue; /* not a parameter of the optimizer, as requires_grad=False */
    const float *g = m->grads + m->offset[t];
    size_t n = (t + 1 < m->ntensors ? m->offset[t + 1] : m->nparams) - m->offset[t];
    size_t nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
    double stack[64], *part = nb <= 64 ? stack : malloc(nb * sizeof *part);
    if (!part) return NAN;
#pragma omp parallel for schedule(static) if (nb > 1)
    for (size_t k = 0; k < nb; k++) {
      size_t lo = k * NORM_BLOCK, hi = lo + NORM_BLOCK < n ? lo + NORM_BLOCK : n;
      double s = 0;
      for (size_t i = lo; i < hi; i++) s += (double)g[i] * g[i];
      part[k] = s;
    }
    for (size_t k = 0; k < nb; k++) total += part[k];
    if (part != stack) free(part);
  }
  return sqrt(total);
}

double optim_step(optimizer *o, model *m, double lr, double norm) {
  const optim_config *c = &o->cfg;
  if (norm < 0) norm = grad_global_norm(m);
  float scale = 1.0f;
  if (c->max_grad_norm > 0) {
    double coef = c->max_grad_norm / (norm + 1e-6);
    if (coef < 1.0) scale = (float)coef;
  }
  o->step++;
  double bc1 = 1.0 - pow(c->beta1, (double)o->step), bc2 = 1.0 - pow(c->beta2, (double)o->step);
  float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->eps;
  float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
  if (m->gpu) {
    /* the same arithmetic, element by element, on the device */
    float *wd = malloc((m->ntensors + 1) * sizeof *wd);
    mpu_err e = {0};
    if (!wd) return NAN;
    model_gpu_decay(m, o->decay, c->weight_decay, wd);
    egpu_step_args a = {.sgd = c->kind == OPT_SGD, .first = o->step == 1, .lr = (float)lr, .beta1 = b1, .beta2 = b2,
                        .eps = eps, .scale = scale, .step_size = step_size, .bc2_sqrt = bc2_sqrt, .wd = wd,
                        .skip = m->frozen};
    int rc = egpu_step(m->gpu, &a, &e);
    free(wd);
    if (rc && !m->gpu_err.status) m->gpu_err = e;
    return rc ? NAN : norm;
  }
  for (size_t t = 0; t < m->ntensors; t++) {
    if (m->frozen && m->frozen[t]) continue;
    size_t lo = m->offset[t], hi = t + 1 < m->ntensors ? m->offset[t + 1] : m->nparams;
    float wd = o->decay[t] ? (float)c->weight_decay : 0.0f;
    float *p = m->params, *g = m->grads;
    if (c->kind == OPT_SGD) {
#pragma omp parallel for simd schedule(static)
      for (size_t i = lo; i < hi; i++) p[i] -= (float)lr * (g[i] * scale + wd * p[i]);
      continue;
    }
    float *mm = o->m, *vv = o->v, decay = 1.0f - (float)lr * wd;
    /* element by element: vector lanes give the same bits as one at a time */
#pragma omp parallel for simd schedule(static)
    for (size_t i = lo; i < hi; i++) {
      /* torch.optim.AdamW, single-tensor path, in its order of operations */
      float gi = g[i] * scale;
      p[i] *= decay;
      mm[i] = mm[i] * b1 + (1.0f - b1) * gi;
      vv[i] = vv[i] * b2 + (1.0f - b2) * gi * gi;
      float denom = sqrtf(vv[i]) / bc2_sqrt + eps;
      p[i] -= step_size * (mm[i] / denom);
    }
  }
  return norm;
}
