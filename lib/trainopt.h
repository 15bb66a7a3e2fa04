/*
 * trainopt.h -- the command-line options every trainer shares (mpu train,
 * mpu unlearn): optimizer, schedule, batching, seed, log, data handling,
 * output dtype and threads.  Each program sets its own defaults; --help
 * prints them.
 */
#ifndef MPU_TRAINOPT_H
#define MPU_TRAINOPT_H

#include <getopt.h>

#include <jansson.h>

#include "cli.h"
#include "train.h"

enum {
  OPT_T_OPTIM = OPT_PROGRAM, OPT_T_LR, OPT_T_EPOCHS, OPT_T_BATCH, OPT_T_ACCUM, OPT_T_WD, OPT_T_CLIP, OPT_T_WARMUP,
  OPT_T_WARMUP_EPOCHS, OPT_T_SCHED, OPT_T_B1, OPT_T_B2, OPT_T_EPS, OPT_T_SEED, OPT_T_SHUFFLE, OPT_T_NOSHUFFLE,
  OPT_T_LOG, OPT_T_TRUNC, OPT_T_NOCHAT, OPT_T_SYSTEM, OPT_T_DTYPE, OPT_T_THREADS,
  OPT_TRAIN_END /* first value free for a trainer's own options */
};

#define TRAIN_CLI_OPTIONS                                                                                        \
  {"optimizer", required_argument, 0, OPT_T_OPTIM}, {"lr", required_argument, 0, OPT_T_LR},                       \
  {"epochs", required_argument, 0, OPT_T_EPOCHS}, {"batch", required_argument, 0, OPT_T_BATCH},                   \
  {"grad-accum", required_argument, 0, OPT_T_ACCUM}, {"weight-decay", required_argument, 0, OPT_T_WD},            \
  {"max-grad-norm", required_argument, 0, OPT_T_CLIP}, {"warmup-steps", required_argument, 0, OPT_T_WARMUP},     \
  {"warmup-epochs", required_argument, 0, OPT_T_WARMUP_EPOCHS}, {"schedule", required_argument, 0, OPT_T_SCHED}, \
  {"adam-beta1", required_argument, 0, OPT_T_B1}, {"adam-beta2", required_argument, 0, OPT_T_B2},                 \
  {"adam-eps", required_argument, 0, OPT_T_EPS}, {"seed", required_argument, 0, OPT_T_SEED},                           \
  {"shuffle", no_argument, 0, OPT_T_SHUFFLE}, {"no-shuffle", no_argument, 0, OPT_T_NOSHUFFLE},                    \
  {"log", required_argument, 0, OPT_T_LOG}, {"truncate", no_argument, 0, OPT_T_TRUNC},                            \
  {"no-chat", no_argument, 0, OPT_T_NOCHAT}, {"system", required_argument, 0, OPT_T_SYSTEM},                      \
  {"dtype", required_argument, 0, OPT_T_DTYPE}, {"threads", required_argument, 0, OPT_T_THREADS},            \
  {"device", required_argument, 0, OPT_DEVICE}

typedef struct {
  train_options t;
  double warmup_epochs;   /* < 0: use t.opt.warmup_steps as given */
  const char *log_path;
  int truncate, chat;
  const char *system;
  int dtype;              /* 0: keep each tensor's dtype */
  long long threads;      /* 0: all cores */
  int device;             /* MODEL_CPU (0, the default), MODEL_CUDA or MODEL_AUTO */
} train_cli;

/* Handles one of TRAIN_CLI_OPTIONS: 1 handled, 0 not one of them, -1 after a
 * usage error was printed. */
int train_cli_option(train_cli *tc, int opt, const char *arg);
/* Prints the options' help, each with its default from tc. */
void train_cli_help(const train_cli *tc);
/* Resolves the warm-up (floor(warmup_epochs * floor(n / (batch *
 * grad_accum))) steps, OpenUnlearning's rule) and opens the log. */
int train_cli_ready(train_cli *tc, size_t n, mpu_err *e);
/* The training parameters, for the output's provenance. */
json_t *train_cli_params(const train_cli *tc);
void train_cli_close(train_cli *tc);

/* A number in [lo, hi]; -1 if s is not one. */
int parse_double(const char *s, double lo, double hi, double *v);

#endif
