/*
 * mpu-verify -- checks streams completely: structure, every record checksum,
 * every chunk checksum, every tensor hash, the trailer's digests and index;
 * with --parents, the provenance links between a stream and its parents.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "cli.h"
#include "engine.h"
#include "jsonx.h"
#include "mstream.h"
#include "rng.h"

static void help(void) {
  printf("Usage: mpu verify [OPTION]... [STREAM]...\n"
         "Check .mpuc streams (standard input if none is given) from end to end.\n\n"
         "Options:\n"
         "  -p, --parents FILE   also check the provenance link to parent FILE: that the\n"
         "                       stream names FILE's id and header digest, and that it\n"
         "                       recorded FILE's content digest as it read it (repeat\n"
         "                       for several parents)\n"
         "      --json           one JSON object per stream on standard output\n"
         "      --equivalent A B check that models A and B compute the same function: run\n"
         "                       both on the same random token sequences and report the\n"
         "                       largest logit difference (exit 1 above --tolerance)\n"
         "      --probes N       sequences for --equivalent (default 8)\n"
         "      --length L       tokens per sequence (default 32, at most the context)\n"
         "      --tolerance X    largest logit difference allowed, relative to the largest\n"
         "                       logit (default 1e-4)\n"
         "      --copy K         for --equivalent: copy K of multi-copy streams\n" CLI_COMMON_HELP
         "\nExit status: 0 every stream verified, 1 a stream or link failed, 2 usage or I/O error.\n");
}

typedef struct {
  const char *path;
  char stream_id[33], header_digest[33], content_digest[33];
  int ok;
} parent_info;

/* Reads a whole stream, checking everything; returns 0 and fills what a
 * child needs to know about it. */
static int verify_one(const char *path, ms_reader *in, json_t **trailer, int progress, mpu_err *e) {
  if (ms_reader_open(in, path, e)) return e->status;
  ms_reader_progress(in, progress, "verifying");
  if (ms_verify_rest(in, e)) return e->status;
  if (trailer) *trailer = json_loads(ms_trailer_json(in), 0, NULL);
  return 0;
}

/* The stream's own links to the given parents. */
static int check_links(const char *path, ms_reader *in, json_t *trailer, parent_info *pars, size_t npar, int quiet,
                       json_t *report, mpu_err *e) {
  json_t *declared = json_object_get(in->header, "parents");
  json_t *verified = json_object_get(trailer, "parents_verified");
  json_t *links = json_array();
  json_object_set_new(report, "parents", links);
  int failed = 0;
  for (size_t k = 0; k < npar; k++) {
    parent_info *p = &pars[k];
    json_t *d = NULL, *v = NULL, *x;
    size_t i;
    json_array_foreach(declared, i, x) if (!strcmp(json_string_value(json_object_get(x, "stream_id")) ?: "", p->stream_id)) d = x;
    json_array_foreach(verified, i, x) if (!strcmp(json_string_value(json_object_get(x, "stream_id")) ?: "", p->stream_id)) v = x;
    const char *why = NULL;
    if (!d) why = "is not a parent of this stream (its stream id is not in the header)";
    else if (strcmp(json_string_value(json_object_get(json_object_get(d, "header_digest"), "xxh3_128")) ?: "", p->header_digest))
      why = "has another header than the one this stream names";
    else if (!v) why = "is named in the header but the trailer records no verified read of it";
    else if (strcmp(json_string_value(json_object_get(json_object_get(v, "content_digest"), "xxh3_128")) ?: "", p->content_digest))
      why = "has other content than this stream read (its content digest differs)";
    json_t *link = json_pack("{s:s, s:s, s:b}", "file", p->path, "stream_id", p->stream_id, "ok", why == NULL);
    if (why) json_object_set_new(link, "error", json_string(why));
    json_array_append_new(links, link);
    if (why) {
      if (!failed) mpu_fail(e, MPU_EVERIFY, "%s: broken provenance: parent %s %s", path, p->path, why);
      failed = 1;
    } else if (!quiet && !json_is_true(json_object_get(report, "json"))) {
      printf("%s: parent %s ok\n", path, p->path);
    }
  }
  /* Parents the stream names that were not given stay unchecked. */
  size_t i;
  json_t *x;
  json_array_foreach(declared, i, x) {
    const char *id = json_string_value(json_object_get(x, "stream_id"));
    int given = 0;
    for (size_t k = 0; k < npar; k++) given |= id && !strcmp(id, pars[k].stream_id);
    if (!given && npar && !quiet) {
      char *s = json_canonical(x);
      cli_msg("note: %s: parent %s not given; its link is not checked", path, s ? s : "?");
      free(s);
    }
  }
  return failed ? MPU_EVERIFY : 0;
}

