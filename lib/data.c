/*
 * data.c -- JSON Lines examples to token sequences (see data.h).
 */
#include "data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

typedef struct {
  int32_t *ids;
  size_t n, cap;
} idbuf;

static int push(idbuf *b, int32_t id) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 64;
    int32_t *p = realloc(b->ids, cap * sizeof *p);
    if (!p) return -1;
    b->ids = p;
    b->cap = cap;
  }
  b->ids[b->n++] = id;
  return 0;
}

static int encode(idbuf *b, const data_options *o, const char *text, int add_special, mpu_err *e) {
  if (!o->tok) return mpu_fail(e, MPU_EUSAGE, "the model carries no tokenizer (tokenizer.json); give input_ids instead");
  return tok_encode(o->tok, text, strlen(text), add_special, &b->ids, &b->n, &b->cap, e);
}

static int finish(sequence *s, idbuf *b, size_t prompt, int rc, const data_options *o, mpu_err *e);

/* The prompt a question becomes. */
static int question_prompt(idbuf *b, const data_options *o, const char *q, mpu_err *e) {
  if (o->use_chat && o->tok) {
    char *prompt = NULL;
    mpu_err probe = {0};
    if (tok_chat_format(o->tok, o->system, q, &prompt, &probe) == 0) {
      /* the template writes its own special tokens */
      int rc = encode(b, o, prompt, 0, e);
      free(prompt);
      return rc;
    }
    free(prompt);
  }
  size_t n = strlen(q) + 32;
  char *p = malloc(n);
  if (!p) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  snprintf(p, n, "Question: %s\nAnswer: ", q);
  int rc = encode(b, o, p, 1, e);
  free(p);
  return rc;
}

/* A question and its answer: the prompt, the answer, the end of sequence. */
static int qa_ids(idbuf *b, const data_options *o, const char *q, const char *a, size_t *prompt, mpu_err *e) {
  int rc = question_prompt(b, o, q, e);
  *prompt = b->n;
  if (!rc) rc = encode(b, o, a, 0, e);
  if (!rc && o->eos >= 0 && push(b, o->eos)) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  return rc;
}

int sequence_qa(sequence *s, const char *question, const char *answer, const data_options *o, mpu_err *e) {
  memset(s, 0, sizeof *s);
  idbuf b = {0};
  size_t prompt = 0;
  int rc = qa_ids(&b, o, question, answer, &prompt, e);
  return finish(s, &b, prompt, rc, o, e);
}

int question_ids(const data_options *o, const char *question, int32_t **ids, size_t *n, mpu_err *e) {
  idbuf b = {0};
  int rc = question_prompt(&b, o, question, e);
  if (rc) {
    free(b.ids);
    return rc;
  }
  *ids = b.ids;
  *n = b.n;
  return 0;
}

int sequence_from_json(sequence *s, const char *json, size_t len, const data_options *o, mpu_err *e) {
  memset(s, 0, sizeof *s);
  json_error_t jerr;
  json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!j) return mpu_fail(e, MPU_EUSAGE, "not JSON: %s (column %d)", jerr.text, jerr.column);
  if (!json_is_object(j)) {
    json_decref(j);
    return mpu_fail(e, MPU_EUSAGE, "not a JSON object");
  }
  idbuf b = {0};
  size_t prompt = 0;
  int rc = 0;
  json_t *text = json_object_get(j, "text"), *ids = json_object_get(j, "input_ids");
  json_t *p = json_object_get(j, "prompt"), *c = json_object_get(j, "completion");
  json_t *q = json_object_get(j, "question"), *a = json_object_get(j, "answer");
  if (json_is_array(ids)) {
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
      if (!json_is_integer(v)) {
        rc = mpu_fail(e, MPU_EUSAGE, "input_ids[%zu] is not an integer", i);
        break;
      }
      if (push(&b, (int32_t)json_integer_value(v))) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
    }
    json_t *pl = json_object_get(j, "prompt_len");
    if (!rc && pl && (!json_is_integer(pl) || json_integer_value(pl) < 0))
      rc = mpu_fail(e, MPU_EUSAGE, "prompt_len must be a non-negative integer");
    prompt = pl ? (size_t)json_integer_value(pl) : 0;
  } else if (json_is_string(text)) {
    rc = encode(&b, o, json_string_value(text), 1, e);
  } else if (json_is_string(p) && json_is_string(c)) {
    rc = encode(&b, o, json_string_value(p), 1, e);
    prompt = b.n;
    if (!rc) rc = encode(&b, o, json_string_value(c), 0, e);
    if (!rc && o->eos >= 0 && push(&b, o->eos)) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  } else if (json_is_string(q) && json_is_string(a)) {
    rc = qa_ids(&b, o, json_string_value(q), json_string_value(a), &prompt, e);
  } else {
    rc = mpu_fail(e, MPU_EUSAGE,
                  "needs \"text\", \"prompt\" and \"completion\", \"question\" and \"answer\", or \"input_ids\"");
  }
  json_decref(j);
  return finish(s, &b, prompt, rc, o, e);
}

/* Checks a sequence built in b (prompt tokens before the first scored one)
 * against the model, and hands it to s; frees b on failure. */
