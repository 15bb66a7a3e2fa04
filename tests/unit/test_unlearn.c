/*
 * test_unlearn.c -- the eight unlearning objectives against PyTorch autograd.
 *
 * tests/fixtures/unlearn/ (make_fixtures.py) holds a model theta, a reference
 * theta_ref, one batch of forget, retain and "I don't know" rows, and for each
 * algorithm, as OpenUnlearning defines it, the loss, its forget and retain
 * parts and the gradient of the loss for every parameter, all in float64.
 * Here theta_ref is loaded as the reference the objective is initialised with
 * and theta is the model one micro-batch is run on.  Tolerances: losses to
 * 1e-4 relative (npo/idkdpo sum fp32 NLLs of about 20), each gradient tensor
 * to 1e-5 of its largest element (we see at most 5e-6), and one SGD step at three elements.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "unlearn.h"
#include "tap.h"

#define DIR "tests/fixtures/unlearn/"

/* A group of batch.json as sequences: labels are unshifted, -100 on prompt
 * and padding; the sequence ends at its last labelled token. */
static void load_group(json_t *groups, const char *group, dataset *d) {
  json_t *g = json_object_get(groups, group), *ids = json_object_get(g, "input_ids"),
         *labels = json_object_get(g, "labels");
  memset(d, 0, sizeof *d);
  d->n = json_array_size(ids);
  d->seq = calloc(d->n, sizeof *d->seq);
  for (size_t b = 0; b < d->n; b++) {
    json_t *row = json_array_get(ids, b), *lab = json_array_get(labels, b);
    size_t T = json_array_size(row), first = T, last = 0;
    for (size_t t = 0; t < T; t++)
      if (json_integer_value(json_array_get(lab, t)) != -100) {
        if (first == T) first = t;
        last = t;
      }
    sequence *s = &d->seq[b];
    s->len = (uint32_t)(last + 1);
    s->prompt_len = (uint32_t)first;
    s->ids = malloc(s->len * sizeof *s->ids);
    for (size_t t = 0; t < s->len; t++) s->ids[t] = (int32_t)json_integer_value(json_array_get(row, t));
    d->scored += s->len - s->prompt_len;
    if (s->len > d->max_len) d->max_len = s->len;
  }
}

/* The configuration params.json describes, checked against our defaults. */
static void load_config(const char *algo, unlearn_config *c) {
  char path[256];
  snprintf(path, sizeof path, DIR "%s/params.json", algo);
  json_t *p = json_load_file(path, 0, NULL);
  int a = algo_from_name(algo);
  CHECK(a >= 0);
  unlearn_defaults(a, c);
  unlearn_config d = *c;
  const char *key;
  json_t *v;
  json_object_foreach(p, key, v) {
    double x = json_number_value(v);
    if (!strcmp(key, "beta") || !strcmp(key, "beta1")) c->beta = x;
    else if (!strcmp(key, "beta2")) c->beta2 = x;
    else if (!strcmp(key, "gamma")) c->gamma = x;
    else if (!strcmp(key, "alpha")) c->alpha = x;
    else if (!strcmp(key, "delta")) c->delta = x;
  }
  /* mpu's defaults are OpenUnlearning's */
  CHECK(d.beta == c->beta && d.beta2 == c->beta2 && d.gamma == c->gamma && d.alpha == c->alpha && d.delta == c->delta);
  c->pairing = PAIR_CYCLE;
  json_decref(p);
}

typedef struct {
  model theta, ref;
  dataset forget, retain, win;
  int32_t *idk[1];
  uint32_t idk_len[1];
} fixture;

static int fixture_load(fixture *f) {
  json_t *b = json_load_file(DIR "batch.json", 0, NULL);
  if (!b) return -1;
  load_group(b, "forget", &f->forget);
  load_group(b, "retain", &f->retain);
  load_group(b, "win", &f->win);
  json_decref(b);
  /* the answer: the win row after its prompt, without the final eos */
  sequence *w = &f->win.seq[0];
  f->idk_len[0] = w->len - w->prompt_len - 1;
  f->idk[0] = w->ids + w->prompt_len;
  if (fixture_model(DIR "model.safetensors", DIR "config.json", &f->theta)) return -1;
  return fixture_model(DIR "ref.safetensors", DIR "config.json", &f->ref);
}