/* Two models, the same random token sequences, the largest logit difference. */
static int equivalent(const char *a_path, const char *b_path, int probes, int length, double tol, int copy, int as_json,
                      mpu_err *e) {
  engine a, b;
  memset(&b, 0, sizeof b);
  int rc = engine_open(&a, a_path, copy - 1, 0, e);
  if (!rc) rc = engine_open(&b, b_path, copy - 1, 0, e);
  if (!rc && (a.m.c.vocab != b.m.c.vocab || a.m.c.hidden != b.m.c.hidden || a.m.c.layers != b.m.c.layers))
    rc = mpu_fail(e, MPU_EVERIFY, "%s and %s are models of different shapes", a_path, b_path);
  if (rc) {
    engine_close(&a);
    engine_close(&b);
    return rc;
  }
  size_t T = (size_t)length < (size_t)a.m.c.max_pos ? (size_t)length : (size_t)a.m.c.max_pos, B = (size_t)probes;
  int32_t *ids = malloc(B * T * sizeof *ids), *tg = malloc(B * T * sizeof *tg);
  for (size_t i = 0; i < B * T; i++) {
    /* a fixed seed: the probes are the same every run */
    rng_u4 ctr = {{(uint32_t)i, 0, 0x70726f62u /* "prob" */, 0}};
    ids[i] = (int32_t)(rng_philox(ctr, 1, 2).v[0] % (uint32_t)a.m.c.vocab);
    tg[i] = -1;
  }
  if (!rc) rc = model_plan(&a.m, B, T, e);
  if (!rc) rc = model_plan(&b.m, B, T, e);
  double worst = 0, scale = 0;
  if (!rc) {
    model_forward(&a.m, ids, tg, B, T);
    model_forward(&b.m, ids, tg, B, T);
    size_t n = B * T * (size_t)a.m.c.vocab;
    for (size_t i = 0; i < n; i++) {
      double d = fabs((double)a.m.logits[i] - b.m.logits[i]);
      if (d > worst) worst = d;
      if (fabs(a.m.logits[i]) > scale) scale = fabs(a.m.logits[i]);
    }
    double rel = scale > 0 ? worst / scale : worst;
    if (as_json)
      printf("{\"equivalent\":%s,\"max_abs_diff\":%.9g,\"max_rel_diff\":%.9g,\"probes\":%zu,\"length\":%zu}\n",
             rel <= tol ? "true" : "false", worst, rel, B, T);
    else
      printf("%s vs %s: largest logit difference %.3g (%.3g of the largest logit) over %zu x %zu tokens: %s\n", a_path,
             b_path, worst, rel, B, T, rel <= tol ? "equivalent" : "NOT equivalent");
    if (rel > tol) rc = mpu_fail(e, MPU_EVERIFY, "%s and %s differ by %.3g (tolerance %.3g)", a_path, b_path, rel, tol);
  }
  free(ids);
  free(tg);
  engine_close(&a);
  engine_close(&b);
  return rc;
}