static int finish(sequence *s, idbuf *bp, size_t prompt, int rc, const data_options *o, mpu_err *e) {
  idbuf b = *bp;
  if (!rc && b.n < 2) rc = mpu_fail(e, MPU_EUSAGE, "fewer than 2 tokens: nothing to predict");
  if (!rc && prompt >= b.n) rc = mpu_fail(e, MPU_EUSAGE, "no token after the prompt is scored");
  if (!rc && o->vocab)
    for (size_t i = 0; i < b.n && !rc; i++)
      if (b.ids[i] < 0 || (size_t)b.ids[i] >= o->vocab)
        rc = mpu_fail(e, MPU_EUSAGE, "token id %d is outside the model's vocabulary (0..%zu)",
                      b.ids[i], o->vocab - 1);
  if (!rc && o->max_len && b.n > o->max_len) {
    if (!o->truncate)
      rc = mpu_fail(e, MPU_EUSAGE, "%zu tokens, longer than max_position_embeddings (%zu); use --truncate to cut",
                    b.n, o->max_len);
    else if (prompt >= o->max_len)
      rc = mpu_fail(e, MPU_EUSAGE, "the prompt alone has %zu tokens, more than %zu", prompt, o->max_len);
    else
      b.n = o->max_len;
  }
  if (rc) {
    free(b.ids);
    return rc;
  }
  s->ids = b.ids;
  s->len = (uint32_t)b.n;
  s->prompt_len = (uint32_t)(prompt ? prompt : 1);
  return 0;
}

int lines_each(const char *path, int (*fn)(void *ctx, char *line, size_t len, mpu_err *e), void *ctx, mpu_err *e) {
  FILE *f = !strcmp(path, "-") ? stdin : fopen(path, "r");
  if (!f) return mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0, lineno = 0;
  ssize_t len;
  int rc = 0;
  while (!rc && (len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    size_t k = 0;
    while (k < (size_t)len && (line[k] == ' ' || line[k] == '\t')) k++;
    if (k == (size_t)len) continue; /* blank lines are allowed */
    if ((rc = fn(ctx, line, (size_t)len, e))) mpu_fail_ctx(e, "%s:%zu", path, lineno);
  }
  free(line);
  if (!rc && ferror(f)) rc = mpu_fail(e, MPU_EUSAGE, "%s: read error", path);
  if (f != stdin) fclose(f);
  return rc;
}

typedef struct {
  dataset *d;
  const data_options *o;
  size_t alloc;
} load_ctx;

static int load_line(void *ctx, char *line, size_t len, mpu_err *e) {
  load_ctx *c = ctx;
  dataset *d = c->d;
  if (d->n == c->alloc) {
    c->alloc = c->alloc ? 2 * c->alloc : 256;
    sequence *s = realloc(d->seq, c->alloc * sizeof *s);
    if (!s) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    d->seq = s;
  }
  sequence *s = &d->seq[d->n];
  if (sequence_from_json(s, line, len, c->o, e)) return e->status;
  if (s->len > d->max_len) d->max_len = s->len;
  d->scored += s->len - s->prompt_len;
  d->n++;
  return 0;
}

int dataset_load(dataset *d, const char *path, const data_options *o, mpu_err *e) {
  memset(d, 0, sizeof *d);
  load_ctx c = {d, o, 0};
  int rc = lines_each(path, load_line, &c, e);
  if (!rc && d->n == 0) rc = mpu_fail(e, MPU_EUSAGE, "%s: no examples", path);
  return rc;
}

void dataset_free(dataset *d) {
  for (size_t i = 0; i < d->n; i++) free(d->seq[i].ids);
  free(d->seq);
  memset(d, 0, sizeof *d);
}

int batch_rows(batch *b, const sequence *const *rows, size_t n, int32_t pad, mpu_err *e) {
  size_t T = 0;
  for (size_t i = 0; i < n; i++)
    if (rows[i]->len > T) T = rows[i]->len;
  if (n * T > b->cap) {
    free(b->ids);
    b->ids = malloc(2 * n * T * sizeof(int32_t));
    if (!b->ids) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    b->cap = n * T;
  }
  b->targets = b->ids + n * T;
  b->B = n;
  b->T = T;
  b->scored = 0;
  for (size_t i = 0; i < n; i++) {
    const sequence *s = rows[i];
    int32_t *row = b->ids + i * T, *tg = b->targets + i * T;
    for (size_t t = 0; t < T; t++) {
      row[t] = t < s->len ? s->ids[t] : pad;
      /* position t predicts token t+1, scored from the prompt's end on */
      tg[t] = t + 1 < s->len && t + 1 >= s->prompt_len ? s->ids[t + 1] : -1;
      if (tg[t] >= 0) b->scored++;
    }
  }
  return 0;
}

int batch_make(batch *b, const dataset *d, const size_t *idx, size_t n, int32_t pad, mpu_err *e) {
  const sequence *stack[64] = {0}, **rows = n <= 64 ? stack : malloc(n * sizeof *rows);
  if (!rows) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  for (size_t i = 0; i < n; i++) rows[i] = &d->seq[idx[i]];
  int rc = batch_rows(b, rows, n, pad, e);
  if (rows != stack) free(rows);
  return rc;
}

void batch_free(batch *b) {
  free(b->ids);
  memset(b, 0, sizeof *b);
}