static void check_algo(fixture *f, const char *algo) {
  unlearn_config c;
  load_config(algo, &c);
  unlearn_objective u;
  mpu_err e = {0};
  int rc = unlearn_init(&u, &c, &f->ref, &f->forget, &f->retain, f->idk, f->idk_len, 1, 2, 0, 1, &e);
  CHECK(rc == 0);
  if (rc) {
    printf("# %s: %s\n", algo, e.msg);
    return;
  }
  /* the win rows the objective builds are the fixture's */
  if (c.algo == ALG_IDKDPO) {
    sequence s = {0};
    for (size_t i = 0; i < f->forget.n; i++) {
      CHECK(unlearn_win_row(&u, &s, i, 0, &e) == 0);
      CHECK(s.len == f->win.seq[i].len && s.prompt_len == f->win.seq[i].prompt_len &&
            !memcmp(s.ids, f->win.seq[i].ids, s.len * sizeof *s.ids));
    }
    free(s.ids);
  }
  u.step_micro = 1;
  u.base.epoch = 0;
  size_t idx[2] = {0, 1};
  step_report r = {0};
  CHECK(model_zero_grad(&f->theta, &e) == 0);
  rc = unlearn_micro(&u, &f->theta, idx, 2, &r, &e);
  CHECK(rc == 0);

  char path[256];
  snprintf(path, sizeof path, DIR "%s/expected.safetensors", algo);
  st_file ex;
  CHECK(st_open(&ex, path, -1, &e) == 0);
  size_t n;
  float *loss = fixture_tensor(&ex, "loss", &n), *fl = fixture_tensor(&ex, "forget_loss", &n),
        *rl = fixture_tensor(&ex, "retain_loss", &n);
  CHECK(loss && fl && rl);
  if (!loss || !fl || !rl) return;
  printf("# %s: loss %.6f (torch %.6f), forget %.6f (%.6f), retain %.6f (%.6f)\n", algo, r.loss, loss[0],
         r.parts[0], fl[0], r.parts[1], rl[0]);
  CHECK(fabs(r.loss - loss[0]) <= 1e-4 * fabs(loss[0]) + 1e-6);
  CHECK(fabs(r.parts[0] - fl[0]) <= 1e-4 * fabs(fl[0]) + 1e-6);
  /* the retain part is reported only where it is in the loss */
  if (algo_uses_retain(&c)) CHECK(fabs(r.parts[1] - rl[0]) <= 1e-4 * fabs(rl[0]) + 1e-6);

  double worst = 0;
  const char *worst_name = "";
  size_t checked = 0;
  for (size_t t = 0; t < f->theta.ntensors; t++) {
    char gname[200];
    snprintf(gname, sizeof gname, "grad.%s", f->theta.tensors[t].name);
    float *g = fixture_tensor(&ex, gname, &n);
    CHECK(g && n == fixture_param_len(&f->theta, t));
    if (!g) continue;
    double nw, el;
    fixture_compare(f->theta.grads + f->theta.offset[t], g, n, &nw, &el);
    if (nw > worst) {
      worst = nw;
      worst_name = f->theta.tensors[t].name;
    }
    checked++;
    free(g);
  }
  printf("# %s: %zu gradients, worst normwise %.2e (%s)\n", algo, checked, worst, worst_name);
  CHECK(checked == f->theta.ntensors);
  CHECK(worst < 1e-5);

  /* one SGD step, at the elements sgd.json names */
  json_t *sgd = json_load_file(DIR "sgd.json", 0, NULL);
  double lr = json_number_value(json_object_get(sgd, "lr"));
  json_t *pts = json_object_get(json_object_get(sgd, "algorithms"), algo);
  CHECK(json_array_size(pts) == 3);
  for (size_t k = 0; k < json_array_size(pts); k++) {
    json_t *p = json_array_get(pts, k);
    const char *name = json_string_value(json_object_get(p, "name"));
    size_t i = (size_t)json_integer_value(json_object_get(p, "index")), t = 0;
    while (t < f->theta.ntensors && strcmp(f->theta.tensors[t].name, name)) t++;
    CHECK(t < f->theta.ntensors);
    if (t == f->theta.ntensors) continue;
    size_t at = f->theta.offset[t] + i;
    double after = (double)f->theta.params[at] - lr * (double)f->theta.grads[at];
    double want = json_number_value(json_object_get(p, "after")),
           g = json_number_value(json_object_get(p, "grad"));
    CHECK(fabs(after - want) <= 2e-5 * lr * fabs(g) + 1e-7);
  }
  json_decref(sgd);
  free(loss);
  free(fl);
  free(rl);
  st_close(&ex);
  unlearn_free(&u);
}

static fixture fx;
static int fx_ok;

