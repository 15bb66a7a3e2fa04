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
#include "trainopt.h"

#include <xxhash.h>

static void help(const train_cli *defaults) {
  printf("Usage: mpu train --data FILE [-o OUT] [OPTION]... [MODEL]\n"
         "Fine-tune MODEL (an .mpuc stream, or standard input) on the examples of FILE\n"
         "(JSON Lines, as for 'mpu score'), minimising the mean NLL over the scored\n"
         "tokens of each optimizer step, and write the trained model to OUT (default:\n"
         "standard output).  Defaults are transformers' TrainingArguments'.\n\n"
         "      --data FILE      the training examples\n"
         "      --copy K         train copy K (1-based) of a multi-copy stream\n");
  train_cli_help(defaults);
  printf(CLI_OUTPUT_HELP CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the model failed verification, 2 usage, data or I/O\n"
         "error, or training diverged (nothing is written then).\n");
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
  enum { OPT_DATA = OPT_TRAIN_END, OPT_COPY };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS, CLI_OUTPUT_OPTIONS, TRAIN_CLI_OPTIONS,
                                           {"data", required_argument, 0, OPT_DATA},
                                           {"copy", required_argument, 0, OPT_COPY}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  train_cli tc = {.t = {.opt = {OPT_ADAMW, 5e-5, 0.9, 0.999, 1e-8, 0.0, 1.0, SCHED_LINEAR, 0},
                        .epochs = 3, .batch = 8, .grad_accum = 1, .seed = 42, .shuffle = 1},
                  .warmup_epochs = -1, .chat = 1};
  const char *data = NULL;
  long long copy = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "hVqo:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (!r) r = train_cli_option(&tc, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(&tc); return 0;
    case 'V': cli_version(); return 0;
    case OPT_DATA: data = optarg; break;
    case OPT_COPY:
      if (cli_parse_int(optarg, 1, 1 << 30, &copy)) return cli_usage_error("--copy: bad value '%s'", optarg);
      break;
    default: return cli_usage_error("bad option");
    }
  }
  if (!data) return cli_usage_error("--data FILE is required");
  if (optind < argc - 1) return cli_usage_error("one MODEL at a time");
  const char *model_path = optind < argc ? argv[optind] : NULL;
  if (!strcmp(data, "-") && (!model_path || !strcmp(model_path, "-")))
    return cli_usage_error("the data and the model cannot both come from standard input");
  mpu_err e = {0};
  if (cli_output_check(c.output, c.enc.force, &e)) return cli_report(&e);
  train_options *t = &tc.t;
  t->progress = c.progress;
  engine g;
  dataset d = {0};
  if (engine_check_device(tc.device, &e)) return cli_report(&e);
  int rc = engine_open(&g, model_path, (int)copy - 1, (int)tc.threads, &e);
  if (!rc) rc = engine_set_device(&g, tc.device, -1, &e);
  if (!rc) {
    g.data.truncate = tc.truncate;
    g.data.use_chat = tc.chat;
    g.data.system = tc.system;
    rc = dataset_load(&d, data, &g.data, &e);
  }
  if (!rc) rc = train_cli_ready(&tc, d.n, &e);
  if (!rc) rc = model_plan(&g.m, t->batch < d.n ? t->batch : d.n, d.max_len, &e);
  nll_objective obj;
  nll_objective_init(&obj, &d, g.pad);
  train_result res;
  if (!rc) rc = train_run(&g.m, &obj.base, t, NULL, &res, &e);
  nll_objective_free(&obj);
  if (!rc) {
    json_t *params = train_cli_params(&tc);
    json_object_set_new(params, "data", file_record(data));
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
    rc = model_save(one, 1, c.output, &c.enc, tc.dtype, h, ej, &e);
    free(ej);
    if (!rc && !c.quiet)
      cli_msg("%ld steps, loss %.4f -> %.4f, %.0f tokens/s", res.steps, res.first_loss, res.last_loss,
              res.tokens / (res.seconds + 1e-9));
  }
  train_cli_close(&tc);
  dataset_free(&d);
  engine_close(&g);
  return rc ? cli_report(&e) : 0;
}
