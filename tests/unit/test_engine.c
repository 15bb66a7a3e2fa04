/*
 * test_engine.c -- the CPU engine against PyTorch autograd.
 *
 * tests/fixtures/engine/<case>/ holds a random model, a batch, and what
 * PyTorch computed in float64 (make_fixtures.py): logits, loss, every
 * parameter's gradient, and the losses of 10 AdamW steps.  The engine runs in
 * fp32; each tensor must agree to 1e-5 relative to its largest element (we
 * see about 1e-6), each element above 1e-3 of the largest to 1e-3 of itself
 * (fp32 cancellation in small elements), and the 10 step losses to 1e-4.
 *
 * MPU_TEST_DEVICE=cuda runs the same checks on the GPU engine
 * (kernels/engine_gpu.cu; tests/gpu/engine.sh), with the same tolerances for
 * fp32 math; MPU_CUDA_MATH=tf32 or bf16 scales them by MPU_TEST_LOOSE.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../kernels/engine_gpu.h"
#include "model.h"
#include "ops.h"
#include "optim.h"
#include "fixture.h"
#include "tap.h"

#define DIR "tests/fixtures/engine/"

static int device = MODEL_CPU, math = 0;
static double loose = 1; /* tolerance factor for TF32/bf16 products */

/* The model on the device under test (nothing to do for the CPU). */
static int use_device(model *m) {
  mpu_err e = {0};
  if (device == MODEL_CPU) return 0;
  if (model_set_device(m, device, math, &e)) printf("# %s\n", e.msg);
  return e.status;
}

typedef struct {
  int32_t *ids, *targets;
  size_t B, T, count;
  float *w;
} batch;

/* labels[b][t] = -100 or the token at t; position t predicts labels[t+1]. */
static int load_batch(const char *path, batch *bt) {
  json_t *j = json_load_file(path, 0, NULL);
  json_t *ids = json_object_get(j, "input_ids"), *labels = json_object_get(j, "labels");
  if (!j || !json_is_array(ids)) return -1;
  bt->B = json_array_size(ids);
  bt->T = json_array_size(json_array_get(ids, 0));
  size_t N = bt->B * bt->T;
  bt->ids = malloc(N * sizeof(int32_t));
  bt->targets = malloc(N * sizeof(int32_t));
  bt->w = calloc(N, sizeof(float));
  bt->count = 0;
  for (size_t b = 0; b < bt->B; b++)
    for (size_t t = 0; t < bt->T; t++) {
      size_t n = b * bt->T + t;
      bt->ids[n] = (int32_t)json_integer_value(json_array_get(json_array_get(ids, b), t));
      long long next = t + 1 < bt->T ? json_integer_value(json_array_get(json_array_get(labels, b), t + 1)) : -100;
      bt->targets[n] = next == -100 ? -1 : (int32_t)next;
      if (next != -100) bt->count++;
    }
  for (size_t n = 0; n < N; n++)
    if (bt->targets[n] >= 0) bt->w[n] = 1.0f / (float)bt->count;
  json_decref(j);
  return 0;
}

static void check_case(const char *name) {
  char dir[512], path[600];
  snprintf(dir, sizeof dir, DIR "%s", name);
  model m;
  batch bt;
  snprintf(path, sizeof path, "%s/batch.json", dir);
  if (load_batch(path, &bt) || fixture_model(dir, NULL, &m)) {
    CHECK(!"fixture loads");
    return;
  }
  mpu_err e = {0};
  CHECK(use_device(&m) == 0);
  CHECK(model_plan(&m, bt.B, bt.T, &e) == 0);
  st_file ex;
  snprintf(path, sizeof path, "%s/expected.safetensors", dir);
  CHECK(st_open(&ex, path, -1, &e) == 0);

  CHECK(model_zero_grad(&m, &e) == 0);
  CHECK(model_forward(&m, bt.ids, bt.targets, bt.B, bt.T) == 0);
  CHECK(model_fetch_logits(&m, &e) == 0);
  size_t n;
  double nw, el, worst_nw = 0, worst_el = 0;
  float *logits = fixture_tensor(&ex, "logits", &n);
  CHECK(logits && n == bt.B * bt.T * (size_t)m.c.vocab);
  if (logits) {
    fixture_compare(m.logits, logits, n, &nw, &el);
    printf("# %s logits: normwise %.2e, elementwise %.2e\n", name, nw, el);
    CHECK(nw < 1e-5 * loose);
    CHECK(el < 1e-3 * loose);
  }
  double loss = 0;
  for (size_t i = 0; i < bt.B * bt.T; i++) loss += bt.w[i] * m.nll[i];
  float *ref_loss = fixture_tensor(&ex, "loss", &n);
  CHECK(ref_loss && n == 1);
  if (ref_loss) {
    printf("# %s loss %.8f (torch %.8f)\n", name, loss, ref_loss[0]);
    CHECK(fabs(loss - ref_loss[0]) < 1e-5 * loose * fabs(ref_loss[0]));
  }
  CHECK(model_backward(&m, bt.w) == 0);
  CHECK(model_fetch_grads(&m, &e) == 0);
  const char *worst = "";
  size_t checked = 0;
  for (size_t t = 0; t < m.ntensors; t++) {
    char gname[200];
    snprintf(gname, sizeof gname, "grad.%s", m.tensors[t].name);
    float *g = fixture_tensor(&ex, gname, &n);
    CHECK(g != NULL);
    if (!g) continue;
    size_t len = fixture_param_len(&m, t);
    CHECK(n == len);
    fixture_compare(m.grads + m.offset[t], g, len, &nw, &el);
    if (nw > worst_nw) {
      worst_nw = nw;
      worst = m.tensors[t].name;
    }
    if (el > worst_el) worst_el = el;
    checked++;
    free(g);
  }
  printf("# %s: %zu gradients, worst normwise %.2e (%s), worst elementwise %.2e\n", name, checked, worst_nw, worst,
         worst_el);
  CHECK(checked == m.ntensors);
  CHECK(worst_nw < 1e-5 * loose);
  CHECK(worst_el < 1e-3 * loose);

  /* 10 AdamW steps on the same batch; each loss before its update. */
  snprintf(path, sizeof path, "%s/steps.json", dir);
  json_t *steps = json_load_file(path, 0, NULL);
  json_t *oc = json_object_get(steps, "optimizer"), *losses = json_object_get(steps, "losses");
  optim_config cfg = {OPT_ADAMW, json_number_value(json_object_get(oc, "lr")),
                      json_number_value(json_array_get(json_object_get(oc, "betas"), 0)),
                      json_number_value(json_array_get(json_object_get(oc, "betas"), 1)),
                      json_number_value(json_object_get(oc, "eps")),
                      json_number_value(json_object_get(oc, "weight_decay")),
                      json_number_value(json_object_get(oc, "max_grad_norm")), SCHED_CONSTANT, 0};
  optimizer opt;
  CHECK(optim_init(&opt, &cfg, &m, &e) == 0);
  double worst_step = 0;
  for (size_t s = 0; s < json_array_size(losses); s++) {
    CHECK(model_zero_grad(&m, &e) == 0);
    CHECK(model_forward(&m, bt.ids, bt.targets, bt.B, bt.T) == 0);
    double l = 0;
    for (size_t i = 0; i < bt.B * bt.T; i++) l += bt.w[i] * m.nll[i];
    double ref = json_number_value(json_array_get(losses, s));
    double d = fabs(l - ref) / fabs(ref);
    if (d > worst_step) worst_step = d;
    CHECK(model_backward(&m, bt.w) == 0);
    optim_step(&opt, &m, cfg.lr, -1);
  }
  printf("# %s: %zu AdamW steps, worst relative loss difference %.2e\n", name, json_array_size(losses), worst_step);
  CHECK(json_array_size(losses) == 10);
  CHECK(worst_step < 1e-4 * loose);
  optim_free(&opt);
  json_decref(steps);
  free(logits);
  free(ref_loss);
  st_close(&ex);
  model_free(&m);
  free(bt.ids);
  free(bt.targets);
  free(bt.w);
}

