/*
 * decode.c -- greedy decoding (see decode.h).
 */
#include "decode.h"

#include <stdlib.h>

const char *decode_stop_name(decode_stop s) {
  return s == STOP_EOS ? "eos" : s == STOP_CONTEXT ? "context" : "length";
}

int greedy_decode(model *m, const int32_t *prompt, size_t n, size_t max_new, int32_t eos, int32_t **out,
                  size_t *out_n, decode_stop *stop, mpu_err *e) {
  *out = NULL;
  *out_n = 0;
  *stop = STOP_LENGTH;
  size_t max_pos = (size_t)m->c.max_pos;
  if (n == 0) return mpu_fail(e, MPU_EUSAGE, "the prompt encodes to no tokens");
  if (n > max_pos)
    return mpu_fail(e, MPU_EUSAGE, "the prompt has %zu tokens, more than max_position_embeddings (%zu)", n, max_pos);
  size_t limit = n + max_new < max_pos ? n + max_new : max_pos;
  if (model_decode_init(m, limit, e)) return e->status;
  int32_t *gen = malloc((limit - n + 1) * sizeof *gen);
  if (!gen) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  const float *logits = NULL;
  for (size_t pos = 0; pos < n && (pos == 0 || logits); pos++) logits = model_decode_step(m, prompt[pos], pos);
  size_t k = 0, V = (size_t)m->c.vocab;
  while (n + k < limit) {
    if (!logits) { /* a GPU failure */
      free(gen);
      return model_error(m, e);
    }
    size_t best = 0; /* the first of equal maxima, as torch.argmax */
    for (size_t v = 1; v < V; v++)
      if (logits[v] > logits[best]) best = v;
    if ((int32_t)best == eos) {
      *stop = STOP_EOS;
      break;
    }
    gen[k] = (int32_t)best;
    logits = model_decode_step(m, gen[k], n + k);
    k++;
  }
  if (*stop != STOP_EOS && n + k == max_pos && k < max_new) *stop = STOP_CONTEXT;
  *out = gen;
  *out_n = k;
  return 0;
}
