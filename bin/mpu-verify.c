/*
 * mpu-verify -- checks streams completely: structure, every record checksum,
 * every chunk checksum, every tensor hash, the trailer's digests and index;
 * with --parents, the provenance links between a stream and its parents;
 * with --chain, every link among the files given (lib/chain.h); with
 * --trust, that a trusted key signed each stream (lib/streamsig.h).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "chain.h"
#include "cli.h"
#include "engine.h"
#include "jsonx.h"
#include "mstream.h"
#include "rng.h"
#include "secret.h"
#include "sign.h"

static void help(void) {
  printf("Usage: mpu verify [OPTION]... [STREAM]...\n"
         "Check .mpuc streams (standard input if none is given) from end to end.\n\n"
         "Options:\n"
         "  -p, --parents FILE   also check the provenance link to parent FILE: that the\n"
         "                       stream names FILE's id and header digest, and that it\n"
         "                       recorded FILE's content digest as it read it (repeat\n"
         "                       for several parents)\n"
         "      --chain          check every link among the streams given: each names\n"
         "                       its parents among them by id and header digest and\n"
         "                       recorded their content digests; parents not given are\n"
         "                       external, but a stream with only some parents given,\n"
         "                       or a file linked to none of the others, fails\n"
         "      --key FILE       the server key: parents named by commitment can then\n"
         "                       be matched and checked too (run on the server only)\n"
         "      --trust FILE     accept only streams signed by a key in FILE (public\n"
         "                       keys, from mpu keygen --sign; repeat for more keys)\n"
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

/* The stream's own links to the given parents (chain_link_check). */
static int check_links(const chain_stream *st, const chain_stream *pars, size_t npar, const server_key *key,
                       int quiet, int as_json, json_t *report, mpu_err *e) {
  const char *path = st->path ? st->path : cli_input_name(NULL);
  json_t *declared = json_object_get(st->header, "parents");
  json_t *links = json_array();
  json_object_set_new(report, "parents", links);
  int failed = 0;
  for (size_t k = 0; k < npar; k++) {
    const chain_stream *p = &pars[k];
    int committed;
    const char *why = chain_link_check(st, p, key, &committed);
    json_t *link = json_pack("{s:s, s:s, s:b}", "file", p->path, "stream_id", p->stream_id, "ok", why == NULL);
    if (why) json_object_set_new(link, "error", json_string(why));
    json_array_append_new(links, link);
    if (why) {
      if (!failed)
        mpu_fail(e, MPU_EVERIFY, "%s: broken provenance: parent %s %s%s", path, p->path, why,
                 committed ? "; it names a parent by keyed commitment, which only --key can check" : "");
      failed = 1;
    } else if (!quiet && !as_json) {
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

/* With --trust: a valid signature by a trusted key, and no invalid one. */
static int check_signature(const chain_stream *st, const char *name, mpu_err *e) {
  const streamsig_result *r = &st->sig;
  size_t i;
  json_t *x;
  json_array_foreach(r->report, i, x) {
    const char *status = json_string_value(json_object_get(x, "status"));
    if (!strncmp(status, "invalid", 7))
      return mpu_fail(e, MPU_EVERIFY, "%s: signature by key %s is %s", name,
                      json_string_value(json_object_get(x, "key_id")) ?: "(none)", status);
  }
  if (!r->count) return mpu_fail(e, MPU_EVERIFY, "%s: not signed (--trust accepts only signed streams)", name);
  if (!r->trusted) {
    char ids[256] = "";
    json_array_foreach(r->report, i, x) {
      size_t n = strlen(ids);
      snprintf(ids + n, sizeof ids - n, "%s%s", n ? ", " : "", json_string_value(json_object_get(x, "key_id")) ?: "?");
    }
    return mpu_fail(e, MPU_EVERIFY, "%s: signed only by keys not trusted (%s)", name, ids);
  }
  return 0;
}

/* "signed by K (trusted)" lines for people. */
static void print_signatures(const chain_stream *st, const char *name) {
  size_t i;
  json_t *x;
  json_array_foreach(st->sig.report, i, x) {
    const char *status = json_string_value(json_object_get(x, "status"));
    printf("%s: signed by key %s (%s)\n", name, json_string_value(json_object_get(x, "key_id")) ?: "?",
           !strcmp(status, "not checked") ? "not checked; give --trust KEY.pub" : status);
  }
}

/* --chain: every link among the streams, then the set as a whole. */
static int check_chain(const chain_stream *st, size_t n, const server_key *key, int quiet, int as_json, mpu_err *e) {
  chain_link *links;
  size_t nl = chain_links(st, n, key, &links);
  json_t *arr = json_array();
  int broken = 0, checked = 0, external = 0, committed = 0;
  for (size_t k = 0; k < nl; k++) {
    const chain_link *L = &links[k];
    json_t *named = json_array_get(json_object_get(st[L->child].header, "parents"), L->named);
    const char *parent = L->parent >= 0 ? st[L->parent].path : NULL;
    static const char *const states[] = {"ok", "broken", "external", "committed"};
    json_t *o = json_pack("{s:s, s:s, s:O}", "child", st[L->child].path, "state", states[L->state], "names", named);
    if (parent) json_object_set_new(o, "parent", json_string(parent));
    if (L->why) json_object_set_new(o, "error", json_string(L->why));
    json_array_append_new(arr, o);
    checked += L->state == LINK_OK;
    external += L->state == LINK_EXTERNAL;
    committed += L->state == LINK_COMMITTED;
    if (L->state == LINK_BROKEN) {
      if (!broken) mpu_fail(e, MPU_EVERIFY, "broken chain: %s: parent %s %s", st[L->child].path, parent, L->why);
      broken = 1;
    }
    if (as_json || quiet) continue;
    const char *id = json_string_value(json_object_get(named, "stream_id"));
    if (L->state == LINK_OK || L->state == LINK_BROKEN)
      printf("%s: parent %s %s\n", st[L->child].path, parent, L->state == LINK_OK ? "ok" : "BROKEN");
    else if (L->state == LINK_EXTERNAL)
      printf("%s: parent %s external (not among the files given)\n", st[L->child].path, id ? id : "?");
    else
      printf("%s: parent committed, not checkable without the server key%s\n", st[L->child].path,
             key ? " (and it commits to none of the files given)" : "");
  }
  char why[1024];
  const char *judged = broken ? NULL : chain_judge(st, n, links, nl, why, sizeof why);
  if (judged) mpu_fail(e, MPU_EVERIFY, "broken chain: %s", judged);
  int ok = !broken && !judged;
  if (as_json) {
    json_t *o = json_pack("{s:{s:b, s:o, s:i, s:i, s:i}}", "chain", "ok", ok, "links", arr, "checked", checked,
                          "external", external, "committed", committed);
    if (!ok) json_object_set_new(json_object_get(o, "chain"), "error", json_string(e->msg));
    char *s = json_canonical(o);
    printf("%s\n", s);
    free(s);
    json_decref(o);
  } else {
    json_decref(arr);
    if (!quiet || !ok)
      printf("chain: %s (%zu files, %d link%s checked, %d external, %d committed)\n", ok ? "ok" : "FAILED", n,
             checked, checked == 1 ? "" : "s", external, committed);
  }
  free(links);
  return ok ? 0 : MPU_EVERIFY;
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
  enum { OPT_EQUIV = OPT_PROGRAM, OPT_PROBES, OPT_LENGTH, OPT_TOL, OPT_COPY, OPT_CHAIN, OPT_KEY, OPT_TRUST };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS, {"json", no_argument, 0, OPT_JSON},
                                           {"parents", required_argument, 0, 'p'},
                                           {"chain", no_argument, 0, OPT_CHAIN},
                                           {"key", required_argument, 0, OPT_KEY},
                                           {"trust", required_argument, 0, OPT_TRUST},
                                           {"equivalent", no_argument, 0, OPT_EQUIV},
                                           {"probes", required_argument, 0, OPT_PROBES},
                                           {"length", required_argument, 0, OPT_LENGTH},
                                           {"tolerance", required_argument, 0, OPT_TOL},
                                           {"copy", required_argument, 0, OPT_COPY}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  int as_json = 0, equiv = 0, chain = 0, opt;
  long long probes = 8, length = 32, copy = 0;
  double tol = 1e-4;
  const char *parent_paths[argc]; /* at most one per argument */
  size_t npar = 0;
  const char *key_path = NULL;
  sign_trust trust = {0};
  while ((opt = getopt_long(argc, argv, "hVqp:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_JSON: as_json = 1; break;
    case 'p': parent_paths[npar++] = optarg; break;
    case OPT_CHAIN: chain = 1; break;
    case OPT_KEY: key_path = optarg; break;
    case OPT_TRUST: {
      mpu_err e = {0};
      if (sign_trust_add_file(&trust, optarg, &e)) return cli_report(&e);
      break;
    }
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
  int nfiles = argc - optind;
  if (chain && nfiles < 1) return cli_usage_error("--chain needs the streams as files");
  if (key_path && !chain && !npar) return cli_usage_error("--key is for checking links (--chain or --parents)");
  server_key key, *keyp = NULL;
  if (key_path) {
    mpu_err e = {0};
    char warning[256];
    if (key_load(&key, key_path, warning, sizeof warning, &e)) return cli_report(&e);
    if (warning[0] && !c.quiet) cli_msg("warning: %s", warning);
    keyp = &key;
  }
  const sign_trust *trusted = trust.n ? &trust : NULL;
  int worst = 0;
  /* Parents first: each is verified in full before anything is compared to it. */
  chain_stream *pars = calloc(npar + 1, sizeof *pars);
  for (size_t k = 0; k < npar; k++)
    if (chain_read(&pars[k], parent_paths[k], NULL, c.progress)) {
      cli_msg("parent %s", pars[k].err.msg);
      if (pars[k].err.status > worst) worst = pars[k].err.status;
    }
  if (worst) {
    for (size_t k = 0; k < npar; k++) chain_stream_free(&pars[k]);
    free(pars);
    if (keyp) key_wipe(keyp);
    return worst;
  }

  size_t nst = nfiles ? (size_t)nfiles : 1;
  chain_stream *st = calloc(nst, sizeof *st);
  for (size_t i = 0; i < nst; i++) {
    const char *path = nfiles ? argv[optind + i] : NULL;
    const char *name = cli_input_name(path);
    chain_stream *s = &st[i];
    json_t *report = json_pack("{s:s}", "file", name);
    int rc = chain_read(s, path, trusted, c.progress);
    mpu_err e = s->err;
    if (!rc && npar) rc = check_links(s, pars, npar, keyp, c.quiet, as_json, report, &e);
    if (!rc && trusted) rc = check_signature(s, name, &e);
    if (as_json) {
      json_object_set_new(report, "ok", json_boolean(!rc));
      if (rc) json_object_set_new(report, "error", json_string(e.msg));
      if (s->stream_id[0]) json_object_set_new(report, "stream_id", json_string(s->stream_id));
      if (s->ok) {
        json_object_set_new(report, "content_digest", json_pack("{s:s}", "xxh3_128", s->content_digest));
        json_object_set_new(report, "stream_digest", json_pack("{s:s}", "xxh3_128", s->stream_digest));
        json_object_set_new(report, "counts", json_deep_copy(json_object_get(s->trailer, "counts")));
        if (s->sig.count) json_object_set(report, "signatures", s->sig.report);
      }
      char *j = json_canonical(report);
      printf("%s\n", j);
      free(j);
    } else if (!rc && !c.quiet) {
      json_t *counts = json_object_get(s->trailer, "counts");
      long long nt = (long long)json_integer_value(json_object_get(counts, "tensors"));
      long long nb = (long long)json_integer_value(json_object_get(counts, "blobs"));
      long long nc = (long long)json_integer_value(json_object_get(s->header, "copies"));
      printf("%s: ok (%lld tensor%s, %lld blob%s, %lld cop%s; content xxh3-128 %s)\n", name, nt, nt == 1 ? "" : "s",
             nb, nb == 1 ? "" : "s", nc, nc == 1 ? "y" : "ies", s->content_digest);
      print_signatures(s, name);
    }
    if (rc) {
      if (!as_json) printf("%s: FAILED\n", name);
      cli_report(&e);
      if (rc > worst) worst = rc;
    }
    fflush(stdout);
    json_decref(report);
  }
  if (chain) {
    mpu_err e = {0};
    for (size_t i = 0; i < nst; i++) st[i].path = cli_input_name(st[i].path);
    if (check_chain(st, nst, keyp, c.quiet, as_json, &e)) {
      cli_report(&e);
      if (MPU_EVERIFY > worst) worst = MPU_EVERIFY;
    }
  }
  for (size_t i = 0; i < nst; i++) chain_stream_free(&st[i]);
  for (size_t k = 0; k < npar; k++) chain_stream_free(&pars[k]);
  free(st);
  free(pars);
  sign_trust_free(&trust);
  if (keyp) key_wipe(keyp);
  return worst;
}