/* Decoding with the key/value cache gives the logits of the full forward at
 * every position (up to fp32 summation order). */
static void check_decode(const char *name) {
  char dir[512], path[600];
  snprintf(dir, sizeof dir, DIR "%s", name);
  snprintf(path, sizeof path, "%s/batch.json", dir);
  model m;
  batch bt;
  mpu_err e = {0};
  if (load_batch(path, &bt) || fixture_model(dir, NULL, &m)) {
    CHECK(!"fixture loads");
    return;
  }
  CHECK(use_device(&m) == 0);
  CHECK(model_plan(&m, 1, bt.T, &e) == 0);
  CHECK(model_forward(&m, bt.ids, bt.targets, 1, bt.T) == 0);
  CHECK(model_fetch_logits(&m, &e) == 0);
  CHECK(model_decode_init(&m, bt.T, &e) == 0);
  size_t V = (size_t)m.c.vocab;
  double worst = 0;
  for (size_t t = 0; t < bt.T; t++) {
    const float *l = model_decode_step(&m, bt.ids[t], t);
    CHECK(l != NULL);
    if (!l) break;
    double nw, el;
    fixture_compare(l, m.logits + t * V, V, &nw, &el);
    if (nw > worst) worst = nw;
  }
  printf("# %s: cached decoding vs full forward, worst normwise %.2e\n", name, worst);
  CHECK(worst < 1e-5 * loose);
  model_free(&m);
  free(bt.ids);
  free(bt.targets);
  free(bt.w);
}

TEST(kv_cache_decoding) {
  check_decode("llama_gqa");
  check_decode("qwen2_bias");
  check_decode("llama3_rope_scaling");
}

TEST(llama_gqa) { check_case("llama_gqa"); }
TEST(llama_mha_tied) { check_case("llama_mha_tied"); }
TEST(qwen2_bias) { check_case("qwen2_bias"); }
TEST(llama_head_dim) { check_case("llama_head_dim"); }
TEST(llama3_rope_scaling) { check_case("llama3_rope_scaling"); }
TEST(llama_all_bias) { check_case("llama_all_bias"); }
TEST(mistral) { check_case("mistral"); }

int main(void) {
  ops_set_threads(2);
  const char *dev = getenv("MPU_TEST_DEVICE"), *mname = getenv("MPU_CUDA_MATH"), *lo = getenv("MPU_TEST_LOOSE");
  if (dev && !strcmp(dev, "cuda")) {
    device = MODEL_CUDA;
    math = !mname ? EGPU_MATH_FP32 : !strcmp(mname, "tf32") ? EGPU_MATH_TF32 : !strcmp(mname, "bf16") ? EGPU_MATH_BF16 : EGPU_MATH_FP32;
    if (math != EGPU_MATH_FP32) loose = lo ? atof(lo) : 1000;
    printf("# device cuda, math %s, tolerances x%g\n", mname && *mname ? mname : "fp32", loose);
  }
  RUN(llama_gqa);
  RUN(llama_mha_tied);
  RUN(qwen2_bias);
  RUN(llama_head_dim);
  RUN(llama3_rope_scaling);
  RUN(llama_all_bias);
  RUN(mistral);
  RUN(kv_cache_decoding);
  return tap_done();
}
