/*
 * mpu-unlearn -- the client's stage: runs an unlearning algorithm on every
 * copy of a model (each on its own, with a fresh optimizer), or hands each
 * copy to an outside command, and writes the unlearned copies.
 */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine.h"
#include "exec.h"
#include "jsonx.h"
#include "prov.h"
#include "trainopt.h"
#include "unlearn.h"

static void help(const train_cli *defaults) {
  printf("Usage: mpu unlearn --algo ALGO --forget FILE [--retain FILE] [OPTION]... [IN] [-o OUT]\n"
         "       mpu unlearn --exec CMD --forget FILE [--retain FILE] [OPTION]... [IN] [-o OUT]\n"
         "Make every copy of the model in IN (an .mpuc stream, or standard input) forget\n"
         "the examples of FILE, and write the copies to OUT (default: standard output)\n"
         "in the same layout.  Each copy is unlearned on its own, with a fresh optimizer;\n"
         "its reference model (npo, idkdpo, undial) is the copy itself as it came.\n\n"
         "Algorithms (OpenUnlearning's losses and defaults):\n"
         "  ga        gradient ascent on the forget set\n"
         "  graddiff  gamma*(-NLL forget) + alpha*NLL retain            (gamma 1, alpha 1)\n"
         "  npo       negative preference optimisation                (beta 0.1)\n"
         "  simnpo    NPO on length-normalised NLL, no reference      (beta 4.5, delta 0, gamma 0.125)\n"
         "  undial    self-distillation to adjusted logits            (beta 10, alpha 0)\n"
         "  satimp    saturation/importance-weighted ascent           (beta 5, beta2 1, gamma 0.1)\n"
         "  wga       weighted gradient ascent                        (beta 1)\n"
         "  idkdpo    DPO towards \"I don't know\" answers              (beta 0.1)\n"
         "All but ga add alpha times the retain set's NLL (alpha 1 unless shown).\n\n"
         "Unlearning options:\n"
         "      --algo ALGO      one of the above\n"
         "      --forget FILE    what to forget (JSON Lines, the forms of 'mpu score')\n"
         "      --retain FILE    what to keep (required when alpha is not 0)\n"
         "      --beta X --beta2 X --gamma X --alpha X --delta X\n"
         "                       override the algorithm's hyperparameters; gamma weighs\n"
         "                       the forget loss, alpha the retain loss\n"
         "      --idk FILE       idkdpo's answers, one per line (text, or JSON Lines with\n"
         "                       \"text\" or \"input_ids\"); default: 20 built-in answers\n"
         "      --pairing P      retain item for each forget item: random (default, drawn\n"
         "                       per epoch from the seed, as OpenUnlearning) or cycle\n"
         "      --freeze GLOB    do not train tensors whose names match (repeatable);\n"
         "                       they pass through bit for bit\n"
         "      --copy K         unlearn only copy K (1-based) of a multi-copy stream\n"
         "      --exec CMD       instead of an algorithm, run CMD (with /bin/sh) on each\n"
         "                       copy: MPU_MODEL_DIR holds the copy as a Hugging Face\n"
         "                       directory, the result goes to MPU_OUTPUT_DIR; also set:\n"
         "                       MPU_FORGET, MPU_RETAIN, MPU_IDK, MPU_COPY, MPU_COPIES,\n"
         "                       MPU_ALGO (the training options do not apply).  Every\n"
         "                       tensor must keep its name, shape and dtype.\n");
  train_cli_help(defaults);
  printf(CLI_OUTPUT_HELP CLI_COMMON_HELP
         "\nWhat the output records: the algorithm, its hyperparameters and the training\n"
         "options, and --exec's command; never the data, its file names or its digests.\n"
         "\nExit status: 0 ok, 1 the input or the command's model failed verification,\n"
         "2 usage, data or I/O error, a failed command, or unlearning diverged (nothing\n"
         "is written then).\n");
}

/* idkdpo's answers as they are read. */
typedef struct {
  const tokenizer *tok;
  size_t vocab, n, alloc;
  int32_t **ids;
  uint32_t *lens;
} idk_list;

