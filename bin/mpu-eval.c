/*
 * mpu-eval -- TOFU's evaluation of a model: answer probability, ROUGE-L of
 * greedy answers, truth ratio, forget quality, model utility, extraction
 * strength and membership inference (OpenUnlearning's definitions).
 */
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine.h"
#include "evaluate.h"
#include "jsonx.h"
#include "metrics.h"

static void help(void) {
  printf("Usage: mpu eval [--forget F] [--retain R] [--holdout H] [--world W] [OPTION]... MODEL\n"
         "Evaluate MODEL (an .mpuc stream) on TOFU-style JSON Lines sets (fields question,\n"
         "answer, paraphrased_answer, perturbed_answer as a list) and print the TOFU\n"
         "metrics as a table, or with --json every per-item value and every aggregate.\n\n"
         "Sets (at least one):\n"
         "      --forget FILE    what was to be forgotten: probability, ROUGE-L, truth\n"
         "                       ratio min(R, 1/R), extraction strength, forget quality\n"
         "      --retain FILE    what was to be kept: probability, ROUGE-L, truth ratio\n"
         "                       max(0, 1 - R)\n"
         "      --holdout FILE   never trained on: membership inference against --forget\n"
         "      --world FILE     general knowledge: normalised probability, ROUGE-L,\n"
         "                       truth ratio against the answer itself\n"
         "      --real-authors FILE  another general-knowledge set, as --world\n"
         "The reference for forget quality and privleak (the model trained without the\n"
         "forget set):\n"
         "      --retain-model RM  evaluate RM (an .mpuc stream) on --forget and --holdout\n"
         "      --retain-eval FILE  or take its values from an earlier 'mpu eval --json'\n"
         "Options:\n"
         "      --json           one JSON document on standard output\n"
         "      --max-new N      tokens per greedy answer (default 200)\n"
         "      --no-generate    skip greedy answers and ROUGE (faster)\n"
         "      --mink K         Min-K%%'s fraction (default 0.4)\n"
         "      --batch N        sequences per forward pass (default 16)\n"
         "      --no-chat        never use the tokenizer's chat template for questions\n"
         "      --system TEXT    system prompt for the chat template\n"
         "      --copy K         evaluate copy K of a multi-copy stream\n"
         "      --threads N      threads (default: all cores)\n" ENGINE_DEVICE_HELP CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 a model failed verification, 2 usage, data or I/O error.\n");
}

enum { SET_FORGET, SET_RETAIN, SET_HOLDOUT, SET_WORLD, SET_REAL, NSETS };
static const char *const set_names[NSETS] = {"forget", "retain", "holdout", "world_facts", "real_authors"};

typedef struct {
  const char *path;
  eval_set set;
  eval_result *res;
  json_t *agg;            /* aggregates */
} set_run;

static double mean_of(const eval_result *r, size_t n, size_t field) {
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    double v = *(const double *)((const char *)&r[i] + field);
    if (isnan(v)) return NAN;
    s += v;
  }
  return n ? s / (double)n : NAN;
}

static json_t *num(double v) { return isnan(v) ? json_null() : json_real(v); }

/* The truth-ratio aggregate: forget sets want R near 1, the others R small. */
static double truth_agg(const eval_result *r, size_t n, int forget) {
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    double R = r[i].truth_ratio;
    if (isnan(R)) return NAN;
    s += forget ? fmin(R, 1.0 / R) : fmax(0.0, 1.0 - R);
  }
  return n ? s / (double)n : NAN;
}

static double auc_of(const eval_result *f, size_t nf, const eval_result *h, size_t nh, size_t field) {
  size_t n = nf + nh;
  double *sc = malloc((n + 1) * sizeof *sc);
  int *lab = malloc((n + 1) * sizeof *lab);
  double auc = NAN;
  if (sc && lab) {
    for (size_t i = 0; i < nf; i++) {
      sc[i] = *(const double *)((const char *)&f[i] + field);
      lab[i] = 0;
    }
    for (size_t i = 0; i < nh; i++) {
      sc[nf + i] = *(const double *)((const char *)&h[i] + field);
      lab[nf + i] = 1;
    }
    auc = roc_auc(sc, lab, n);
  }
  free(sc);
  free(lab);
  return auc;
}

