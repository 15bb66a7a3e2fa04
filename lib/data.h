/*
 * data.h -- training and scoring data: JSON Lines in, token sequences out.
 *
 * Each line is one example, in one of these forms:
 *   {"text": T}                         the loss on every token after the first
 *   {"prompt": P, "completion": C}      the loss on C (and the end-of-sequence token)
 *   {"question": Q, "answer": A}        as prompt/completion, with Q formatted by
 *                                       the model's chat template when it has one,
 *                                       else as "Question: Q\nAnswer: "
 *   {"input_ids": [...], "prompt_len": N}  pre-tokenized; the loss on positions >= N
 * Prompt and completion are tokenized separately and joined, so the boundary
 * between them is exact; the beginning-of-sequence token comes from the
 * tokenizer's post-processor, the end-of-sequence token is appended to
 * completions and answers.
 */
#ifndef MPU_DATA_H
#define MPU_DATA_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "tokenizer.h"

typedef struct {
  int32_t *ids;
  uint32_t len;
  uint32_t prompt_len;    /* tokens before the first scored one (>= 1) */
} sequence;

typedef struct {
  sequence *seq;
  size_t n;
  size_t max_len;
  size_t scored;          /* tokens with a loss, over all sequences */
} dataset;

typedef struct {
  const tokenizer *tok;   /* may be NULL: only input_ids lines then */
  size_t vocab;           /* ids must be below it */
  size_t max_len;         /* longest sequence allowed (max_position_embeddings) */
  int truncate;           /* cut longer sequences (from the end) instead of refusing */
  int use_chat;           /* format questions with the chat template if there is one */
  const char *system;     /* system prompt for the chat template (may be NULL) */
  int32_t eos;            /* appended to completions; -1: none */
} data_options;

/* Reads every line of path ("-": stdin).  Errors name the file and line. */
int dataset_load(dataset *d, const char *path, const data_options *o, mpu_err *e);
/* One example from a JSON object (what dataset_load does per line). */
int sequence_from_json(sequence *s, const char *json, size_t len, const data_options *o, mpu_err *e);
/* One {"question", "answer"} example, as sequence_from_json makes it. */
int sequence_qa(sequence *s, const char *question, const char *answer, const data_options *o, mpu_err *e);
/* The prompt tokens a question becomes (the chat template, or
 * "Question: Q\nAnswer: "), for generating its answer. */
int question_ids(const data_options *o, const char *question, int32_t **ids, size_t *n, mpu_err *e);
void dataset_free(dataset *d);
/* Calls fn on each non-blank line of path ("-": stdin), without its line
 * end; an error from fn is prefixed with "path:line". */
int lines_each(const char *path, int (*fn)(void *ctx, char *line, size_t len, mpu_err *e), void *ctx, mpu_err *e);

/* A batch of sequences, right-padded to the longest: ids[B*T] and the
 * targets each position predicts (-1: unscored or padding). */
typedef struct {
  int32_t *ids, *targets;
  size_t B, T, scored;
  size_t cap;             /* positions ids can hold */
} batch;

/* Fills b from the sequences idx[0..n); pad is the padding token id. */
int batch_make(batch *b, const dataset *d, const size_t *idx, size_t n, int32_t pad, mpu_err *e);
/* The same from any rows (e.g. forget, retain and answer rows together). */
int batch_rows(batch *b, const sequence *const *rows, size_t n, int32_t pad, mpu_err *e);
void batch_free(batch *b);

#endif