#define ALGO_TEST(a) \
  TEST(a##_matches_pytorch) {  \
    CHECK(fx_ok);              \
    if (fx_ok) check_algo(&fx, #a); \
  }
ALGO_TEST(ga)
ALGO_TEST(graddiff)
ALGO_TEST(npo)
ALGO_TEST(simnpo)
ALGO_TEST(undial)
ALGO_TEST(satimp)
ALGO_TEST(wga)
ALGO_TEST(idkdpo)

/* NPO with the model as its own reference: every r_i = 0, so the forget loss
 * is (2/beta) ln 2 and its gradient that of -mean_i NLL_i (the fixture's
 * self-check (b)), here against graddiff's per-row sums. */
TEST(npo_own_reference_is_ln2) {
  CHECK(fx_ok);
  if (!fx_ok) return;
  unlearn_config c;
  unlearn_defaults(ALG_NPO, &c);
  c.pairing = PAIR_CYCLE;
  c.alpha = 0;
  unlearn_objective u;
  mpu_err e = {0};
  CHECK(unlearn_init(&u, &c, &fx.theta, &fx.forget, NULL, NULL, NULL, 0, 2, 0, 1, &e) == 0);
  u.step_micro = 1;
  size_t idx[2] = {0, 1};
  step_report r = {0};
  CHECK(model_zero_grad(&fx.theta, &e) == 0);
  CHECK(unlearn_micro(&u, &fx.theta, idx, 2, &r, &e) == 0);
  printf("# forget loss %.9f, (2/beta) ln 2 = %.9f\n", r.parts[0], 2 / c.beta * log(2));
  CHECK(fabs(r.parts[0] - 2 / c.beta * log(2)) < 1e-5);
  unlearn_free(&u);
}

/* A micro-batch's loss and gradients are divided by the micro-batches in its
 * step, as transformers' Trainer divides by gradient_accumulation_steps. */
TEST(micro_batches_share_a_step) {
  CHECK(fx_ok);
  if (!fx_ok) return;
  unlearn_config c;
  unlearn_defaults(ALG_GRADDIFF, &c);
  c.pairing = PAIR_CYCLE;
  unlearn_objective u;
  mpu_err e = {0};
  CHECK(unlearn_init(&u, &c, &fx.ref, &fx.forget, &fx.retain, NULL, NULL, 0, 2, 0, 1, &e) == 0);
  size_t idx[2] = {0, 1};
  step_report r1 = {0}, r3 = {0};
  size_t n = fx.theta.nparams;
  float *g1 = malloc(n * sizeof *g1);
  u.step_micro = 1;
  CHECK(model_zero_grad(&fx.theta, &e) == 0);
  CHECK(unlearn_micro(&u, &fx.theta, idx, 2, &r1, &e) == 0);
  memcpy(g1, fx.theta.grads, n * sizeof *g1);
  u.step_micro = 3;
  CHECK(model_zero_grad(&fx.theta, &e) == 0);
  CHECK(unlearn_micro(&u, &fx.theta, idx, 2, &r3, &e) == 0);
  CHECK(fabs(r3.loss * 3 - r1.loss) < 1e-6 * fabs(r1.loss));
  double worst = 0;
  for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(fx.theta.grads[i] * 3 - g1[i]));
  CHECK(worst < 1e-6);
  free(g1);
  unlearn_free(&u);
}

/* Random pairing of retain items is a function of the seed, the item and
 * the epoch; cyclic pairing is item mod |retain|. */
TEST(pairing) {
  CHECK(fx_ok);
  if (!fx_ok) return;
  unlearn_config c;
  unlearn_defaults(ALG_GRADDIFF, &c);
  c.seed = 7;
  unlearn_objective u, v;
  mpu_err e = {0};
  CHECK(unlearn_init(&u, &c, &fx.ref, &fx.forget, &fx.retain, NULL, NULL, 0, 2, 0, 3, &e) == 0);
  CHECK(unlearn_init(&v, &c, &fx.ref, &fx.forget, &fx.retain, NULL, NULL, 0, 2, 0, 3, &e) == 0);
  int differs = 0;
  for (uint32_t ep = 0; ep < 8; ep++)
    for (size_t i = 0; i < fx.forget.n; i++) {
      const sequence *a = unlearn_retain_row(&u, i, ep), *b = unlearn_retain_row(&v, i, ep);
      CHECK(a == b);
      differs |= a != unlearn_retain_row(&u, i, 0);
    }
  CHECK(differs); /* 2 retain items over 8 epochs: some draw differs */
  u.cfg.pairing = PAIR_CYCLE;
  for (size_t i = 0; i < 5; i++) CHECK(unlearn_retain_row(&u, i, 1) == &fx.retain.seq[i % fx.retain.n]);
  unlearn_free(&u);
  unlearn_free(&v);
}

TEST(refuses_what_it_cannot_do) {
  CHECK(fx_ok);
  if (!fx_ok) return;
  unlearn_config c;
  unlearn_objective u;
  mpu_err e = {0};
  unlearn_defaults(ALG_NPO, &c);
  CHECK(unlearn_init(&u, &c, &fx.ref, &fx.forget, NULL, NULL, NULL, 0, 2, 0, 1, &e) == MPU_EUSAGE);
  CHECK(strstr(e.msg, "retain") != NULL);
  unlearn_free(&u);
  unlearn_defaults(ALG_IDKDPO, &c);
  CHECK(unlearn_init(&u, &c, &fx.ref, &fx.forget, &fx.retain, NULL, NULL, 0, 2, 0, 1, &e) == MPU_EUSAGE);
  unlearn_free(&u);
  CHECK(algo_from_name("npo") == ALG_NPO && algo_from_name("NPO") < 0 && algo_from_name("") < 0);
}

int main(void) {
  fx_ok = fixture_load(&fx) == 0;
  RUN(ga_matches_pytorch);
  RUN(graddiff_matches_pytorch);
  RUN(npo_matches_pytorch);
  RUN(simnpo_matches_pytorch);
  RUN(undial_matches_pytorch);
  RUN(satimp_matches_pytorch);
  RUN(wga_matches_pytorch);
  RUN(idkdpo_matches_pytorch);
  RUN(npo_own_reference_is_ln2);
  RUN(micro_batches_share_a_step);
  RUN(pairing);
  RUN(refuses_what_it_cannot_do);
  return tap_done();
}
