/*
 * mpu-train -- fine-tunes a model on JSON Lines data (next-token NLL on the
 * scored tokens), as transformers' Trainer does, and writes the result.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine.h"
#include "jsonx.h"
#include "prov.h"
#include "train.h"

#include <xxhash.h>

static void help(void) {
  printf("Usage: mpu train --data FILE -o OUT [OPTION]... [MODEL]\n"
         "Fine-tune MODEL (an .mpuc stream, or standard input) on the examples of FILE\n"
         "(JSON Lines, as for 'mpu score'), minimising the mean NLL over the scored\n"
         "tokens of each optimizer step, and write the trained model to OUT.\n\n"
         "Training options (defaults are transformers' TrainingArguments'):\n"
         "      --optimizer O    adamw (default) or sgd\n"
         "      --lr X           peak learning rate (default 5e-5)\n"
         "      --epochs N       passes over the data (default 3)\n"
         "      --batch N        examples per micro-batch (default 8)\n"
         "      --grad-accum N   micro-batches per optimizer step (default 1)\n"
         "      --weight-decay X decoupled weight decay, not on biases or norms (default 0)\n"
         "      --max-grad-norm X  clip the global gradient norm (default 1; 0 = off)\n"
         "      --warmup-steps N linear warm-up (default 0)\n"
         "      --schedule S     linear (default: warm-up, then decay to 0) or constant\n"
         "      --beta1 X --beta2 X --eps X   AdamW's (default 0.9, 0.999, 1e-8)\n"
         "      --seed N         shuffling seed (default 42)\n"
         "      --shuffle / --no-shuffle  shuffle the examples every epoch (default on)\n"
         "      --log FILE       JSON Lines: step, epoch, loss (before the update), lr,\n"
         "                       grad_norm, tokens, tokens_per_s\n"
         "Data and model options:\n"
         "      --truncate       cut examples longer than the model's context\n"
         "      --no-chat        never use the tokenizer's chat template for questions\n"
         "      --system TEXT    system prompt for the chat template\n"
         "      --dtype T        keep (default: each tensor's own), f32, bf16 or f16\n"
         "      --threads N      threads (default: all cores)\n" CLI_OUTPUT_HELP CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the model failed verification, 2 usage, data or I/O\n"
         "error, or training diverged (nothing is written then).\n");
}

static int parse_double(const char *s, double lo, double hi, double *v) {
  char *end;
  errno = 0;
  double x = strtod(s, &end);
  if (end == s || *end || errno || !(x >= lo && x <= hi)) return -1;
  *v = x;
  return 0;
}

/* Digest of the training data file, for the output's provenance. */
static json_t *file_record(const char *path) {
  FILE *f = !strcmp(path, "-") ? NULL : fopen(path, "rb");
  json_t *r = json_pack("{s:s}", "file", strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
  if (!f) return r;
  XXH3_state_t *h = XXH3_createState();
  XXH3_128bits_reset(h);
  char buf[1 << 16];
  size_t n, total = 0;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    XXH3_128bits_update(h, buf, n);
    total += n;
  }
  fclose(f);
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h));
  XXH3_freeState(h);
  char hex[33];
  mpuc_hex128(c.digest, hex);
  json_object_set_new(r, "bytes", json_integer((json_int_t)total));
  json_object_set_new(r, "digest", json_pack("{s:s}", "xxh3_128", hex));
  return r;
}

