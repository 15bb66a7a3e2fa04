/*
 * test_engine_gpu.c -- what of the GPU engine can be checked without a GPU:
 * the device memory plan (kernels/engine_gpu_plan.h), the layout the GPU is
 * given (lib/model_gpu.c), the optimizer's per-tensor decay, and the
 * dispatch: asking for CUDA where there is none fails with status 2 and a
 * reason, and leaves the model on the CPU, working.  The GPU's numbers are
 * checked on a GPU machine by tests/gpu/engine.sh (test_engine with
 * MPU_TEST_DEVICE=cuda).
 */
#include <stdlib.h>
#include <string.h>

#include "../../kernels/engine_gpu_plan.h"
#include "fixture.h"
#include "model_gpu.h"
#include "tap.h"

#define DIR "tests/fixtures/engine/"

typedef struct {
  size_t at, n;
} span;

static int by_at(const void *a, const void *b) {
  const span *x = a, *y = b;
  return x->at < y->at ? -1 : x->at > y->at;
}

/* Every buffer aligned for cuBLAS, large enough, and apart from the others. */
static void check_plan(size_t B, size_t T, size_t H, size_t F, size_t V, size_t Hq, size_t Hkv, size_t D, size_t L) {
  egpu_plan_t p;
  size_t total = egpu_plan_acts(&p, B, T, H, F, V, Hq, Hkv, D, L);
  size_t N = B * T, Q = Hq * D, KV = Hkv * D, att = B * Hq * T * T, g = Hq != Hkv ? N * Q : 0;
  CHECK(total == p.total);
  CHECK_EQ_U64(p.N, N);
  span s[64];
  size_t k = 0;
  const egpu_layer_acts *a = &p.l;
  /* one layer's block, at layer L-1 (the last) */
  size_t base = (L ? L - 1 : 0) * p.per_layer;
  size_t lay[][2] = {{a->in, N * H},  {a->ln1, N * H}, {a->rstd1, N},   {a->q, N * Q},    {a->k, N * KV},
                     {a->v, N * KV},  {a->att, att},   {a->atty, N * Q}, {a->mid, N * H},  {a->ln2, N * H},
                     {a->rstd2, N},   {a->gate, N * F}, {a->up, N * F},  {a->act, N * F}};
  for (size_t i = 0; L && i < sizeof lay / sizeof *lay; i++) {
    CHECK(lay[i][0] + lay[i][1] <= p.per_layer);
    s[k++] = (span){base + lay[i][0], lay[i][1]};
  }
  size_t rest[][2] = {{p.emb, N * H},  {p.out, N * H},    {p.lnf, N * H},   {p.rstdf, N},      {p.logits, N * V},
                      {p.lse, N},      {p.nll, N},        {p.w, N},         {p.cos, T * D / 2}, {p.sin, T * D / 2},
                      {p.dres, N * H}, {p.dln, N * H},    {p.dmid, N * H},  {p.dq, N * Q},     {p.datty, N * Q},
                      {p.dk, N * KV},  {p.dv, N * KV},    {p.dgate, N * F}, {p.dup, N * F},    {p.dact, N * F},
                      {p.ds, att},     {p.kx, g},         {p.vx, g},        {p.dkx, g},        {p.dvx, g}};
  for (size_t i = 0; i < sizeof rest / sizeof *rest; i++) {
    CHECK(rest[i][0] >= L * p.per_layer);
    s[k++] = (span){rest[i][0], rest[i][1]};
  }
  qsort(s, k, sizeof *s, by_at);
  for (size_t i = 0; i < k; i++) {
    CHECK(s[i].at % EGPU_ALIGN == 0);
    CHECK(s[i].at + s[i].n <= total);
    if (i) CHECK(s[i - 1].at + s[i - 1].n <= s[i].at);
  }
  CHECK(p.per_layer % EGPU_ALIGN == 0);
}

TEST(plan_is_aligned_and_disjoint) {
  check_plan(2, 12, 32, 80, 64, 4, 2, 8, 2);          /* the llama_gqa fixture */
  check_plan(3, 7, 24, 40, 61, 3, 3, 8, 1);           /* odd sizes, no GQA */
  check_plan(1, 1, 16, 16, 10, 2, 1, 8, 0);           /* no layers */
  check_plan(4, 512, 2048, 8192, 128256, 32, 8, 64, 16); /* Llama-3.2-1B at 4 x 512 */
  egpu_plan_t p;
  /* no GQA: no repeated keys and values */
  egpu_plan_acts(&p, 2, 8, 32, 64, 50, 4, 4, 8, 2);
  CHECK(p.kx == p.vx && p.vx == p.dkx && p.dkx == p.dvx && p.dvx == p.total);
  /* the activations grow with B*T and the attention with B*T*T */
  egpu_plan_t q;
  egpu_plan_acts(&q, 4, 8, 32, 64, 50, 4, 4, 8, 2);
  CHECK(q.total > p.total);
  CHECK_EQ_U64(q.l.atty - q.l.att, egpu_round(4 * 4 * 8 * 8));
}

