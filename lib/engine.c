/*
 * engine.c -- a model, its tokenizer and its data options (see engine.h).
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kernels/engine_gpu.h"
#include "ops.h"

static const void *blob(const model *m, const char *name, size_t *len) {
  for (size_t i = 0; i < m->nblobs; i++)
    if (!strcmp(m->blobs[i].name, name)) {
      *len = m->blobs[i].size;
      return m->blobs[i].data;
    }
  return NULL;
}

int model_tokenizer(const model *m, tokenizer **t, mpu_err *e) {
  *t = NULL;
  size_t tl = 0, cl = 0;
  const char *tj = blob(m, "tokenizer.json", &tl), *cj = blob(m, "tokenizer_config.json", &cl);
  if (!tj) return 0;
  if (tok_load(t, tj, tl, cj, cl, e)) return mpu_fail_ctx(e, "the model's tokenizer.json");
  return 0;
}

/* The tokenizer and data options, from the first model. */
static int engine_setup(engine *g, mpu_err *e) {
  if (model_tokenizer(&g->m, &g->tok, e)) return e->status;
  const llama_config *c = &g->m.c;
  g->bos = g->tok && tok_bos(g->tok) >= 0 ? tok_bos(g->tok) : (int32_t)c->bos;
  g->eos = g->tok && tok_eos(g->tok) >= 0 ? tok_eos(g->tok) : (int32_t)c->eos;
  g->pad = g->tok && tok_pad(g->tok) >= 0 ? tok_pad(g->tok) : c->pad >= 0 ? (int32_t)c->pad : g->eos >= 0 ? g->eos : 0;
  if (g->tok && tok_vocab_size(g->tok) > (size_t)c->vocab)
    return mpu_fail(e, MPU_EVERIFY, "the tokenizer has %zu tokens but the config's vocab_size is %lld",
                    tok_vocab_size(g->tok), (long long)c->vocab);
  g->data = (data_options){.tok = g->tok, .vocab = (size_t)c->vocab, .max_len = (size_t)c->max_pos,
                           .use_chat = 1, .eos = g->eos};
  return 0;
}

/* all: every copy of a multi-copy stream when copy < 0 (else model_load's
 * "choose one" error). */
static int open_models(engine *g, const char *path, int copy, int threads, int all, mpu_err *e) {
  memset(g, 0, sizeof *g);
  ops_set_threads(threads > 0 ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
  g->ms = g->one;
  g->one[0] = &g->m;
  g->M = 1;
  if (ms_reader_open(&g->in, path, e)) return e->status;
  long copies = (long)json_integer_value(json_object_get(g->in.header, "copies"));
  if (!all || copy >= 0 || copies <= 1) return model_load(&g->m, &g->in, copy, e) ? e->status : engine_setup(g, e);
  if (!(g->ms = calloc((size_t)copies, sizeof *g->ms))) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  g->M = (int)copies;
  g->ms[0] = &g->m;
  for (int k = 1; k < g->M; k++)
    if (!(g->ms[k] = calloc(1, sizeof(model)))) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  return model_load_copies(g->ms, 0, g->M, &g->in, e) ? e->status : engine_setup(g, e);
}

int engine_open(engine *g, const char *path, int copy, int threads, mpu_err *e) {
  return open_models(g, path, copy, threads, 0, e);
}

int engine_open_copies(engine *g, const char *path, int copy, int threads, mpu_err *e) {
  return open_models(g, path, copy, threads, 1, e);
}

int engine_parse_device(const char *s) {
  return !strcmp(s, "cpu") ? MODEL_CPU : !strcmp(s, "cuda") ? MODEL_CUDA : !strcmp(s, "auto") ? MODEL_AUTO : -2;
}

int engine_check_device(int device, mpu_err *e) {
  if (device != MODEL_CUDA) return 0;
  return egpu_probe(e) ? mpu_fail_ctx(e, "--device cuda") : 0;
}

int engine_math_from_name(const char *name) {
  if (!name) return -1;
  if (!strcmp(name, "fp32")) return EGPU_MATH_FP32;
  if (!strcmp(name, "tf32")) return EGPU_MATH_TF32;
  if (!strcmp(name, "bf16")) return EGPU_MATH_BF16;
  return -1;
}

int engine_set_device(engine *g, int device, int math, mpu_err *e) {
  if (device == MODEL_AUTO) {
    mpu_err probe = {0};
    device = egpu_probe(&probe) ? MODEL_CPU : MODEL_CUDA;
  }
  if (math < 0) {
    const char *env = getenv("MPU_CUDA_MATH");
    math = env && *env ? engine_math_from_name(env) : EGPU_MATH_FP32;
    if (math < 0) return mpu_fail(e, MPU_EUSAGE, "MPU_CUDA_MATH is '%s'; use fp32, tf32 or bf16", env);
  }
  for (int k = 0; k < g->M; k++)
    if (model_set_device(g->ms[k], device, math, e)) return e->status;
  return 0;
}

void engine_close(engine *g) {
  for (int k = 1; g->ms && g->ms != g->one && k < g->M; k++)
    if (g->ms[k]) {
      model_free(g->ms[k]);
      free(g->ms[k]);
    }
  if (g->ms != g->one) free(g->ms);
  model_free(&g->m);
  tok_free(g->tok);
  ms_reader_close(&g->in);
  memset(g, 0, sizeof *g);
}
