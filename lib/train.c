/*
 * train.c -- the shared training loop and the NLL objective (see train.h).
 */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rng.h"

#include <unistd.h>

void shuffle_indices(size_t *idx, size_t n, uint64_t seed, uint32_t epoch) {
  for (size_t i = 0; i < n; i++) idx[i] = i;
  for (size_t i = n; i > 1; i--) {
    rng_u4 ctr = {{(uint32_t)i, (uint32_t)((uint64_t)i >> 32), epoch, 0x73687566u /* "shuf" */}};
    rng_u4 r = rng_philox(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
    uint64_t x = (uint64_t)r.v[0] << 32 | r.v[1];
    size_t j = (size_t)(x % i); /* bias below 2^-32 for any data set that fits in memory */
    size_t t = idx[i - 1];
    idx[i - 1] = idx[j];
    idx[j] = t;
  }
}

static void fmt_duration(char *buf, size_t n, double s) {
  if (s < 0 || !isfinite(s)) snprintf(buf, n, "?");
  else if (s < 60) snprintf(buf, n, "%.0fs", s);
  else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

int train_run(model *m, objective *obj, const train_options *o, const char *label, train_result *res, mpu_err *e) {
  memset(res, 0, sizeof *res);
  size_t micro_per_epoch = (obj->n + o->batch - 1) / o->batch;
  long steps_per_epoch = (long)((micro_per_epoch + (size_t)o->grad_accum - 1) / (size_t)o->grad_accum);
  long total = steps_per_epoch * o->epochs;
  optimizer opt;
  if (optim_init(&opt, &o->opt, m, e)) return e->status;
  size_t *perm = malloc((obj->n + 1) * sizeof *perm);
  if (!perm) {
    optim_free(&opt);
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  int show = o->progress < 0 ? isatty(2) : o->progress;
  double t0 = cli_now(), last_print = 0;
  int rc = 0;
  long step = 0;
  for (int epoch = 0; epoch < o->epochs && !rc; epoch++) {
    if (o->shuffle) shuffle_indices(perm, obj->n, o->seed, (uint32_t)epoch);
    else
      for (size_t i = 0; i < obj->n; i++) perm[i] = i;
    for (size_t mb = 0; mb < micro_per_epoch && !rc;) {
      /* one optimizer step: up to grad_accum micro-batches */
      size_t first = mb * o->batch, mb_end = mb + (size_t)o->grad_accum;
      if (mb_end > micro_per_epoch) mb_end = micro_per_epoch;
      size_t last = mb_end * o->batch < obj->n ? mb_end * o->batch : obj->n;
      obj->epoch = (uint32_t)epoch;
      obj->batch = o->batch;
      if (obj->begin_step && (rc = obj->begin_step(obj, perm + first, last - first, e))) break;
      if ((rc = model_zero_grad(m, e))) break;
      step_report rep = {0};
      for (; mb < mb_end && !rc; mb++) {
        size_t a = mb * o->batch, b = a + o->batch < obj->n ? a + o->batch : obj->n;
        rc = obj->micro(obj, m, perm + a, b - a, &rep, e);
      }
      if (rc) break;
      double lr = optim_lr(&o->opt, step, total);
      double norm = grad_global_norm(m);
      if (m->gpu_err.status) {
        rc = model_error(m, e);
        break;
      }
      if (!isfinite(rep.loss) || !isfinite(norm)) {
        rc = mpu_fail(e, MPU_EUSAGE, "training diverged: the %s is %s at step %ld of %ld (epoch %d)%s%s; nothing written",
                      isfinite(rep.loss) ? "gradient norm" : "loss", isnan(isfinite(rep.loss) ? norm : rep.loss) ? "NaN" : "infinite",
                      step + 1, total, epoch + 1, label ? ", " : "", label ? label : "");
        break;
      }
      optim_step(&opt, m, lr, norm);
      if (m->gpu_err.status) {
        rc = model_error(m, e);
        break;
      }
      step++;
      res->tokens += rep.tokens;
      if (step == 1) res->first_loss = rep.loss;
      res->last_loss = rep.loss;
      double now = cli_now(), tps = res->tokens / (now - t0 + 1e-9);
      if (o->log) {
        fprintf(o->log, "{\"step\":%ld,\"epoch\":%.4f,\"loss\":%.8g,\"lr\":%.8g,\"grad_norm\":%.8g,\"tokens\":%zu",
                step, epoch + (double)mb / (double)micro_per_epoch, rep.loss, lr, norm, rep.tokens);
        for (int k = 0; k < 4 && obj->part_names[k]; k++) fprintf(o->log, ",\"%s\":%.8g", obj->part_names[k], rep.parts[k]);
        if (label) fprintf(o->log, ",\"run\":\"%s\"", label);
        fprintf(o->log, ",\"tokens_per_s\":%.1f}\n", tps);
        fflush(o->log);
      }
      if (show && (now - last_print > 0.25 || step == total)) {
        char eta[32];
        fmt_duration(eta, sizeof eta, (now - t0) / step * (total - step));
        fprintf(stderr, "\r%s: %s%sepoch %d/%d  step %ld/%ld  loss %.4f", cli_prog, label ? label : "",
                label ? "  " : "", epoch + 1, o->epochs, step, total, rep.loss);
        for (int k = 0; k < 4 && obj->part_names[k]; k++) fprintf(stderr, "  %s %.4f", obj->part_names[k], rep.parts[k]);
        fprintf(stderr, "  %.0f tok/s  ETA %s\033[K", tps, eta);
        last_print = now;
      }
    }
  }
  if (show) fprintf(stderr, "\r\033[K");
  res->steps = step;
  res->seconds = cli_now() - t0;
  free(perm);
  optim_free(&opt);
  return rc;
}

/* ---------------------------------------------------------------- NLL */
static int nll_begin(objective *base, const size_t *idx, size_t n, mpu_err *e) {
  (void)e;
  nll_objective *o = (nll_objective *)base;
  o->step_tokens = 0;
  for (size_t i = 0; i < n; i++) o->step_tokens += o->d->seq[idx[i]].len - o->d->seq[idx[i]].prompt_len;
  return 0;
}

static int nll_micro(objective *base, model *m, const size_t *idx, size_t n, step_report *r, mpu_err *e) {
  nll_objective *o = (nll_objective *)base;
  if (batch_make(&o->b, o->d, idx, n, o->pad, e) || model_plan(m, o->b.B, o->b.T, e)) return e->status;
  size_t N = o->b.B * o->b.T;
  if (N > o->wcap) {
    free(o->w);
    o->w = malloc(N * sizeof(float));
    if (!o->w) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    o->wcap = N;
  }
  if (model_forward(m, o->b.ids, o->b.targets, o->b.B, o->b.T)) return model_error(m, e);
  /* the mean over every scored token of the step, as transformers computes it */
  float w = 1.0f / (float)(o->step_tokens ? o->step_tokens : 1);
  double loss = 0;
  for (size_t i = 0; i < N; i++) {
    o->w[i] = o->b.targets[i] >= 0 ? w : 0.0f;
    loss += (double)o->w[i] * m->nll[i];
  }
  if (model_backward(m, o->w)) return model_error(m, e);
  r->loss += loss;
  for (size_t i = 0; i < n; i++) r->tokens += o->d->seq[idx[i]].len;
  return 0;
}

void nll_objective_init(nll_objective *o, const dataset *d, int32_t pad) {
  memset(o, 0, sizeof *o);
  o->base.n = d->n;
  o->base.begin_step = nll_begin;
  o->base.micro = nll_micro;
  o->d = d;
  o->pad = pad;
}

void nll_objective_free(nll_objective *o) {
  batch_free(&o->b);
  free(o->w);
}