/* The GPU's offsets are the host's, tensor by tensor. */
static void check_layout(const char *name) {
  char dir[256];
  snprintf(dir, sizeof dir, DIR "%s", name);
  model m;
  if (fixture_model(dir, NULL, &m)) {
    CHECK(!"fixture loads");
    return;
  }
  egpu_layer *layers = calloc((size_t)m.c.layers + 1, sizeof *layers);
  egpu_model d;
  model_gpu_layout(&m, &d, layers);
  CHECK_EQ_U64(d.nparams, m.nparams);
  CHECK_EQ_U64(d.ntensors, m.ntensors);
  CHECK(d.tensor_offset == m.offset);
  CHECK_EQ_U64(d.vocab, m.c.vocab);
  CHECK_EQ_U64(d.heads * d.head_dim, m.c.heads * m.c.head_dim);
  CHECK_EQ_U64(d.window, m.c.sliding_window);
  CHECK(d.eps == (float)m.c.eps);
  CHECK(m.c.tied ? d.lm_head == d.embed : d.lm_head != d.embed);
  size_t found = 0;
  for (size_t t = 0; t < m.ntensors; t++) {
    const llama_tensor *x = &m.tensors[t];
    const egpu_layer *l = x->layer >= 0 ? &layers[x->layer] : NULL;
    size_t got = EGPU_NONE;
    switch (x->role) {
    case LT_EMBED: got = d.embed; break;
    case LT_FINAL_NORM: got = d.final_norm; break;
    case LT_LM_HEAD: got = d.lm_head; break;
    case LT_ATTN_NORM: got = l->attn_norm; break;
    case LT_Q: got = l->wq; break;
    case LT_Q_BIAS: got = l->bq; break;
    case LT_K: got = l->wk; break;
    case LT_K_BIAS: got = l->bk; break;
    case LT_V: got = l->wv; break;
    case LT_V_BIAS: got = l->bv; break;
    case LT_O: got = l->wo; break;
    case LT_O_BIAS: got = l->bo; break;
    case LT_MLP_NORM: got = l->mlp_norm; break;
    case LT_GATE: got = l->wg; break;
    case LT_GATE_BIAS: got = l->bg; break;
    case LT_UP: got = l->wu; break;
    case LT_UP_BIAS: got = l->bu; break;
    case LT_DOWN: got = l->wd; break;
    case LT_DOWN_BIAS: got = l->bd; break;
    }
    CHECK_EQ_U64(got, m.offset[t]);
    found++;
  }
  CHECK_EQ_U64(found, m.ntensors);
  /* biases the architecture lacks are absent, not offset 0 */
  for (size_t l = 0; l < d.layers; l++) {
    CHECK((layers[l].bq == EGPU_NONE) == !m.c.qkv_bias);
    CHECK((layers[l].bo == EGPU_NONE) == !m.c.o_bias);
    CHECK((layers[l].bg == EGPU_NONE) == !m.c.mlp_bias);
  }
  free(layers);
  model_free(&m);
}

TEST(layout_matches_the_host) {
  check_layout("llama_gqa");
  check_layout("llama_mha_tied");
  check_layout("qwen2_bias");
  check_layout("llama_all_bias");
  check_layout("mistral");
}

TEST(weight_decay_per_tensor) {
  model m;
  if (fixture_model(DIR "qwen2_bias", NULL, &m)) {
    CHECK(!"fixture loads");
    return;
  }
  uint8_t *decay = malloc(m.ntensors);
  float *wd = malloc(m.ntensors * sizeof *wd);
  model_decay_mask(&m, decay);
  model_gpu_decay(&m, decay, 0.01, wd);
  for (size_t t = 0; t < m.ntensors; t++) CHECK(wd[t] == (decay[t] ? 0.01f : 0.0f));
  free(decay);
  free(wd);
  model_free(&m);
}

/* Without a usable GPU, CUDA is refused with a reason and the model stays
 * on the CPU and works; with one, the model goes to the GPU. */
TEST(device_dispatch) {
  model m;
  if (fixture_model(DIR "llama_gqa", NULL, &m)) {
    CHECK(!"fixture loads");
    return;
  }
  mpu_err probe = {0}, e = {0};
  int have = egpu_probe(&probe) == 0;
  int rc = model_set_device(&m, MODEL_CUDA, EGPU_MATH_FP32, &e);
  if (!have) {
    printf("# no GPU here: %s\n", e.msg);
    CHECK(rc == MPU_EUSAGE);
    CHECK(!strncmp(e.msg, "--device cuda: ", 15));
    CHECK(m.device == MODEL_CPU && m.gpu == NULL);
    mpu_err e2 = {0};
    CHECK(model_plan(&m, 1, 4, &e2) == 0);
    int32_t ids[4] = {1, 2, 3, 4}, tg[4] = {2, 3, 4, -1};
    CHECK(model_forward(&m, ids, tg, 1, 4) == 0);
    CHECK(m.nll[0] > 0 && m.nll[3] == 0);
    CHECK(model_fetch_logits(&m, &e2) == 0); /* nothing to fetch on the CPU */
  } else {
    CHECK(rc == 0 && m.device == MODEL_CUDA);
  }
  model_free(&m);
}

int main(void) {
  (void)fixture_compare, (void)fixture_tensor, (void)fixture_param_len; /* fixture.h's others */
  RUN(plan_is_aligned_and_disjoint);
  RUN(layout_matches_the_host);
  RUN(weight_decay_per_tensor);
  RUN(device_dispatch);
  return tap_done();
}
