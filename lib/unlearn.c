/*
 * unlearn.c -- the unlearning objectives (see unlearn.h).
 */
#include "unlearn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "rng.h"

static const char *const names[ALG_COUNT] = {"ga", "graddiff", "npo", "simnpo", "undial", "satimp", "wga", "idkdpo"};

const char *algo_name(int a) { return a >= 0 && a < ALG_COUNT ? names[a] : "?"; }

int algo_from_name(const char *n) {
  for (int a = 0; a < ALG_COUNT; a++)
    if (!strcmp(names[a], n)) return a;
  return -1;
}

void unlearn_defaults(int algo, unlearn_config *c) {
  memset(c, 0, sizeof *c);
  c->algo = algo;
  c->gamma = 1;
  c->alpha = 1;
  switch (algo) {
  case ALG_GA: c->alpha = 0; break;
  case ALG_NPO: c->beta = 0.1; break;
  case ALG_SIMNPO: c->beta = 4.5; c->delta = 0; c->gamma = 0.125; break;
  case ALG_UNDIAL: c->beta = 10; c->alpha = 0; break;
  case ALG_SATIMP: c->beta = 5; c->beta2 = 1; c->gamma = 0.1; break;
  case ALG_WGA: c->beta = 1; break;
  case ALG_IDKDPO: c->beta = 0.1; break;
  }
}

json_t *unlearn_hyperparameters(const unlearn_config *c) {
  json_t *h = json_object();
  int a = c->algo;
  if (a == ALG_NPO || a == ALG_SIMNPO || a == ALG_UNDIAL || a == ALG_SATIMP || a == ALG_WGA || a == ALG_IDKDPO)
    json_object_set_new(h, "beta", json_real(c->beta));
  if (a == ALG_SATIMP) json_object_set_new(h, "beta2", json_real(c->beta2));
  if (a == ALG_SIMNPO) json_object_set_new(h, "delta", json_real(c->delta));
  json_object_set_new(h, "gamma", json_real(c->gamma));
  if (a != ALG_GA) json_object_set_new(h, "alpha", json_real(c->alpha));
  return h;
}

int algo_uses_retain(const unlearn_config *c) { return c->algo != ALG_GA && c->alpha != 0; }
int algo_uses_reference(int a) { return a == ALG_NPO || a == ALG_IDKDPO || a == ALG_UNDIAL; }

/* Built-in answers for IdkDPO: ways of declining, written for mpu. */
const char *const idk_default[] = {
  "I don't know.", "I'm not sure.", "I have no idea.", "I can't answer that.", "That is not something I know.",
  "I don't have that information.", "I am not able to answer that.", "I'm afraid I don't know.",
  "I could not tell you.", "I have no knowledge of that.", "That's beyond what I know.",
  "I'm unable to say.", "I don't know the answer to that.", "Sorry, I don't know.", "I can't say for sure.",
  "I really have no idea.", "That I cannot tell you.", "I lack the information to answer.",
  "I'm not able to provide that.", "No idea, sorry.",
};
const size_t idk_default_count = sizeof idk_default / sizeof *idk_default;

static float sigmoid(double x) { return (float)(1.0 / (1.0 + exp(-x))); }
static double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

