/*
 * mpu-score -- the negative log-likelihood a model gives each example.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine.h"

static void help(void) {
  printf("Usage: mpu score --data FILE [OPTION]... [MODEL]\n"
         "Score each example of FILE (JSON Lines) with MODEL (an .mpuc stream, or\n"
         "standard input): one JSON object per example on standard output, in order,\n"
         "with \"nll\" (the sum over its scored tokens, in nats), \"tokens\" (how many\n"
         "were scored) and \"mean_nll\".\n\n"
         "Examples are {\"text\"}, {\"prompt\",\"completion\"}, {\"question\",\"answer\"} (the\n"
         "loss on the completion or answer and the end-of-sequence token only), or\n"
         "{\"input_ids\":[...],\"prompt_len\":N} (the loss on positions >= N).\n\n"
         "Options:\n"
         "      --data FILE      the examples (required; - for standard input)\n"
         "      --batch N        examples per forward pass (default 8)\n"
         "      --truncate       cut examples longer than the model's context\n"
         "      --no-chat        format questions as \"Question: ...\\nAnswer: \" even when\n"
         "                       the tokenizer has a chat template\n"
         "      --system TEXT    system prompt for the chat template\n"
         "      --copy K         score copy K of a multi-copy stream\n"
         "      --threads N      threads (default: all cores)\n" ENGINE_DEVICE_HELP CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the model failed verification, 2 usage, data or I/O error.\n");
}

int main(int argc, char **argv) {
  cli_init("mpu-score", argc, argv);
  enum { OPT_DATA = OPT_PROGRAM, OPT_BATCH, OPT_TRUNC, OPT_NOCHAT, OPT_SYSTEM, OPT_COPY, OPT_THREADS };
  static const struct option longopts[] = {
    CLI_COMMON_OPTIONS, {"data", required_argument, 0, OPT_DATA}, {"batch", required_argument, 0, OPT_BATCH},
    {"truncate", no_argument, 0, OPT_TRUNC}, {"no-chat", no_argument, 0, OPT_NOCHAT},
    {"system", required_argument, 0, OPT_SYSTEM}, {"copy", required_argument, 0, OPT_COPY},
    {"threads", required_argument, 0, OPT_THREADS}, CLI_DEVICE_OPTION, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  const char *data = NULL, *system = NULL;
  long long per_batch = 8, copy = 0, threads = 0;
  int truncate = 0, chat = 1, opt, device = MODEL_CPU;
  while ((opt = getopt_long(argc, argv, "hVq", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_DATA: data = optarg; break;
    case OPT_BATCH:
      if (cli_parse_int(optarg, 1, 1 << 20, &per_batch)) return cli_usage_error("--batch: '%s' is not a count", optarg);
      break;
    case OPT_TRUNC: truncate = 1; break;
    case OPT_NOCHAT: chat = 0; break;
    case OPT_SYSTEM: system = optarg; break;
    case OPT_COPY:
      if (cli_parse_int(optarg, 1, 1024, &copy)) return cli_usage_error("--copy: '%s' is not a copy number", optarg);
      break;
    case OPT_THREADS:
      if (cli_parse_int(optarg, 1, 1024, &threads)) return cli_usage_error("--threads: '%s' is not a count", optarg);
      break;
    case OPT_DEVICE:
      if ((device = engine_parse_device(optarg)) < -1)
        return cli_usage_error("--device: '%s' is not cpu, cuda or auto", optarg);
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
  engine g;
  dataset d = {0};
  if (engine_check_device(device, &e)) return cli_report(&e);
  int rc = engine_open(&g, model_path, (int)copy - 1, (int)threads, &e);
  if (!rc) rc = engine_set_device(&g, device, -1, &e);
  if (!rc) {
    g.data.truncate = truncate;
    g.data.use_chat = chat;
    g.data.system = system;
    rc = dataset_load(&d, data, &g.data, &e);
  }
  size_t B = (size_t)per_batch < d.n ? (size_t)per_batch : d.n;
  if (!rc) rc = model_plan(&g.m, B, d.max_len, &e);
  batch b = {0};
  size_t *idx = malloc((B + 1) * sizeof *idx);
  cli_progress pg;
  cli_progress_start(&pg, c.progress, "scoring", 0);
  for (size_t first = 0; !rc && first < d.n; first += B) {
    size_t n = first + B <= d.n ? B : d.n - first;
    for (size_t i = 0; i < n; i++) idx[i] = first + i;
    if ((rc = batch_make(&b, &d, idx, n, g.pad, &e))) break;
    model_forward(&g.m, b.ids, b.targets, b.B, b.T);
    for (size_t i = 0; i < n; i++) {
      double nll = 0;
      size_t tokens = 0;
      for (size_t t = 0; t < b.T; t++)
        if (b.targets[i * b.T + t] >= 0) {
          nll += g.m.nll[i * b.T + t];
          tokens++;
        }
      printf("{\"nll\":%.9g,\"tokens\":%zu,\"mean_nll\":%.9g}\n", nll, tokens, tokens ? nll / tokens : 0.0);
    }
    cli_progress_update(&pg, first + n);
  }
  cli_progress_end(&pg);
  if (!rc && (fflush(stdout) || ferror(stdout))) rc = mpu_fail(&e, MPU_EUSAGE, "writing the scores failed");
  free(idx);
  batch_free(&b);
  dataset_free(&d);
  engine_close(&g);
  return rc ? cli_report(&e) : 0;
}