static json_t *items_json(const eval_set *s, const eval_result *r) {
  json_t *arr = json_array();
  for (size_t i = 0; i < s->n; i++) {
    json_t *o = json_pack("{s:s, s:f, s:I, s:o, s:o, s:o, s:o, s:{s:o, s:o, s:o}}", "id", s->items[i].id, "nll", r[i].nll,
                          "tokens", (json_int_t)r[i].tokens, "prob", num(r[i].prob), "prob_norm", num(r[i].prob_norm),
                          "truth_ratio", num(r[i].truth_ratio), "extraction_strength", num(r[i].es), "mia", "loss",
                          num(r[i].mia_loss), "zlib", num(r[i].mia_zlib), "min_k", num(r[i].mia_mink));
    if (r[i].generation) {
      json_object_set_new(o, "generation", json_string(r[i].generation));
      json_object_set_new(o, "rouge_l_recall", num(r[i].rouge_recall));
      json_object_set_new(o, "rouge_l_f1", num(r[i].rouge_f1));
    }
    json_array_append_new(arr, o);
  }
  return arr;
}

/* The reference's forget truth ratios and Min-K AUC from an earlier --json. */
static int load_reference(const char *path, const eval_set *forget, double **tr, size_t *ntr, double *auc,
                          mpu_err *e) {
  json_error_t je;
  json_t *j = json_load_file(path, 0, &je);
  if (!j) return mpu_fail(e, MPU_EUSAGE, "%s: not JSON: %s (line %d)", path, je.text, je.line);
  json_t *items = json_object_get(json_object_get(json_object_get(j, "sets"), "forget"), "items");
  json_t *a = json_object_get(json_object_get(j, "metrics"), "mia_min_k_auc");
  int rc = 0;
  if (!json_is_array(items)) rc = mpu_fail(e, MPU_EUSAGE, "%s: no forget items (an 'mpu eval --json' of the retain model on --forget)", path);
  *ntr = rc ? 0 : json_array_size(items);
  *tr = calloc(*ntr + 1, sizeof **tr);
  for (size_t i = 0; !rc && i < *ntr; i++) {
    json_t *v = json_object_get(json_array_get(items, i), "truth_ratio");
    if (!json_is_number(v)) rc = mpu_fail(e, MPU_EUSAGE, "%s: forget item %zu has no truth_ratio", path, i + 1);
    else (*tr)[i] = json_number_value(v);
  }
  /* the same forget set, item for item */
  const char *id = NULL;
  for (size_t i = 0; !rc && i < *ntr && i < forget->n; i++)
    if (!json_is_string(json_object_get(json_array_get(items, i), "id")) ||
        strcmp(id = json_string_value(json_object_get(json_array_get(items, i), "id")), forget->items[i].id))
      rc = mpu_fail(e, MPU_EUSAGE, "%s was evaluated on another forget set (item %zu is %s, not %s)", path, i + 1,
                    id ? id : "unnamed", forget->items[i].id);
  if (!rc && *ntr != forget->n)
    rc = mpu_fail(e, MPU_EUSAGE, "%s was evaluated on %zu forget items, not %zu", path, *ntr, forget->n);
  *auc = json_is_number(a) ? json_number_value(a) : NAN;
  json_decref(j);
  return rc;
}