/* One answer per line: a JSON object ("text" or "input_ids") or plain text. */
static int idk_line(void *ctx, char *line, size_t len, mpu_err *e) {
  (void)len;
  idk_list *l = ctx;
  if (l->n == l->alloc) {
    l->alloc = l->alloc ? 2 * l->alloc : 32;
    int32_t **ids = realloc(l->ids, l->alloc * sizeof *ids);
    uint32_t *lens = ids ? realloc(l->lens, l->alloc * sizeof *lens) : NULL;
    if (ids) l->ids = ids;
    if (lens) l->lens = lens;
    if (!ids || !lens) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  int32_t *tokens = NULL;
  size_t count = 0, tcap = 0;
  const char *text = line;
  json_t *j = NULL;
  int rc = 0;
  if (line[0] == '{') {
    json_error_t je;
    if (!(j = json_loads(line, 0, &je))) return mpu_fail(e, MPU_EUSAGE, "not JSON: %s", je.text);
    json_t *arr = json_object_get(j, "input_ids");
    text = json_string_value(json_object_get(j, "text"));
    if (json_is_array(arr)) {
      size_t i;
      json_t *v;
      tokens = malloc((json_array_size(arr) + 1) * sizeof *tokens);
      json_array_foreach(arr, i, v) {
        json_int_t x = json_integer_value(v);
        if (!json_is_integer(v) || x < 0 || (size_t)x >= l->vocab) {
          rc = mpu_fail(e, MPU_EUSAGE, "input_ids[%zu] is not a token id below %zu", i, l->vocab);
          break;
        }
        tokens[count++] = (int32_t)x;
      }
      text = NULL;
    } else if (!text) {
      rc = mpu_fail(e, MPU_EUSAGE, "an answer needs \"text\" or \"input_ids\"");
    }
  }
  if (!rc && text) {
    if (!l->tok) rc = mpu_fail(e, MPU_EUSAGE, "the model has no tokenizer for text answers");
    else rc = tok_encode(l->tok, text, strlen(text), 0, &tokens, &count, &tcap, e);
  }
  if (j) json_decref(j);
  if (!rc && !count) rc = mpu_fail(e, MPU_EUSAGE, "an empty answer");
  if (rc) {
    free(tokens);
    return rc;
  }
  l->ids[l->n] = tokens;
  l->lens[l->n++] = (uint32_t)count;
  return 0;
}

static int load_idk(const char *path, const tokenizer *tok, size_t vocab, int32_t ***ids, uint32_t **lens, size_t *n,
                    mpu_err *e) {
  idk_list l = {.tok = tok, .vocab = vocab};
  int rc = lines_each(path, idk_line, &l, e);
  if (!rc && !l.n) rc = mpu_fail(e, MPU_EUSAGE, "%s: no answers", path);
  *ids = l.ids;
  *lens = l.lens;
  *n = l.n;
  return rc;
}

static int parse_hyper(const char *name, const char *arg, double *v, int *set) {
  if (parse_double(arg, -1e6, 1e6, v)) {
    cli_usage_error("--%s: '%s' is not a number", name, arg);
    return -1;
  }
  *set = 1;
  return 0;
}

/* An absolute path for the command's environment (it runs elsewhere). */
static char *absolute(const char *path) {
  if (!path) return NULL;
  char *r = realpath(path, NULL);
  return r ? r : strdup(path);
}

int main(int argc, char **argv) {
  cli_init("mpu-unlearn", argc, argv);
  enum {
    OPT_ALGO = OPT_TRAIN_END, OPT_FORGET, OPT_RETAIN, OPT_BETA, OPT_BETA2, OPT_GAMMA, OPT_ALPHA, OPT_DELTA, OPT_IDK,
    OPT_PAIRING, OPT_FREEZE, OPT_COPY, OPT_EXEC
  };
  static const struct option longopts[] = {
    CLI_COMMON_OPTIONS, CLI_OUTPUT_OPTIONS, TRAIN_CLI_OPTIONS, {"algo", required_argument, 0, OPT_ALGO},
    {"forget", required_argument, 0, OPT_FORGET}, {"retain", required_argument, 0, OPT_RETAIN},
    {"beta", required_argument, 0, OPT_BETA}, {"beta1", required_argument, 0, OPT_BETA},
    {"beta2", required_argument, 0, OPT_BETA2}, {"gamma", required_argument, 0, OPT_GAMMA},
    {"alpha", required_argument, 0, OPT_ALPHA}, {"delta", required_argument, 0, OPT_DELTA},
    {"idk", required_argument, 0, OPT_IDK}, {"pairing", required_argument, 0, OPT_PAIRING},
    {"freeze", required_argument, 0, OPT_FREEZE}, {"copy", required_argument, 0, OPT_COPY},
    {"exec", required_argument, 0, OPT_EXEC}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  /* OpenUnlearning's TOFU setup: AdamW, lr 1e-5, 8 x 4 = 32 per step, weight
   * decay 0.01, 10 epochs, one epoch of warm-up, linear decay, seed 0. */
  train_cli tc = {.t = {.opt = {OPT_ADAMW, 1e-5, 0.9, 0.999, 1e-8, 0.01, 1.0, SCHED_LINEAR, 0},
                        .epochs = 10, .batch = 8, .grad_accum = 4, .seed = 0, .shuffle = 1},
                  .warmup_epochs = 1, .chat = 1};
  const char *algo_arg = NULL, *forget_path = NULL, *retain_path = NULL, *idk_path = NULL, *cmd = NULL;
  const char *freeze[argc + 1]; /* at most one per argument; on the stack, so no exit path leaks it */
  size_t nfreeze = 0;
  double beta = 0, beta2 = 0, gamma = 0, alpha = 0, delta = 0;
  int set_beta = 0, set_beta2 = 0, set_gamma = 0, set_alpha = 0, set_delta = 0, pairing = PAIR_RANDOM, opt;
  long long copy = 0;
  while ((opt = getopt_long(argc, argv, "hVqo:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (!r) r = train_cli_option(&tc, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(&tc); return 0;
    case 'V': cli_version(); return 0;
    case OPT_ALGO: algo_arg = optarg; break;
    case OPT_FORGET: forget_path = optarg; break;
    case OPT_RETAIN: retain_path = optarg; break;
    case OPT_BETA: if (parse_hyper("beta", optarg, &beta, &set_beta)) return 2; break;
    case OPT_BETA2: if (parse_hyper("beta2", optarg, &beta2, &set_beta2)) return 2; break;
    case OPT_GAMMA: if (parse_hyper("gamma", optarg, &gamma, &set_gamma)) return 2; break;
    case OPT_ALPHA: if (parse_hyper("alpha", optarg, &alpha, &set_alpha)) return 2; break;
    case OPT_DELTA: if (parse_hyper("delta", optarg, &delta, &set_delta)) return 2; break;
    case OPT_IDK: idk_path = optarg; break;
    case OPT_PAIRING:
      if (!strcmp(optarg, "random")) pairing = PAIR_RANDOM;
      else if (!strcmp(optarg, "cycle")) pairing = PAIR_CYCLE;
      else return cli_usage_error("--pairing: '%s' is not random or cycle", optarg);
      break;
    case OPT_FREEZE: freeze[nfreeze++] = optarg; break;
    case OPT_COPY:
      if (cli_parse_int(optarg, 1, 1 << 30, &copy)) return cli_usage_error("--copy: '%s' is not a copy number", optarg);
      break;
    case OPT_EXEC: cmd = optarg; break;
    default: return cli_usage_error("bad option");
    }
  }
  int algo = algo_arg ? algo_from_name(algo_arg) : -1;
  if (algo_arg && algo < 0)
    return cli_usage_error("--algo: '%s' is not one of ga, graddiff, npo, simnpo, undial, satimp, wga, idkdpo", algo_arg);
  if (!algo_arg && !cmd) return cli_usage_error("--algo ALGO (or --exec CMD) is required");
  if (!forget_path) return cli_usage_error("--forget FILE is required");
  if (optind < argc - 1) return cli_usage_error("one IN at a time");
  const char *in_path = optind < argc ? argv[optind] : NULL;
  if ((!in_path || !strcmp(in_path, "-")) &&
      (!strcmp(forget_path, "-") || (retain_path && !strcmp(retain_path, "-"))))
    return cli_usage_error("the data and the model cannot both come from standard input");
  if (idk_path && algo != ALG_IDKDPO) return cli_usage_error("--idk is for --algo idkdpo");
  if (cmd && (!strcmp(forget_path, "-") || (retain_path && !strcmp(retain_path, "-"))))
    return cli_usage_error("--exec passes the data to the command as files: give --forget and --retain as files");
  if (cmd && nfreeze) return cli_usage_error("--freeze applies to the built-in algorithms, not to --exec");

  unlearn_config uc;
  unlearn_defaults(algo >= 0 ? algo : ALG_GA, &uc);
  if (set_beta) uc.beta = beta;
  if (set_beta2) uc.beta2 = beta2;
  if (set_gamma) uc.gamma = gamma;
  if (set_alpha) uc.alpha = alpha;
  if (set_delta) uc.delta = delta;
  uc.pairing = pairing;
  uc.seed = tc.t.seed;
  if (!cmd && algo_uses_retain(&uc) && !retain_path)
    return cli_usage_error("%s needs a retain set: --retain FILE (or --alpha 0)", algo_name(algo));

  mpu_err e = {0};
  if (cli_output_check(c.output, c.enc.force, &e)) return cli_report(&e);
  train_options *t = &tc.t;
  t->progress = c.progress;
  engine g;
  dataset forget = {0}, retain = {0};
  int32_t **idk = NULL;
  uint32_t *idk_len = NULL;
  size_t nidk = 0;
  if (engine_check_device(tc.device, &e)) return cli_report(&e);
  int rc = engine_open_copies(&g, in_path, (int)copy - 1, (int)tc.threads, &e);
  if (!rc) rc = engine_set_device(&g, tc.device, -1, &e);
  if (!rc) {
    g.data.truncate = tc.truncate;
    g.data.use_chat = tc.chat;
    g.data.system = tc.system;
    rc = dataset_load(&forget, forget_path, &g.data, &e);
    if (rc) mpu_fail_ctx(&e, "the forget set");
  }
  if (!rc && retain_path && !cmd && !algo_uses_retain(&uc) && !c.quiet)
    cli_msg(algo == ALG_GA ? "note: %s does not use the retain set" : "note: %s with alpha 0 does not use the retain set",
            algo_name(algo));
  if (!rc && retain_path && (cmd || algo_uses_retain(&uc))) {
    rc = dataset_load(&retain, retain_path, &g.data, &e);
    if (rc) mpu_fail_ctx(&e, "the retain set");
  }
  if (!rc && algo == ALG_IDKDPO && !cmd) {
    rc = idk_path ? load_idk(idk_path, g.tok, g.data.vocab, &idk, &idk_len, &nidk, &e)
                  : idk_tokenize(g.tok, NULL, 0, &idk, &idk_len, &e);
    if (!idk_path) nidk = idk_default_count;
  }
  /* the frozen tensors, the same in every copy */
  for (size_t f = 0; !rc && f < nfreeze; f++) {
    int matched = 0;
    for (int k = 0; k < g.M; k++)
      for (size_t i = 0; i < g.ms[k]->ntensors; i++)
        if (!fnmatch(freeze[f], g.ms[k]->tensors[i].name, 0)) g.ms[k]->frozen[i] = 1, matched = 1;
    if (!matched) rc = mpu_fail(&e, MPU_EUSAGE, "--freeze '%s' matches no tensor of the model", freeze[f]);
  }
  if (!rc) rc = train_cli_ready(&tc, forget.n, &e);

  char *forget_abs = absolute(forget_path), *retain_abs = absolute(retain_path), *idk_abs = absolute(idk_path);
  train_result res = {0};
  for (int k = 0; !rc && k < g.M; k++) {
    model *m = g.ms[k];
    char label[64] = "";
    int number = copy ? (int)copy : k + 1;
    long copies = (long)json_integer_value(json_object_get(g.in.header, "copies"));
    /* a split copy knows its number and the round's count from its record */
    json_t *record = json_object_get(g.in.header, "mpu");
    if (copies == 1 && json_integer_value(json_object_get(record, "copy")) > 0) {
      number = (int)json_integer_value(json_object_get(record, "copy"));
      copies = (long)json_integer_value(json_object_get(record, "copies"));
    }
    if (copies > 1) snprintf(label, sizeof label, "copy %d/%ld", number, copies);
    if (cmd) {
      char num[32], total[32];
      snprintf(num, sizeof num, "%d", number);
      snprintf(total, sizeof total, "%ld", copies);
      exec_var vars[] = {{"MPU_FORGET", forget_abs}, {"MPU_RETAIN", retain_abs}, {"MPU_IDK", idk_abs},
                         {"MPU_COPY", num}, {"MPU_COPIES", total}, {"MPU_ALGO", algo_arg}};
      if (!c.quiet && label[0]) cli_msg("%s: running the command", label);
      rc = exec_round_trip(m, cmd, vars, sizeof vars / sizeof *vars, &e);
      if (rc && label[0]) mpu_fail_ctx(&e, "%s", label);
      continue;
    }
    unlearn_objective u;
    rc = unlearn_init(&u, &uc, m, &forget, retain.n ? &retain : NULL, idk, idk_len, nidk, g.eos, g.pad, t->epochs, &e);
    train_result r;
    if (!rc) rc = train_run(m, &u.base, t, label[0] ? label : NULL, &r, &e);
    unlearn_free(&u);
    model_release_work(m);
    if (!rc) {
      res.steps += r.steps;
      res.tokens += r.tokens;
      res.seconds += r.seconds;
      if (!c.quiet)
        cli_msg("%s%s%ld steps, loss %.4f -> %.4f, %.0f tokens/s", label, label[0] ? ": " : "", r.steps, r.first_loss,
                r.last_loss, r.tokens / (r.seconds + 1e-9));
    }
  }
  if (!rc) {
    /* What the server may learn from the output: the method and its
     * settings, not the data (no names, sizes, digests or losses). */
    json_t *params = cmd ? json_object() : train_cli_params(&tc);
    if (!cmd && tc.warmup_epochs >= 0) {
      json_object_del(params, "warmup_steps");
      json_object_set_new(params, "warmup_epochs", json_real(tc.warmup_epochs));
    }
    if (cmd) {
      /* the command's own settings are its business: what it was given */
      json_object_set_new(params, "exec", json_string(cmd));
      if (algo_arg) json_object_set_new(params, "exec_algo", json_string(algo_arg));
    } else {
      json_object_set_new(params, "algorithm", json_string(algo_name(algo)));
      json_object_set_new(params, "hyperparameters", unlearn_hyperparameters(&uc));
      json_object_set_new(params, "pairing", json_string(pairing == PAIR_CYCLE ? "cycle" : "random"));
      json_object_set_new(params, "reference", json_string("the copy before unlearning"));
      if (algo == ALG_IDKDPO) json_object_set_new(params, "idk", json_string(idk_path ? "file" : "built-in"));
    }
    if (nfreeze) {
      json_t *fz = json_array();
      for (size_t f = 0; f < nfreeze; f++) json_array_append_new(fz, json_string(freeze[f]));
      json_object_set_new(params, "freeze", fz);
    }
    if (copy) json_object_set_new(params, "copy", json_integer(copy));
    json_t *h = prov_header("unlearn", params);
    json_array_append_new(json_object_get(h, "parents"), prov_parent(&g.in));
    ms_reader *ins[1] = {&g.in};
    json_t *extra = prov_parents_verified(ins, 1);
    char *ej = json_canonical(extra);
    json_decref(extra);
    rc = model_save(g.ms, g.M, c.output, &c.enc, tc.dtype, h, ej, &e);
    free(ej);
  }
  train_cli_close(&tc);
  for (size_t j = 0; j < nidk; j++) free(idk[j]);
  free(idk);
  free(idk_len);
  free(forget_abs);
  free(retain_abs);
  free(idk_abs);
  dataset_free(&forget);
  dataset_free(&retain);
  engine_close(&g);
  return rc ? cli_report(&e) : 0;
}
