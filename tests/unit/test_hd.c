/*
 * test_hd.c -- the math the CPU and the GPU share, checked on the CPU:
 *
 *  1. lib/rng.h, lib/reparam.h and lib/fp.h, now also compiled as CUDA,
 *     give the same bits as before (tests/fixtures/hd/vectors.txt, made by
 *     tests/fixtures/hd/make.sh from the code before the change);
 *  2. the GPU's pipeline (kernels/stage.h: chunking, the thread bodies of
 *     the kernels, the host's staging of each chunk) run on the CPU with
 *     small device budgets, so every tensor is cut into many chunks, gives
 *     perturb_tensor's and invert's CPU results bit for bit, for every role
 *     of a Llama layer, GQA, biases, --dtype keep (bf16, f16) and several M;
 *  3. denoise's aggregation the same way.
 * What this cannot see is the CUDA plumbing itself (streams, copies,
 * launches) and nvcc's code generation: tests/gpu/run.sh checks those on a
 * machine with a GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp.h"
#include "protocol.h"
#include "reparam.h"
#include "rng.h"
#include "stage.h"
#include "tap.h"
#include "../fixtures/hd/vectors_body.h"

TEST(shared_headers_give_the_bits_of_before) {
  FILE *want = fopen("tests/fixtures/hd/vectors.txt", "r");
  CHECK(want != NULL);
  if (!want) return;
  char *buf = NULL;
  size_t len = 0;
  FILE *got = open_memstream(&buf, &len);
  hd_vectors(got);
  fclose(got);
  char line[512];
  const char *p = buf;
  int lines = 0, bad = 0;
  while (fgets(line, sizeof line, want)) {
    size_t n = strlen(line);
    if (strncmp(p, line, n)) {
      printf("# want: %s", line);
      bad++;
    }
    const char *nl = strchr(p, '\n');
    p = nl ? nl + 1 : p + strlen(p);
    lines++;
  }
  CHECK(bad == 0);
  CHECK(lines > 20);
  CHECK(*p == 0); /* nothing more than the fixture */
  fclose(want);
  free(buf);
}

/* A perturber for a small GQA model with biases, from a fixed key. */
static int make_perturber(perturber *pt, int M, int keep, int alphas_mode) {
  json_t *h = json_pack("{s:{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b}}", "config", "model_type", "qwen2",
                        "hidden_act", "silu", "vocab_size", 40, "hidden_size", 48, "intermediate_size", 37,
                        "num_hidden_layers", 2, "num_attention_heads", 6, "num_key_value_heads", 2,
                        "max_position_embeddings", 64, "rms_norm_eps", 1e-6, "rope_theta", 10000.0,
                        "tie_word_embeddings", 0);
  server_key k;
  for (int i = 0; i < SECRET_BYTES; i++) k.master[i] = (uint8_t)(i * 37 + 5);
  round_params p = {.round = 3, .copies = M, .kappa = 0.05, .alphas_mode = alphas_mode, .keep_dtype = keep};
  mpu_err e = {0};
  int rc = perturber_init(pt, &k, h, "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", &p, &e);
  if (rc) printf("# %s\n", e.msg);
  json_decref(h);
  return rc;
}

/* One tensor of layer 1 by name, with values drawn from index. */
static void make_tensor(group_tensor *t, const char *name, size_t rows, size_t cols, int dtype, size_t index) {
  memset(t, 0, sizeof *t);
  t->name = (char *)name;
  t->role = llama_role(name, &t->layer);
  t->index = index;
  t->elems = rows * cols;
  t->en.dtype = dtype;
  t->en.raw_size = t->elems * (dtype == MPUC_DT_F32 ? 4 : 2);
  t->f32 = malloc(t->elems * sizeof(float));
  for (size_t i = 0; i < t->elems; i++) {
    float x = rng_normal_at(5, (uint32_t)index, 0, 0, i) * 0.02f;
    t->f32[i] = dtype == MPUC_DT_F32 ? x : round_through(x, dtype == MPUC_DT_BF16 ? RP_ROUND_BF16 : RP_ROUND_F16);
  }
}

static float **floats(int M, size_t n) {
  float **a = calloc((size_t)M, sizeof *a);
  for (int k = 0; k < M; k++) a[k] = calloc(n ? n : 1, sizeof(float));
  return a;
}
static void floats_free(float **a, int M) {
  for (int k = 0; k < M; k++) free(a[k]);
  free(a);
}

/* Every role of a Qwen2 layer (q/k/v with biases) against the CPU. */
static const struct {
  const char *name;
  size_t rows, cols;
} roles[] = {
  {"model.layers.1.self_attn.q_proj.weight", 48, 48}, {"model.layers.1.self_attn.q_proj.bias", 48, 1},
  {"model.layers.1.self_attn.k_proj.weight", 16, 48}, {"model.layers.1.self_attn.k_proj.bias", 16, 1},
  {"model.layers.1.self_attn.v_proj.weight", 16, 48}, {"model.layers.1.self_attn.v_proj.bias", 16, 1},
  {"model.layers.1.self_attn.o_proj.weight", 48, 48}, {"model.layers.1.mlp.gate_proj.weight", 37, 48},
  {"model.layers.1.mlp.up_proj.weight", 37, 48},      {"model.layers.1.mlp.down_proj.weight", 48, 37},
  {"model.layers.1.input_layernorm.weight", 48, 1},   {"model.layers.1.post_attention_layernorm.weight", 48, 1},
};