static size_t pick(uint64_t seed, uint32_t item, uint32_t epoch, uint32_t what, size_t n) {
  rng_u4 ctr = {{item, epoch, what, 0}};
  rng_u4 r = rng_philox(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
  return (size_t)((((uint64_t)r.v[0] << 32) | r.v[1]) % n);
}

const sequence *unlearn_retain_row(const unlearn_objective *u, size_t item, uint32_t epoch) {
  size_t n = u->retain->n;
  size_t j = u->cfg.pairing == PAIR_CYCLE ? item % n : pick(u->cfg.seed, (uint32_t)item, epoch, 0x7265746eu, n);
  return &u->retain->seq[j];
}

/* The "I don't know" sequence for a forget item: its prompt, an answer, eos. */
int unlearn_win_row(unlearn_objective *u, sequence *s, size_t item, uint32_t epoch, mpu_err *e) {
  const sequence *f = &u->forget->seq[item];
  size_t j = pick(u->cfg.seed, (uint32_t)item, epoch, 0x69646b20u, u->nidk);
  size_t len = f->prompt_len + u->idk_len[j] + (u->eos >= 0);
  s->ids = realloc(s->ids, len * sizeof *s->ids);
  if (!s->ids) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  memcpy(s->ids, f->ids, f->prompt_len * sizeof *s->ids);
  memcpy(s->ids + f->prompt_len, u->idk[j], u->idk_len[j] * sizeof *s->ids);
  if (u->eos >= 0) s->ids[len - 1] = u->eos;
  s->len = (uint32_t)len;
  s->prompt_len = f->prompt_len;
  return 0;
}

/* Sums of NLL and scored counts per row of the last forward. */
static void row_sums(const model *m, size_t B, size_t T, double *nll, size_t *cnt) {
  for (size_t b = 0; b < B; b++) {
    nll[b] = 0;
    cnt[b] = 0;
    for (size_t t = 0; t < T; t++)
      if (m->targets[b * T + t] >= 0) {
        nll[b] += m->nll[b * T + t];
        cnt[b]++;
      }
  }
}

/* Per-sequence NLL of rows under the model as it is now (the reference). */
static int reference_nll(model *m, const sequence *const *rows, size_t n, int32_t pad, float *out, mpu_err *e) {
  batch b = {0};
  double nll[64];
  size_t cnt[64];
  int rc = 0;
  for (size_t first = 0; !rc && first < n; first += 64) {
    size_t k = n - first < 64 ? n - first : 64;
    if ((rc = batch_rows(&b, rows + first, k, pad, e)) || (rc = model_plan(m, b.B, b.T, e))) break;
    if (model_forward(m, b.ids, b.targets, b.B, b.T)) {
      rc = model_error(m, e);
      break;
    }
    row_sums(m, b.B, b.T, nll, cnt);
    for (size_t i = 0; i < k; i++) out[first + i] = (float)nll[i];
  }
  batch_free(&b);
  return rc;
}

static int begin_step(objective *base, const size_t *idx, size_t n, mpu_err *e) {
  (void)idx;
  (void)e;
  unlearn_objective *u = (unlearn_objective *)base;
  u->step_micro = (n + base->batch - 1) / base->batch;
  return 0;
}

static int micro(objective *base, model *m, const size_t *idx, size_t n, step_report *r, mpu_err *e) {
  return unlearn_micro((unlearn_objective *)base, m, idx, n, r, e);
}

int unlearn_micro(unlearn_objective *u, model *m, const size_t *idx, size_t n, step_report *r, mpu_err *e) {
  const unlearn_config *c = &u->cfg;
  uint32_t epoch = u->base.epoch;
  int retain = algo_uses_retain(c), idk = c->algo == ALG_IDKDPO;
  size_t F = n, R = retain ? n : 0, W = idk ? n : 0, rows_n = F + R + W;
  const sequence *rows[3 * 64], **rowp = rows_n <= 3 * 64 ? rows : malloc(rows_n * sizeof *rowp);
  if (!rowp) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  if (W > u->win_cap) {
    u->win_rows = realloc(u->win_rows, W * sizeof *u->win_rows);
    memset(u->win_rows + u->win_cap, 0, (W - u->win_cap) * sizeof *u->win_rows);
    u->win_cap = W;
  }
  int rc = 0;
  for (size_t i = 0; i < F; i++) rowp[i] = &u->forget->seq[idx[i]];
  for (size_t i = 0; i < R; i++) rowp[F + i] = unlearn_retain_row(u, idx[i], epoch);
  for (size_t i = 0; !rc && i < W; i++) {
    rc = unlearn_win_row(u, &u->win_rows[i], idx[i], epoch, e);
    rowp[F + R + i] = &u->win_rows[i];
  }
  if (!rc) rc = batch_rows(&u->b, rowp, rows_n, u->pad, e);
  if (rowp != rows) free(rowp);
  if (rc || (rc = model_plan(m, u->b.B, u->b.T, e))) return rc;
  size_t T = u->b.T, N = rows_n * T, V = (size_t)m->c.vocab;
  if (N > u->wcap) {
    free(u->w);
    u->w = malloc(N * sizeof(float));
    if (!u->w) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    u->wcap = N;
  }
  if (model_forward(m, u->b.ids, u->b.targets, u->b.B, T)) return model_error(m, e);
  double *nll = malloc(rows_n * sizeof *nll);
  size_t *cnt = malloc(rows_n * sizeof *cnt);
  row_sums(m, rows_n, T, nll, cnt);
  float *w = u->w;
  memset(w, 0, N * sizeof *w);
  double G = (double)(u->step_micro ? u->step_micro : 1), gamma = c->gamma, beta = c->beta;
  size_t Nf = 0, Nr = 0;
  for (size_t i = 0; i < F; i++) Nf += cnt[i];
  for (size_t i = F; i < F + R; i++) Nr += cnt[i];
  double Lf = 0, Lr = 0;

  /* the forget term: per-token weights of d L / d nll */
  for (size_t i = 0; i < F; i++) {
    double rw = 0; /* a row-wide weight, for the sequence-level losses */
    switch (c->algo) {
    case ALG_NPO: {
      double ri = (double)u->ref_forget[idx[i]] - nll[i]; /* log pi_theta - log pi_ref */
      Lf += -(2.0 / beta) * log_sigmoid(-beta * ri) / (double)F;
      rw = -(2.0 / (double)F) * sigmoid(beta * ri);
      break;
    }
    case ALG_SIMNPO: {
      double a = cnt[i] ? nll[i] / (double)cnt[i] - c->delta : 0;
      Lf += -(2.0 / beta) * log_sigmoid(beta * a) / (double)F;
      rw = cnt[i] ? -(2.0 / ((double)F * (double)cnt[i])) * sigmoid(-beta * a) : 0;
      break;
    }
    case ALG_IDKDPO: {
      size_t wi = F + R + i;
      double dw = (double)u->ref_win[(size_t)epoch * u->forget->n + idx[i]] - nll[wi];
      double dl = (double)u->ref_forget[idx[i]] - nll[i];
      double delta = dw - dl, s = sigmoid(-beta * delta);
      Lf += -(2.0 / beta) * log_sigmoid(beta * delta) / (double)F;
      rw = -(2.0 / (double)F) * s; /* lose rows ascend */
      for (size_t t = 0; t < T; t++)
        if (u->b.targets[wi * T + t] >= 0) w[wi * T + t] = (float)(gamma / G * (2.0 / (double)F) * s); /* win rows descend */
      break;
    }
    default: break;
    }
    for (size_t t = 0; t < T; t++) {
      size_t p = i * T + t;
      if (u->b.targets[p] < 0) continue;
      double tok = 0, l = m->nll[p], pr = exp(-l);
      switch (c->algo) {
      case ALG_GA:
      case ALG_GRADDIFF: tok = -1.0 / (double)Nf; Lf += -l / (double)Nf; break;
      case ALG_WGA: {
        double wt = pow(pr, beta);
        tok = -wt / (double)Nf;
        Lf += -wt * l / (double)Nf;
        break;
      }
      case ALG_SATIMP: {
        double wt = pow(pr, beta) * pow(1.0 - pr, c->beta2);
        tok = -wt / (double)Nf;
        Lf += -wt * l / (double)Nf;
        break;
      }
      case ALG_UNDIAL: tok = 0; break;
      default: tok = rw; break;
      }
      w[p] = (float)(gamma / G * tok);
    }
  }
  /* the retain term: the mean NLL of the retain rows */
  for (size_t i = F; i < F + R; i++)
    for (size_t t = 0; t < T; t++) {
      size_t p = i * T + t;
      if (u->b.targets[p] < 0) continue;
      w[p] = (float)(c->alpha / G / (double)Nr);
      Lr += m->nll[p] / (double)Nr;
    }
  if (Nf == 0 && c->algo != ALG_UNDIAL) rc = mpu_fail(e, MPU_EUSAGE, "a forget batch without a scored token");

  if (!rc && c->algo == ALG_UNDIAL) {
    /* Soft targets q = softmax(z_ref - beta onehot(y)) at every position of
     * the forget rows up to their own padded length, as OpenUnlearning
     * computes it -- including prompt and padding positions, where the label
     * -100 indexes vocabulary id V-100. */
    size_t Tf = 0;
    const sequence **frows = malloc(F * sizeof *frows);
    for (size_t i = 0; frows && i < F; i++) {
      frows[i] = &u->forget->seq[idx[i]];
      if (frows[i]->len > Tf) Tf = frows[i]->len;
    }
    batch tb = {0};
    rc = frows ? batch_rows(&tb, frows, F, u->pad, e) : mpu_fail(e, MPU_EUSAGE, "out of memory");
    free(frows);
    if (!rc) rc = model_plan(u->teacher, tb.B, tb.T, e);
    float *soft = rc ? NULL : malloc(F * (Tf ? Tf : 1) * V * sizeof(float));
    if (!rc && !soft) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
    /* the soft targets are computed on the host from both models' logits */
    if (!rc && model_forward(u->teacher, tb.ids, tb.targets, tb.B, tb.T)) rc = model_error(u->teacher, e);
    if (!rc && !(rc = model_fetch_logits(m, e))) rc = model_fetch_logits(u->teacher, e);
    if (!rc) {
      double scale = gamma / G / ((double)F * (double)(Tf - 1));
      for (size_t i = 0; i < F; i++)
        for (size_t t = 0; t + 1 < Tf; t++) {
          const float *z = m->logits + (i * T + t) * V, *zr = u->teacher->logits + (i * tb.T + t) * V;
          float *d = soft + (i * Tf + t) * V;
          int32_t y = tb.targets[i * tb.T + t];
          size_t yi = y >= 0 ? (size_t)y : (V >= 100 ? V - 100 : 0);
          double mq = -INFINITY, sq = 0, lse = m->lse[i * T + t], ce = 0;
          for (size_t v = 0; v < V; v++) {
            double a = zr[v] - (v == yi ? beta : 0);
            if (a > mq) mq = a;
          }
          for (size_t v = 0; v < V; v++) sq += exp(zr[v] - (v == yi ? beta : 0) - mq);
          for (size_t v = 0; v < V; v++) {
            double q = exp(zr[v] - (v == yi ? beta : 0) - mq) / sq, lp = z[v] - lse;
            ce += -q * lp;
            d[v] = (float)(scale * (exp(lp) - q));
          }
          Lf += ce / ((double)F * (double)(Tf - 1));
        }
      /* the retain rows (if any) through the ordinary backward, then the soft part */
      crossentropy_backward(m->logits, m->lse, m->targets, w, N, V);
      for (size_t i = 0; i < F; i++)
        for (size_t t = 0; t + 1 < Tf; t++)
          memcpy(m->logits + (i * T + t) * V, soft + (i * Tf + t) * V, V * sizeof(float));
      if (model_backward_logits(m)) rc = model_error(m, e);
    }
    free(soft);
    batch_free(&tb);
  } else if (!rc && model_backward(m, w)) {
    rc = model_error(m, e);
  }
  if (!rc) {
    double total = (c->algo == ALG_GA ? gamma * Lf : gamma * Lf + c->alpha * Lr);
    r->loss += total / G;
    r->parts[0] += Lf / G;
    r->parts[1] += Lr / G;
    for (size_t i = 0; i < rows_n; i++) r->tokens += cnt[i];
  }
  free(nll);
  free(cnt);
  return rc;
}

int idk_tokenize(const tokenizer *t, const char *const *texts, size_t n, int32_t ***ids, uint32_t **lens, mpu_err *e) {
  if (!texts) {
    texts = idk_default;
    n = idk_default_count;
  }
  if (!t)
    return mpu_fail(e, MPU_EUSAGE, "the model has no tokenizer for idkdpo's built-in answers: give --idk FILE with input_ids");
  *ids = calloc(n, sizeof **ids);
  *lens = calloc(n, sizeof **lens);
  if (!*ids || !*lens) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  for (size_t j = 0; j < n; j++) {
    size_t len = 0, cap = 0;
    if (tok_encode(t, texts[j], strlen(texts[j]), 0, &(*ids)[j], &len, &cap, e)) return e->status;
    (*lens)[j] = (uint32_t)len;
  }
  return 0;
}

int unlearn_init(unlearn_objective *u, const unlearn_config *c, model *m, const dataset *forget,
                 const dataset *retain, int32_t *const *idk, const uint32_t *idk_len, size_t nidk, int32_t eos,
                 int32_t pad, int epochs, mpu_err *e) {
  memset(u, 0, sizeof *u);
  u->cfg = *c;
  u->forget = forget;
  u->retain = retain;
  u->epochs = epochs;
  u->eos = eos;
  u->pad = pad;
  u->base.n = forget->n;
  u->base.begin_step = begin_step;
  u->base.micro = micro;
  u->base.part_names[0] = "forget_loss";
  u->base.part_names[1] = algo_uses_retain(c) ? "retain_loss" : NULL;
  if (algo_uses_retain(c) && (!retain || retain->n == 0))
    return mpu_fail(e, MPU_EUSAGE, "%s needs a retain set (--retain FILE), or --alpha 0", algo_name(c->algo));
  int rc = 0;
  if (c->algo == ALG_NPO || c->algo == ALG_IDKDPO) {
    /* the reference: the copy as it is before unlearning, once for all */
    const sequence **rows = malloc(forget->n * sizeof *rows);
    u->ref_forget = malloc(forget->n * sizeof *u->ref_forget);
    if (!rows || !u->ref_forget) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
    for (size_t i = 0; !rc && i < forget->n; i++) rows[i] = &forget->seq[i];
    if (!rc) rc = reference_nll(m, rows, forget->n, u->pad, u->ref_forget, e);
    free(rows);
  }
  if (!rc && c->algo == ALG_IDKDPO) {
    if (!idk || !nidk) return mpu_fail(e, MPU_EUSAGE, "idkdpo needs its \"I don't know\" answers");
    /* the objective owns copies of the answers */
    u->nidk = nidk;
    u->idk = calloc(nidk, sizeof *u->idk);
    u->idk_len = calloc(nidk, sizeof *u->idk_len);
    for (size_t j = 0; j < nidk; j++) {
      u->idk[j] = malloc((idk_len[j] + 1) * sizeof **u->idk);
      memcpy(u->idk[j], idk[j], idk_len[j] * sizeof **u->idk);
      u->idk_len[j] = idk_len[j];
    }
    /* Every epoch draws one answer per item: their reference NLLs up front. */
    size_t total = (size_t)epochs * forget->n;
    sequence *wins = calloc(total, sizeof *wins);
    const sequence **rows = malloc(total * sizeof *rows);
    u->ref_win = malloc(total * sizeof *u->ref_win);
    for (size_t k = 0; !rc && k < total; k++) {
      rc = unlearn_win_row(u, &wins[k], k % forget->n, (uint32_t)(k / forget->n), e);
      rows[k] = &wins[k];
    }
    if (!rc) rc = reference_nll(m, rows, total, u->pad, u->ref_win, e);
    for (size_t k = 0; k < total; k++) free(wins[k].ids);
    free(wins);
    free(rows);
  }
  if (!rc && c->algo == ALG_UNDIAL) {
    u->teacher = calloc(1, sizeof *u->teacher);
    if (!u->teacher) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    rc = model_copy(u->teacher, m, e);
  }
  return rc;
}

void unlearn_free(unlearn_objective *u) {
  for (size_t j = 0; j < u->nidk; j++) free(u->idk[j]);
  free(u->idk);
  free(u->idk_len);
  free(u->ref_forget);
  free(u->ref_win);
  if (u->teacher) {
    model_free(u->teacher);
    free(u->teacher);
  }
  batch_free(&u->b);
  free(u->w);
  for (size_t i = 0; i < u->win_cap; i++) free(u->win_rows[i].ids);
  free(u->win_rows);
  memset(u, 0, sizeof *u);
}
