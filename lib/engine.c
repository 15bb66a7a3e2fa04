/*
 * engine.c -- a model, its tokenizer and its data options (see engine.h).
 */
#include "engine.h"

#include <string.h>
#include <unistd.h>

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

int engine_open(engine *g, const char *path, int copy, int threads, mpu_err *e) {
  memset(g, 0, sizeof *g);
  ops_set_threads(threads > 0 ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
  if (ms_reader_open(&g->in, path, e) || model_load(&g->m, &g->in, copy, e) || model_tokenizer(&g->m, &g->tok, e))
    return e->status;
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

void engine_close(engine *g) {
  model_free(&g->m);
  tok_free(g->tok);
  ms_reader_close(&g->in);
  memset(g, 0, sizeof *g);
}
