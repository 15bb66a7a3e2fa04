/*
 * trainopt.c -- the trainers' shared options (see trainopt.h).
 */
#include "trainopt.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "mpuc.h"

int parse_double(const char *s, double lo, double hi, double *v) {
  char *end;
  errno = 0;
  double x = strtod(s, &end);
  if (end == s || *end || errno || !(x >= lo && x <= hi)) return -1;
  *v = x;
  return 0;
}

#define DBL(field, lo, hi, name)                                                  \
  do {                                                                            \
    if (parse_double(arg, lo, hi, &(field))) {                                    \
      cli_usage_error("--%s: '%s' is not a number in [%g, %g]", name, arg, (double)(lo), (double)(hi)); \
      return -1;                                                                  \
    }                                                                             \
  } while (0)
#define INT(lo, hi, name)                                                         \
  do {                                                                            \
    if (cli_parse_int(arg, lo, hi, &v)) {                                         \
      cli_usage_error("--%s: '%s' is not a whole number in [%lld, %lld]", name, arg, (long long)(lo), (long long)(hi)); \
      return -1;                                                                  \
    }                                                                             \
  } while (0)

int train_cli_option(train_cli *tc, int opt, const char *arg) {
  train_options *t = &tc->t;
  long long v;
  switch (opt) {
  case OPT_T_OPTIM:
    if (!strcmp(arg, "adamw")) t->opt.kind = OPT_ADAMW;
    else if (!strcmp(arg, "sgd")) t->opt.kind = OPT_SGD;
    else return cli_usage_error("--optimizer: '%s' is not adamw or sgd", arg), -1;
    return 1;
  case OPT_T_LR: DBL(t->opt.lr, 0, 1e3, "lr"); return 1;
  case OPT_T_WD: DBL(t->opt.weight_decay, 0, 1e3, "weight-decay"); return 1;
  case OPT_T_CLIP: DBL(t->opt.max_grad_norm, 0, 1e9, "max-grad-norm"); return 1;
  case OPT_T_B1: DBL(t->opt.beta1, 0, 0.999999, "adam-beta1"); return 1;
  case OPT_T_B2: DBL(t->opt.beta2, 0, 0.99999999, "adam-beta2"); return 1;
  case OPT_T_EPS: DBL(t->opt.eps, 0, 1, "adam-eps"); return 1;
  case OPT_T_EPOCHS: INT(1, 1000000, "epochs"); t->epochs = (int)v; return 1;
  case OPT_T_BATCH: INT(1, 1 << 24, "batch"); t->batch = (size_t)v; return 1;
  case OPT_T_ACCUM: INT(1, 1 << 24, "grad-accum"); t->grad_accum = (int)v; return 1;
  case OPT_T_WARMUP:
    INT(0, 1ll << 40, "warmup-steps");
    t->opt.warmup_steps = (long)v;
    tc->warmup_epochs = -1;
    return 1;
  case OPT_T_WARMUP_EPOCHS: DBL(tc->warmup_epochs, 0, 1e6, "warmup-epochs"); return 1;
  case OPT_T_SEED: INT(0, INT64_MAX, "seed"); t->seed = (uint64_t)v; return 1;
  case OPT_T_SCHED:
    if (!strcmp(arg, "linear")) t->opt.schedule = SCHED_LINEAR;
    else if (!strcmp(arg, "constant")) t->opt.schedule = SCHED_CONSTANT;
    else return cli_usage_error("--schedule: '%s' is not linear or constant", arg), -1;
    return 1;
  case OPT_T_SHUFFLE: t->shuffle = 1; return 1;
  case OPT_T_NOSHUFFLE: t->shuffle = 0; return 1;
  case OPT_T_LOG: tc->log_path = arg; return 1;
  case OPT_T_TRUNC: tc->truncate = 1; return 1;
  case OPT_T_NOCHAT: tc->chat = 0; return 1;
  case OPT_T_SYSTEM: tc->system = arg; return 1;
  case OPT_T_DTYPE:
    tc->dtype = !strcmp(arg, "keep") ? 0 : !strcmp(arg, "f32") ? MPUC_DT_F32 : !strcmp(arg, "bf16") ? MPUC_DT_BF16
              : !strcmp(arg, "f16") ? MPUC_DT_F16 : -1;
    if (tc->dtype < 0) return cli_usage_error("--dtype: '%s' is not keep, f32, bf16 or f16", arg), -1;
    return 1;
  case OPT_T_THREADS: INT(1, 1024, "threads"); tc->threads = v; return 1;
  case OPT_DEVICE:
    if ((tc->device = engine_parse_device(arg)) < -1)
      return cli_usage_error("--device: '%s' is not cpu, cuda or auto", arg), -1;
    return 1;
  default: return 0;
  }
}