int main(int argc, char **argv) {
  cli_init("mpu-verify", argc, argv);
  enum { OPT_EQUIV = OPT_PROGRAM, OPT_PROBES, OPT_LENGTH, OPT_TOL, OPT_COPY };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS, {"json", no_argument, 0, OPT_JSON},
                                           {"parents", required_argument, 0, 'p'},
                                           {"equivalent", no_argument, 0, OPT_EQUIV},
                                           {"probes", required_argument, 0, OPT_PROBES},
                                           {"length", required_argument, 0, OPT_LENGTH},
                                           {"tolerance", required_argument, 0, OPT_TOL},
                                           {"copy", required_argument, 0, OPT_COPY}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  int as_json = 0, equiv = 0, opt;
  long long probes = 8, length = 32, copy = 0;
  double tol = 1e-4;
  const char *parent_paths[argc]; /* at most one per argument */
  size_t npar = 0;
  while ((opt = getopt_long(argc, argv, "hVqp:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_JSON: as_json = 1; break;
    case 'p': parent_paths[npar++] = optarg; break;
    case OPT_EQUIV: equiv = 1; break;
    case OPT_PROBES:
      if (cli_parse_int(optarg, 1, 4096, &probes)) return cli_usage_error("--probes: '%s' is not a count", optarg);
      break;
    case OPT_LENGTH:
      if (cli_parse_int(optarg, 1, 1 << 20, &length)) return cli_usage_error("--length: '%s' is not a count", optarg);
      break;
    case OPT_TOL: {
      char *end;
      tol = strtod(optarg, &end);
      if (end == optarg || *end || !(tol >= 0)) return cli_usage_error("--tolerance: '%s' is not a number", optarg);
      break;
    }
    case OPT_COPY:
      if (cli_parse_int(optarg, 1, 1024, &copy)) return cli_usage_error("--copy: '%s' is not a copy number", optarg);
      break;
    default: return cli_usage_error("bad option");
    }
  }
  if (equiv) {
    if (argc - optind != 2) return cli_usage_error("--equivalent needs two models, A and B");
    mpu_err e = {0};
    int rc = equivalent(argv[optind], argv[optind + 1], (int)probes, (int)length, tol, (int)copy, as_json, &e);
    return rc ? cli_report(&e) : 0;
  }
  int worst = 0;
  /* Parents first: each is verified in full before anything is compared to it. */
  parent_info *pars = calloc(npar + 1, sizeof *pars);
  for (size_t k = 0; k < npar; k++) {
    mpu_err e = {0};
    ms_reader in;
    pars[k].path = parent_paths[k];
    if (verify_one(parent_paths[k], &in, NULL, c.progress, &e) == 0) {
      snprintf(pars[k].stream_id, 33, "%s", mpuc_reader_stream_id(in.r));
      snprintf(pars[k].header_digest, 33, "%s", mpuc_reader_header_digest(in.r));
      snprintf(pars[k].content_digest, 33, "%s", mpuc_reader_content_digest(in.r));
      pars[k].ok = 1;
    } else {
      cli_msg("parent %s", e.msg);
      if (e.status > worst) worst = e.status;
    }
    ms_reader_close(&in);
  }
  if (worst) {
    free(pars);
    return worst;
  }

  int nfiles = argc - optind;
  for (int i = 0; i < (nfiles ? nfiles : 1); i++) {
    const char *path = nfiles ? argv[optind + i] : NULL;
    const char *name = cli_input_name(path);
    mpu_err e = {0};
    ms_reader in;
    json_t *trailer = NULL;
    json_t *report = json_pack("{s:s, s:b}", "file", name, "json", as_json);
    int rc = verify_one(path, &in, &trailer, c.progress, &e);
    if (!rc && npar) rc = check_links(name, &in, trailer, pars, npar, c.quiet, report, &e);
    json_object_del(report, "json");
    if (as_json) {
      json_object_set_new(report, "ok", json_boolean(!rc));
      if (rc) json_object_set_new(report, "error", json_string(e.msg));
      if (in.r && in.header) {
        json_object_set_new(report, "stream_id", json_string(mpuc_reader_stream_id(in.r)));
        if (!rc) {
          json_object_set_new(report, "content_digest", json_pack("{s:s}", "xxh3_128", mpuc_reader_content_digest(in.r)));
          json_object_set_new(report, "stream_digest", json_pack("{s:s}", "xxh3_128", mpuc_reader_stream_digest(in.r)));
          json_object_set_new(report, "counts", json_deep_copy(json_object_get(trailer, "counts")));
        }
      }
      char *s = json_canonical(report);
      printf("%s\n", s);
      free(s);
    } else if (!rc && !c.quiet) {
      json_t *counts = json_object_get(trailer, "counts");
      long long nt = (long long)json_integer_value(json_object_get(counts, "tensors"));
      long long nb = (long long)json_integer_value(json_object_get(counts, "blobs"));
      long long nc = (long long)json_integer_value(json_object_get(in.header, "copies"));
      printf("%s: ok (%lld tensor%s, %lld blob%s, %lld cop%s; content xxh3-128 %s)\n", name, nt, nt == 1 ? "" : "s",
             nb, nb == 1 ? "" : "s", nc, nc == 1 ? "y" : "ies", mpuc_reader_content_digest(in.r));
    }
    if (rc) {
      if (!as_json) printf("%s: FAILED\n", name);
      cli_report(&e);
      if (rc > worst) worst = rc;
    }
    fflush(stdout);
    json_decref(report);
    if (trailer) json_decref(trailer);
    ms_reader_close(&in);
  }
  free(pars);
  return worst;
}
