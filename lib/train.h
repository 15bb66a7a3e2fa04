/*
 * train.h -- the training loop every trainer shares: epochs, micro-batches,
 * gradient accumulation, clipping, the learning-rate schedule, logging and
 * divergence checks.  What is minimised is an objective: plain next-token NLL
 * for `mpu train`, an unlearning loss for `mpu unlearn`.
 *
 * As transformers does it: an epoch is ceil(n / batch) micro-batches; an
 * optimizer step every grad_accum micro-batches and at the end of an epoch;
 * the loss of a step is normalised over the whole step (e.g. mean NLL over
 * every scored token of its micro-batches), and logged before its update.
 */
#ifndef MPU_TRAIN_H
#define MPU_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "data.h"
#include "model.h"
#include "optim.h"

typedef struct {
  optim_config opt;
  int epochs;
  size_t batch;           /* examples per micro-batch */
  int grad_accum;         /* micro-batches per optimizer step */
  uint64_t seed;
  int shuffle;
  FILE *log;              /* JSON Lines, one object per step (may be NULL) */
  int progress;           /* -1 auto, 0 off, 1 on */
} train_options;

/* What an objective reports for one optimizer step. */
typedef struct {
  double loss;            /* the objective's value, before the update */
  double parts[4];        /* named parts (e.g. forget and retain losses) */
  size_t tokens;          /* tokens processed */
} step_report;

typedef struct objective objective;
struct objective {
  size_t n;                                  /* examples in an epoch */
  uint32_t epoch;                            /* set by train_run before each step */
  size_t batch;                              /* set by train_run: examples per micro-batch */
  const char *part_names[4];                 /* names of the parts it reports, NULL-terminated */
  /* Before a step: sees every example index of the step (e.g. to count the
   * tokens it normalises over). */
  int (*begin_step)(objective *o, const size_t *idx, size_t n, mpu_err *e);
  /* One micro-batch: forward, backward into the model's gradients, and its
   * contribution to the step's report. */
  int (*micro)(objective *o, model *m, const size_t *idx, size_t n, step_report *r, mpu_err *e);
  void *ctx;
};

typedef struct {
  long steps;
  double first_loss, last_loss;
  double seconds;
  uint64_t tokens;
} train_result;

/* Runs o->epochs epochs of the objective.  label names the run in progress
 * lines and log records (e.g. "copy 2"); may be NULL. */
int train_run(model *m, objective *obj, const train_options *o, const char *label, train_result *res, mpu_err *e);

/* Plain next-token NLL over a dataset, mean over the step's scored tokens. */
typedef struct {
  objective base;
  const dataset *d;
  batch b;
  size_t step_tokens;
  int32_t pad;
  float *w;
  size_t wcap;
} nll_objective;
void nll_objective_init(nll_objective *o, const dataset *d, int32_t pad);
void nll_objective_free(nll_objective *o);

/* A permutation of 0..n-1 drawn from (seed, epoch): the same on every machine. */
void shuffle_indices(size_t *idx, size_t n, uint64_t seed, uint32_t epoch);

#endif