void train_cli_help(const train_cli *tc) {
  const train_options *t = &tc->t;
  char warm[64];
  if (tc->warmup_epochs >= 0) snprintf(warm, sizeof warm, "%g epoch%s of steps", tc->warmup_epochs, tc->warmup_epochs == 1 ? "" : "s");
  else snprintf(warm, sizeof warm, "%ld", t->opt.warmup_steps);
  printf("Training options:\n"
         "      --optimizer O    adamw or sgd (default %s)\n"
         "      --lr X           peak learning rate (default %g)\n"
         "      --epochs N       passes over the data (default %d)\n"
         "      --batch N        examples per micro-batch (default %zu)\n"
         "      --grad-accum N   micro-batches per optimizer step (default %d)\n"
         "      --weight-decay X decoupled weight decay, not on biases or norms (default %g)\n"
         "      --max-grad-norm X  clip the global gradient norm (default %g; 0 = off)\n"
         "      --warmup-steps N linear warm-up in optimizer steps (default %s)\n"
         "      --warmup-epochs X  warm-up of X epochs: X * floor(n / (batch * grad-accum))\n"
         "                       steps, rounded down (OpenUnlearning's rule)\n"
         "      --schedule S     linear (warm-up, then decay to 0) or constant (default %s)\n"
         "      --adam-beta1 X --adam-beta2 X --adam-eps X  AdamW's (default %g, %g, %g)\n"
         "      --seed N         shuffling seed (default %llu)\n"
         "      --shuffle / --no-shuffle  shuffle the examples every epoch (default %s)\n"
         "      --log FILE       JSON Lines, one object per optimizer step\n"
         "Data and model options:\n"
         "      --truncate       cut examples longer than the model's context\n"
         "      --no-chat        never use the tokenizer's chat template for questions\n"
         "      --system TEXT    system prompt for the chat template\n"
         "      --dtype T        keep (default: each tensor's own), f32, bf16 or f16\n"
         "      --threads N      threads (default: all cores)\n" ENGINE_DEVICE_HELP,
         t->opt.kind == OPT_SGD ? "sgd" : "adamw", t->opt.lr, t->epochs, t->batch, t->grad_accum,
         t->opt.weight_decay, t->opt.max_grad_norm, warm, t->opt.schedule == SCHED_LINEAR ? "linear" : "constant",
         t->opt.beta1, t->opt.beta2, t->opt.eps, (unsigned long long)t->seed, t->shuffle ? "on" : "off");
}

int train_cli_ready(train_cli *tc, size_t n, mpu_err *e) {
  train_options *t = &tc->t;
  if (tc->warmup_epochs >= 0) {
    double per_epoch = floor((double)n / (double)(t->batch * (size_t)t->grad_accum));
    t->opt.warmup_steps = (long)floor(tc->warmup_epochs * per_epoch);
  }
  if (tc->log_path && !t->log && !(t->log = fopen(tc->log_path, "w")))
    return mpu_fail(e, MPU_EUSAGE, "%s: %s", tc->log_path, strerror(errno));
  return 0;
}

json_t *train_cli_params(const train_cli *tc) {
  const train_options *t = &tc->t;
  return json_pack("{s:s, s:f, s:i, s:I, s:i, s:f, s:f, s:I, s:s, s:f, s:f, s:f, s:I, s:b}", "optimizer",
                   t->opt.kind == OPT_SGD ? "sgd" : "adamw", "lr", t->opt.lr, "epochs", t->epochs, "batch",
                   (json_int_t)t->batch, "grad_accum", t->grad_accum, "weight_decay", t->opt.weight_decay,
                   "max_grad_norm", t->opt.max_grad_norm, "warmup_steps", (json_int_t)t->opt.warmup_steps, "schedule",
                   t->opt.schedule == SCHED_LINEAR ? "linear" : "constant", "adam_beta1", t->opt.beta1, "adam_beta2",
                   t->opt.beta2, "adam_eps", t->opt.eps, "seed", (json_int_t)t->seed, "shuffle", t->shuffle);
}

void train_cli_close(train_cli *tc) {
  if (tc->t.log) fclose(tc->t.log);
  tc->t.log = NULL;
}