int main(int argc, char **argv) {
  cli_init("mpu-eval", argc, argv);
  enum {
    OPT_FORGET = OPT_PROGRAM, OPT_RETAIN, OPT_HOLDOUT, OPT_WORLD, OPT_REAL, OPT_RMODEL, OPT_REVAL, OPT_MAXNEW,
    OPT_NOGEN, OPT_MINK, OPT_BATCH, OPT_NOCHAT, OPT_SYSTEM, OPT_COPY, OPT_THREADS
  };
  static const struct option longopts[] = {
    CLI_COMMON_OPTIONS, {"json", no_argument, 0, OPT_JSON}, {"forget", required_argument, 0, OPT_FORGET},
    {"retain", required_argument, 0, OPT_RETAIN}, {"holdout", required_argument, 0, OPT_HOLDOUT},
    {"world", required_argument, 0, OPT_WORLD}, {"real-authors", required_argument, 0, OPT_REAL},
    {"retain-model", required_argument, 0, OPT_RMODEL}, {"retain-eval", required_argument, 0, OPT_REVAL},
    {"max-new", required_argument, 0, OPT_MAXNEW}, {"no-generate", no_argument, 0, OPT_NOGEN},
    {"mink", required_argument, 0, OPT_MINK}, {"batch", required_argument, 0, OPT_BATCH},
    {"no-chat", no_argument, 0, OPT_NOCHAT}, {"system", required_argument, 0, OPT_SYSTEM},
    {"copy", required_argument, 0, OPT_COPY}, {"threads", required_argument, 0, OPT_THREADS}, CLI_DEVICE_OPTION,
    {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  set_run sets[NSETS] = {{0}};
  const char *rmodel = NULL, *reval = NULL, *system = NULL;
  long long max_new = 200, per_batch = 16, copy = 0, threads = 0;
  double mink = 0.4;
  int as_json = 0, generate = 1, chat = 1, opt, device = MODEL_CPU;
  while ((opt = getopt_long(argc, argv, "hVq", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_JSON: as_json = 1; break;
    case OPT_FORGET: sets[SET_FORGET].path = optarg; break;
    case OPT_RETAIN: sets[SET_RETAIN].path = optarg; break;
    case OPT_HOLDOUT: sets[SET_HOLDOUT].path = optarg; break;
    case OPT_WORLD: sets[SET_WORLD].path = optarg; break;
    case OPT_REAL: sets[SET_REAL].path = optarg; break;
    case OPT_RMODEL: rmodel = optarg; break;
    case OPT_REVAL: reval = optarg; break;
    case OPT_MAXNEW:
      if (cli_parse_int(optarg, 1, 1 << 20, &max_new)) return cli_usage_error("--max-new: '%s' is not a count", optarg);
      break;
    case OPT_NOGEN: generate = 0; break;
    case OPT_MINK: {
      char *end;
      mink = strtod(optarg, &end);
      if (end == optarg || *end || !(mink > 0 && mink <= 1)) return cli_usage_error("--mink: '%s' is not in (0, 1]", optarg);
      break;
    }
    case OPT_BATCH:
      if (cli_parse_int(optarg, 1, 4096, &per_batch)) return cli_usage_error("--batch: '%s' is not a count", optarg);
      break;
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
  int any = 0;
  for (int k = 0; k < NSETS; k++) any |= sets[k].path != NULL;
  if (!any) return cli_usage_error("give at least one set (--forget, --retain, --holdout, --world, --real-authors)");
  if (optind != argc - 1) return cli_usage_error("one MODEL");
  if (rmodel && reval) return cli_usage_error("--retain-model or --retain-eval, not both");
  if ((rmodel || reval) && !sets[SET_FORGET].path) return cli_usage_error("a retain reference needs --forget");
  if (sets[SET_HOLDOUT].path && !sets[SET_FORGET].path) return cli_usage_error("--holdout needs --forget");

  mpu_err e = {0};
  eval_options eo = {.generate = generate, .max_new = (size_t)max_new, .mink_k = mink, .batch = (size_t)per_batch};
  int rc = engine_check_device(device, &e) ? e.status : 0; /* before anything is read */
  for (int k = 0; !rc && k < NSETS; k++)
    if (sets[k].path && (rc = eval_set_load(&sets[k].set, sets[k].path, &e))) mpu_fail_ctx(&e, "--%s", set_names[k]);

  /* the reference first: its engine is closed before the model's opens */
  double *ref_tr = NULL, ref_auc = NAN;
  size_t nref = 0;
  llama_config ref_cfg = {0};
  if (!rc && reval) rc = load_reference(reval, &sets[SET_FORGET].set, &ref_tr, &nref, &ref_auc, &e);
  if (!rc && rmodel) {
    engine r;
    rc = engine_open(&r, rmodel, -1, (int)threads, &e);
    if (!rc) rc = engine_set_device(&r, device, -1, &e);
    if (!rc) ref_cfg = r.m.c;
    if (!rc) {
      r.data.use_chat = chat;
      r.data.system = system;
      eval_options ro = eo;
      ro.generate = 0;
      eval_result *fr = calloc(sets[SET_FORGET].set.n, sizeof *fr);
      rc = eval_set_run(&r.m, &r.data, r.pad, &sets[SET_FORGET].set, &ro, fr, &e);
      nref = sets[SET_FORGET].set.n;
      ref_tr = malloc((nref + 1) * sizeof *ref_tr);
      for (size_t i = 0; !rc && i < nref; i++) ref_tr[i] = fr[i].truth_ratio;
      if (!rc && sets[SET_HOLDOUT].path) {
        eval_result *hr = calloc(sets[SET_HOLDOUT].set.n, sizeof *hr);
        rc = eval_set_run(&r.m, &r.data, r.pad, &sets[SET_HOLDOUT].set, &ro, hr, &e);
        if (!rc) ref_auc = auc_of(fr, nref, hr, sets[SET_HOLDOUT].set.n, offsetof(eval_result, mia_mink));
        free(hr);
      }
      free(fr);
    }
    if (rc) mpu_fail_ctx(&e, "--retain-model %s", rmodel);
    engine_close(&r);
  }

  engine g;
  memset(&g, 0, sizeof g);
  if (!rc) rc = engine_open(&g, argv[optind], (int)copy - 1, (int)threads, &e);
  if (!rc) rc = engine_set_device(&g, device, -1, &e);
  /* the truth ratios are only comparable between models of one shape and vocabulary */
  if (!rc && rmodel &&
      (ref_cfg.arch != g.m.c.arch || ref_cfg.vocab != g.m.c.vocab || ref_cfg.hidden != g.m.c.hidden ||
       ref_cfg.inter != g.m.c.inter || ref_cfg.layers != g.m.c.layers || ref_cfg.heads != g.m.c.heads ||
       ref_cfg.kv_heads != g.m.c.kv_heads))
    rc = mpu_fail(&e, MPU_EUSAGE,
                  "--retain-model %s is not a model of %s's architecture (vocabulary %lld vs %lld, hidden %lld vs %lld, "
                  "layers %lld vs %lld)",
                  rmodel, argv[optind], (long long)ref_cfg.vocab, (long long)g.m.c.vocab, (long long)ref_cfg.hidden,
                  (long long)g.m.c.hidden, (long long)ref_cfg.layers, (long long)g.m.c.layers);
  if (!rc && generate && !g.tok) rc = mpu_fail(&e, MPU_EUSAGE, "the model carries no tokenizer to decode answers; use --no-generate");
  if (!rc) {
    g.data.use_chat = chat;
    g.data.system = system;
  }
  cli_progress pg;
  size_t total = 0, done = 0;
  for (int k = 0; k < NSETS; k++) total += sets[k].set.n;
  cli_progress_start(&pg, c.progress, "evaluating", total);
  for (int k = 0; !rc && k < NSETS; k++) {
    if (!sets[k].path) continue;
    eval_options so = eo;
    so.truth_vs_answer = k == SET_WORLD || k == SET_REAL;
    so.generate = generate && k != SET_HOLDOUT;
    sets[k].res = calloc(sets[k].set.n + 1, sizeof *sets[k].res);
    rc = eval_set_run(&g.m, &g.data, g.pad, &sets[k].set, &so, sets[k].res, &e);
    if (rc) mpu_fail_ctx(&e, "--%s %s", set_names[k], sets[k].path);
    done += sets[k].set.n;
    cli_progress_update(&pg, done);
  }
  cli_progress_end(&pg);

  /* aggregates */
  json_t *metrics = json_object(), *setsj = json_object();
  double utility[6];
  int nutil = 0, util_missing = 0;
  for (int k = 0; !rc && k < NSETS; k++) {
    set_run *s = &sets[k];
    if (!s->path) continue;
    size_t n = s->set.n;
    const eval_result *r = s->res;
    json_t *agg = json_object();
    if (k != SET_HOLDOUT) {
      int general = k == SET_WORLD || k == SET_REAL;
      double prob = general ? mean_of(r, n, offsetof(eval_result, prob_norm)) : mean_of(r, n, offsetof(eval_result, prob));
      double rouge = generate ? mean_of(r, n, offsetof(eval_result, rouge_recall)) : NAN;
      double tr = truth_agg(r, n, k == SET_FORGET);
      json_object_set_new(agg, general ? "Q_A_Prob_normalised" : "Q_A_Prob", num(prob));
      json_object_set_new(agg, "Q_A_ROUGE", num(rouge));
      json_object_set_new(agg, "Truth_Ratio", num(tr));
      char key[64];
      snprintf(key, sizeof key, "%s_%s", set_names[k], general ? "Q_A_Prob_normalised" : "Q_A_Prob");
      json_object_set_new(metrics, key, num(prob));
      snprintf(key, sizeof key, "%s_Q_A_ROUGE", set_names[k]);
      json_object_set_new(metrics, key, num(rouge));
      snprintf(key, sizeof key, "%s_Truth_Ratio", set_names[k]);
      json_object_set_new(metrics, key, num(tr));
      if (k == SET_FORGET) {
        double es = mean_of(r, n, offsetof(eval_result, es));
        json_object_set_new(agg, "extraction_strength", num(es));
        json_object_set_new(metrics, "extraction_strength", num(es));
      } else {
        double v[3] = {prob, rouge, tr};
        for (int j = 0; j < 3; j++)
          if (isnan(v[j])) util_missing++;
          else utility[nutil++] = v[j];
      }
    }
    s->agg = agg;
    json_object_set_new(setsj, set_names[k], json_pack("{s:s, s:I, s:O, s:o}", "file", s->path, "count",
                                                       (json_int_t)n, "aggregate", agg, "items",
                                                       items_json(&s->set, r)));
  }
  double fq = NAN, auc_loss = NAN, auc_zlib = NAN, auc_mink = NAN, privleak = NAN, mu = NAN;
  if (!rc && sets[SET_FORGET].path && ref_tr) {
    size_t n = sets[SET_FORGET].set.n;
    double *tr = malloc((n + 1) * sizeof *tr);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= !isnan(tr[i] = sets[SET_FORGET].res[i].truth_ratio);
    for (size_t i = 0; i < nref; i++) ok &= !isnan(ref_tr[i]);
    if (ok && n && nref) fq = ks_2samp_pvalue(tr, n, ref_tr, nref);
    free(tr);
  }
  if (!rc && sets[SET_HOLDOUT].path) {
    const set_run *f = &sets[SET_FORGET], *h = &sets[SET_HOLDOUT];
    auc_loss = auc_of(f->res, f->set.n, h->res, h->set.n, offsetof(eval_result, mia_loss));
    auc_zlib = auc_of(f->res, f->set.n, h->res, h->set.n, offsetof(eval_result, mia_zlib));
    auc_mink = auc_of(f->res, f->set.n, h->res, h->set.n, offsetof(eval_result, mia_mink));
    double ref = isnan(ref_auc) ? 0.5 : ref_auc;
    privleak = ((1 - auc_mink) - (1 - ref)) / (1 - ref) * 100;
  }
  if (!rc && nutil) mu = harmonic_mean(utility, (size_t)nutil);
  if (!rc) {
    json_object_set_new(metrics, "forget_quality", num(fq));
    json_object_set_new(metrics, "model_utility", num(mu));
    json_object_set_new(metrics, "mia_loss_auc", num(auc_loss));
    json_object_set_new(metrics, "mia_zlib_auc", num(auc_zlib));
    json_object_set_new(metrics, "mia_min_k_auc", num(auc_mink));
    json_object_set_new(metrics, "privleak", num(privleak));
  }
  if (!rc && as_json) {
    json_t *doc = json_pack("{s:{s:s, s:s}, s:{s:I, s:f, s:b, s:b}, s:O, s:O, s:{s:s, s:o, s:I}}", "model", "file",
                            argv[optind], "stream_id", mpuc_reader_stream_id(g.in.r), "options", "max_new",
                            (json_int_t)max_new, "mink", mink, "generate", generate, "chat", chat, "sets", setsj,
                            "metrics", metrics, "reference", "source",
                            rmodel ? rmodel : reval ? reval : "none (privleak against AUC 0.5)", "mia_min_k_auc",
                            num(ref_auc), "forget_items", (json_int_t)nref);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    printf("%s\n", text);
    free(text);
    json_decref(doc);
  } else if (!rc) {
    printf("%-14s %6s %10s %10s %12s\n", "set", "items", "Q_A_Prob", "Q_A_ROUGE", "Truth_Ratio");
    for (int k = 0; k < NSETS; k++) {
      if (!sets[k].path || k == SET_HOLDOUT) continue;
      json_t *a = sets[k].agg;
      json_t *p = json_object_get(a, "Q_A_Prob") ? json_object_get(a, "Q_A_Prob") : json_object_get(a, "Q_A_Prob_normalised");
      char v[3][32];
      json_t *vals[3] = {p, json_object_get(a, "Q_A_ROUGE"), json_object_get(a, "Truth_Ratio")};
      for (int j = 0; j < 3; j++)
        if (json_is_number(vals[j])) snprintf(v[j], sizeof v[j], "%.4f", json_number_value(vals[j]));
        else snprintf(v[j], sizeof v[j], "n/a");
      printf("%-14s %6zu %10s %10s %12s\n", set_names[k], sets[k].set.n, v[0], v[1], v[2]);
    }
    printf("\n");
    struct {
      const char *name;
      double v;
      const char *note;
    } rows[] = {
      {"forget_quality", fq, rmodel || reval ? "KS p-value of forget truth ratios vs the retain model's" : "needs --retain-model or --retain-eval"},
      {"model_utility", mu, util_missing ? "harmonic mean of the retain-side values (some unavailable)" : "harmonic mean of the retain-side values"},
      {"extraction_strength", sets[SET_FORGET].path ? mean_of(sets[SET_FORGET].res, sets[SET_FORGET].set.n, offsetof(eval_result, es)) : NAN, "forget set"},
      {"privleak", privleak, !isnan(ref_auc) ? "Min-K AUC against the retain model's" : "Min-K AUC against 0.5"},
      {"mia_loss_auc", auc_loss, "forget 0 vs holdout 1"},
      {"mia_zlib_auc", auc_zlib, ""},
      {"mia_min_k_auc", auc_mink, ""},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
      if (isnan(rows[i].v)) printf("%-20s %12s  %s\n", rows[i].name, "n/a", rows[i].note);
      else printf("%-20s %12.6g  %s\n", rows[i].name, rows[i].v, rows[i].note);
    }
  }
  if (!rc && (fflush(stdout) || ferror(stdout))) rc = mpu_fail(&e, MPU_EUSAGE, "writing the results failed");
  json_decref(metrics);
  json_decref(setsj);
  for (int k = 0; k < NSETS; k++) {
    eval_results_free(sets[k].res, sets[k].set.n);
    free(sets[k].res);
    eval_set_free(&sets[k].set);
    if (sets[k].agg) json_decref(sets[k].agg);
  }
  free(ref_tr);
  engine_close(&g);
  return rc ? cli_report(&e) : 0;
}