int main(int argc, char **argv) {
  cli_init("mpu-train", argc, argv);
  enum {
    OPT_DATA = OPT_PROGRAM, OPT_OPTIM, OPT_LR, OPT_EPOCHS, OPT_BATCH, OPT_ACCUM, OPT_WD, OPT_CLIP, OPT_WARMUP,
    OPT_SCHED, OPT_B1, OPT_B2, OPT_EPS, OPT_SEED, OPT_SHUFFLE, OPT_NOSHUFFLE, OPT_LOG, OPT_TRUNC, OPT_NOCHAT,
    OPT_SYSTEM, OPT_DTYPE, OPT_THREADS
  };
  static const struct option longopts[] = {
    CLI_COMMON_OPTIONS, CLI_OUTPUT_OPTIONS, {"data", required_argument, 0, OPT_DATA},
    {"optimizer", required_argument, 0, OPT_OPTIM}, {"lr", required_argument, 0, OPT_LR},
    {"epochs", required_argument, 0, OPT_EPOCHS}, {"batch", required_argument, 0, OPT_BATCH},
    {"grad-accum", required_argument, 0, OPT_ACCUM}, {"weight-decay", required_argument, 0, OPT_WD},
    {"max-grad-norm", required_argument, 0, OPT_CLIP}, {"warmup-steps", required_argument, 0, OPT_WARMUP},
    {"schedule", required_argument, 0, OPT_SCHED}, {"beta1", required_argument, 0, OPT_B1},
    {"beta2", required_argument, 0, OPT_B2}, {"eps", required_argument, 0, OPT_EPS},
    {"seed", required_argument, 0, OPT_SEED}, {"shuffle", no_argument, 0, OPT_SHUFFLE},
    {"no-shuffle", no_argument, 0, OPT_NOSHUFFLE}, {"log", required_argument, 0, OPT_LOG},
    {"truncate", no_argument, 0, OPT_TRUNC}, {"no-chat", no_argument, 0, OPT_NOCHAT},
    {"system", required_argument, 0, OPT_SYSTEM}, {"dtype", required_argument, 0, OPT_DTYPE},
    {"threads", required_argument, 0, OPT_THREADS}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  train_options t = {.opt = {OPT_ADAMW, 5e-5, 0.9, 0.999, 1e-8, 0.0, 1.0, SCHED_LINEAR, 0},
                     .epochs = 3, .batch = 8, .grad_accum = 1, .seed = 42, .shuffle = 1};
  const char *data = NULL, *log_path = NULL, *system = NULL;
  long long v, threads = 0;
  int truncate = 0, chat = 1, dtype = 0, opt;
  while ((opt = getopt_long(argc, argv, "hVqo:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_DATA: data = optarg; break;
    case OPT_OPTIM:
      if (!strcmp(optarg, "adamw")) t.opt.kind = OPT_ADAMW;
      else if (!strcmp(optarg, "sgd")) t.opt.kind = OPT_SGD;
      else return cli_usage_error("--optimizer: '%s' is not adamw or sgd", optarg);
      break;
    case OPT_LR: if (parse_double(optarg, 0, 1e3, &t.opt.lr)) return cli_usage_error("--lr: bad value '%s'", optarg); break;
    case OPT_WD: if (parse_double(optarg, 0, 1e3, &t.opt.weight_decay)) return cli_usage_error("--weight-decay: bad value '%s'", optarg); break;
    case OPT_CLIP: if (parse_double(optarg, 0, 1e9, &t.opt.max_grad_norm)) return cli_usage_error("--max-grad-norm: bad value '%s'", optarg); break;
    case OPT_B1: if (parse_double(optarg, 0, 0.999999, &t.opt.beta1)) return cli_usage_error("--beta1: bad value '%s'", optarg); break;
    case OPT_B2: if (parse_double(optarg, 0, 0.99999999, &t.opt.beta2)) return cli_usage_error("--beta2: bad value '%s'", optarg); break;
    case OPT_EPS: if (parse_double(optarg, 0, 1, &t.opt.eps)) return cli_usage_error("--eps: bad value '%s'", optarg); break;
    case OPT_EPOCHS: if (cli_parse_int(optarg, 1, 1000000, &v)) return cli_usage_error("--epochs: bad value '%s'", optarg); t.epochs = (int)v; break;
    case OPT_BATCH: if (cli_parse_int(optarg, 1, 1 << 24, &v)) return cli_usage_error("--batch: bad value '%s'", optarg); t.batch = (size_t)v; break;
    case OPT_ACCUM: if (cli_parse_int(optarg, 1, 1 << 24, &v)) return cli_usage_error("--grad-accum: bad value '%s'", optarg); t.grad_accum = (int)v; break;
    case OPT_WARMUP: if (cli_parse_int(optarg, 0, 1ll << 40, &v)) return cli_usage_error("--warmup-steps: bad value '%s'", optarg); t.opt.warmup_steps = (long)v; break;
    case OPT_SEED: if (cli_parse_int(optarg, 0, INT64_MAX, &v)) return cli_usage_error("--seed: bad value '%s'", optarg); t.seed = (uint64_t)v; break;
    case OPT_SCHED:
      if (!strcmp(optarg, "linear")) t.opt.schedule = SCHED_LINEAR;
      else if (!strcmp(optarg, "constant")) t.opt.schedule = SCHED_CONSTANT;
      else return cli_usage_error("--schedule: '%s' is not linear or constant", optarg);
      break;
    case OPT_SHUFFLE: t.shuffle = 1; break;
    case OPT_NOSHUFFLE: t.shuffle = 0; break;
    case OPT_LOG: log_path = optarg; break;
    case OPT_TRUNC: truncate = 1; break;
    case OPT_NOCHAT: chat = 0; break;
    case OPT_SYSTEM: system = optarg; break;
    case OPT_DTYPE:
      dtype = !strcmp(optarg, "keep") ? 0 : !strcmp(optarg, "f32") ? MPUC_DT_F32 : !strcmp(optarg, "bf16") ? MPUC_DT_BF16
            : !strcmp(optarg, "f16") ? MPUC_DT_F16 : -1;
      if (dtype < 0) return cli_usage_error("--dtype: '%s' is not keep, f32, bf16 or f16", optarg);
      break;
    case OPT_THREADS: if (cli_parse_int(optarg, 1, 1024, &threads)) return cli_usage_error("--threads: bad value '%s'", optarg); break;
    default: return cli_usage_error("bad option");
    }
  }
  if (!data) return cli_usage_error("--data FILE is required");
  if (optind < argc - 1) return cli_usage_error("one MODEL at a time");
  const char *model_path = optind < argc ? argv[optind] : NULL;
  if (!strcmp(data, "-") && (!model_path || !strcmp(model_path, "-")))
    return cli_usage_error("the data and the model cannot both come from standard input");
  mpu_err e = {0};
  if (log_path && !(t.log = fopen(log_path, "w"))) {
    mpu_fail(&e, MPU_EUSAGE, "%s: %s", log_path, strerror(errno));
    return cli_report(&e);
  }
  t.progress = c.progress;
  engine g;
  dataset d = {0};
  int rc = engine_open(&g, model_path, -1, (int)threads, &e);
  if (!rc) {
    g.data.truncate = truncate;
    g.data.use_chat = chat;
    g.data.system = system;
    rc = dataset_load(&d, data, &g.data, &e);
  }
  if (!rc) rc = model_plan(&g.m, t.batch < d.n ? t.batch : d.n, d.max_len, &e);
  nll_objective obj;
  nll_objective_init(&obj, &d, g.pad);
  train_result res;
  if (!rc) rc = train_run(&g.m, &obj.base, &t, NULL, &res, &e);
  nll_objective_free(&obj);
  if (!rc) {
    json_t *params = json_pack("{s:s, s:f, s:i, s:I, s:i, s:f, s:f, s:I, s:s, s:f, s:f, s:f, s:I, s:b, s:o}",
                               "optimizer", t.opt.kind == OPT_SGD ? "sgd" : "adamw", "lr", t.opt.lr, "epochs", t.epochs,
                               "batch", (json_int_t)t.batch, "grad_accum", t.grad_accum, "weight_decay",
                               t.opt.weight_decay, "max_grad_norm", t.opt.max_grad_norm, "warmup_steps",
                               (json_int_t)t.opt.warmup_steps, "schedule", t.opt.schedule == SCHED_LINEAR ? "linear" : "constant",
                               "beta1", t.opt.beta1, "beta2", t.opt.beta2, "eps", t.opt.eps, "seed", (json_int_t)t.seed,
                               "shuffle", t.shuffle, "data", file_record(data));
    json_t *h = prov_header("train", params);
    json_array_append_new(json_object_get(h, "parents"), prov_parent(&g.in));
    ms_reader *ins[1] = {&g.in};
    json_t *extra = prov_parents_verified(ins, 1);
    json_object_set_new(extra, "training", json_pack("{s:I, s:f, s:f, s:I}", "steps", (json_int_t)res.steps,
                                                     "first_loss", res.first_loss, "last_loss", res.last_loss,
                                                     "tokens", (json_int_t)res.tokens));
    char *ej = json_canonical(extra);
    json_decref(extra);
    model *one[1] = {&g.m};
    rc = model_save(one, 1, c.output, &c.enc, dtype, h, ej, &e);
    free(ej);
    if (!rc && !c.quiet)
      cli_msg("%ld steps, loss %.4f -> %.4f, %.0f tokens/s", res.steps, res.first_loss, res.last_loss,
              res.tokens / (res.seconds + 1e-9));
  }
  if (t.log) fclose(t.log);
  dataset_free(&d);
  engine_close(&g);
  return rc ? cli_report(&e) : 0;
}