static int check_pipeline(int M, int keep, int dtype, int alphas_mode) {
  perturber pt;
  if (make_perturber(&pt, M, keep, alphas_mode)) return 1;
  int bad = 0;
  for (size_t r = 0; r < sizeof roles / sizeof roles[0]; r++) {
    group_tensor t;
    make_tensor(&t, roles[r].name, roles[r].rows, roles[r].cols, dtype, 10 + r);
    size_t n = t.elems;
    float sigma = 0.0013f;
    float **pub = floats(M, n), **ret = floats(M, n), **delta = floats(M, n);
    float **gpub = floats(M, n), **gdelta = floats(M, n);
    perturb_tensor(&pt, &t, sigma, pub);
    /* a client's update: small, different per copy */
    for (int k = 0; k < M; k++)
      for (size_t i = 0; i < n; i++) ret[k][i] = pub[k][i] + rng_normal_at(6, (uint32_t)k, 0, 0, i) * 1e-3f;
    mpu_err e = {0};
    if (invert_tensor(&pt, &t, sigma, ret, pub, delta, &e)) bad++;
    stage_job j;
    if (perturb_job(&pt, &t, sigma, &j, &e)) bad++;
    /* budgets from one unit (many chunks) to the whole tensor */
    size_t budgets[] = {stage_unit(&j.L), 3 * stage_unit(&j.L), n};
    for (int b = 0; b < 3; b++) {
      for (int k = 0; k < M; k++) memset(gpub[k], 0xff, n * sizeof(float)), memset(gdelta[k], 0xff, n * sizeof(float));
      if (stage_run_host(&j, budgets[b], t.f32, NULL, gpub, NULL)) bad++;
      for (int k = 0; k < M; k++)
        if (memcmp(gpub[k], pub[k], n * sizeof(float))) {
          printf("# perturb differs: %s copy %d budget %zu\n", t.name, k, budgets[b]);
          bad++;
        }
      if (stage_run_host(&j, budgets[b], t.f32, ret, gpub, gdelta)) bad++;
      for (int k = 0; k < M; k++)
        if (memcmp(gpub[k], pub[k], n * sizeof(float)) || memcmp(gdelta[k], delta[k], n * sizeof(float))) {
          printf("# invert differs: %s copy %d budget %zu\n", t.name, k, budgets[b]);
          bad++;
        }
    }
    /* the update is the client's, to rounding */
    perturb_job_free(&j);
    floats_free(pub, M), floats_free(ret, M), floats_free(delta, M), floats_free(gpub, M), floats_free(gdelta, M);
    free(t.f32);
  }
  perturber_wipe(&pt);
  return bad;
}

TEST(gpu_pipeline_on_the_cpu_gives_perturb_and_invert_bits) {
  CHECK(check_pipeline(2, 0, MPUC_DT_F32, ALPHAS_SECRET) == 0);
  CHECK(check_pipeline(3, 0, MPUC_DT_BF16, ALPHAS_PAPER) == 0);
  CHECK(check_pipeline(5, 1, MPUC_DT_BF16, ALPHAS_SECRET) == 0);
  CHECK(check_pipeline(2, 1, MPUC_DT_F16, ALPHAS_SECRET) == 0);
  CHECK(check_pipeline(64, 0, MPUC_DT_F32, ALPHAS_SECRET) == 0);
}

TEST(stage_unit_keeps_heads_and_noise_blocks_whole) {
  rp_layout q = {RP_ROT_ROWS, 48, 1, 6, 8, 3}, o = {RP_ROT_COLS, 48, 48, 6, 8, 3}, b = {RP_PERM_ROWS, 37, 1, 0, 0, 1};
  CHECK(stage_unit(&q) == 8);
  CHECK(stage_unit(&o) == 48);
  CHECK(stage_unit(&b) == 4);
  CHECK(stage_chunk(&q, 48, 7) == 0);  /* not one head */
  CHECK(stage_chunk(&q, 48, 20) == 16);
  CHECK(stage_chunk(&b, 37, 1000) == 37);
}

TEST(denoise_on_the_pipeline_bodies_gives_aggregate_bits) {
  enum { M = 3, N = 1001 };
  static float theta[N], delta[M * N], out[N], ref[N];
  double w[M] = {0.5, 0.3, 0.2};
  for (int i = 0; i < N; i++) theta[i] = rng_normal_at(1, 1, 0, 0, (uint64_t)i);
  for (int i = 0; i < M * N; i++) delta[i] = rng_normal_at(2, 2, 0, 0, (uint64_t)i) * 1e-3f;
  mpu_err e = {0};
  CHECK(aggregate_tensor(NULL, theta, delta, N, w, M, 0.9, ref, &e) == 0);
  for (int t = 0; t < N; t++) stage_aggregate(theta, delta, N, w, M, 0.9, out, (size_t)t);
  CHECK(!memcmp(out, ref, sizeof out));
}

int main(void) {
  RUN(shared_headers_give_the_bits_of_before);
  RUN(gpu_pipeline_on_the_cpu_gives_perturb_and_invert_bits);
  RUN(stage_unit_keeps_heads_and_noise_blocks_whole);
  RUN(denoise_on_the_pipeline_bodies_gives_aggregate_bits);
  return tap_done();
}
