/*
 * mpu-invert -- MPU's Post-Process, first half: the update of each returned
 * copy in original coordinates, Delta_k = T_k^-1(theta_after,k - theta_pub,k).
 *
 * The published copies are regenerated from the model and the key, a layer
 * group at a time, so the server need not keep them.  A returned copy is
 * accepted only if it descends from exactly those bytes: its round record
 * commits to this model under this key, its parent is the stream this key
 * makes for its copy number, and the content it read (recorded in its trailer)
 * is the content regenerated here.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gpu.h"
#include "jsonx.h"
#include "prov.h"
#include "protocol.h"

static void help(void) {
  printf("Usage: mpu invert --key FILE --onto MODEL [OPTION]... COPY...\n"
         "Compute each returned copy's update in the model's own coordinates and write\n"
         "the M updates as one multi-copy stream (for 'mpu denoise').  COPY... are the M\n"
         "single-copy streams the client returned (any order), or one multi-copy stream.\n\n"
         "Options:\n"
         "      --key FILE       the server key that perturbed MODEL\n"
         "      --onto MODEL     the model the copies were made from\n"
         "      --base BASE      the base model, if perturb was given one\n"
         "      --alphas LIST    the alphas, if perturb was given a list\n" CLI_DEVICE_HELP CLI_OUTPUT_HELP CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 a copy does not descend from MODEL under this key (another\n"
         "key, round or model), or an input failed verification; 2 usage or I/O error.\n");
}

/* The next tensor entry of a stream, blobs skipped (they are still verified). */
static int next_tensor(ms_reader *r, const mpuc_entry **en, mpu_err *e) {
  for (;;) {
    int more = ms_next_entry(r, en, e);
    if (more <= 0 || (*en)->kind == MPUC_KIND_TENSOR) return more;
  }
}

/* Whether a header lists (id, digest) among its parents. */
static int has_parent(json_t *header, const char *id, const char *digest) {
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(header, "parents"), i, p) {
    const char *pid = json_string_value(json_object_get(p, "stream_id"));
    const char *pd = json_string_value(json_object_get(json_object_get(p, "header_digest"), "xxh3_128"));
    if (pid && pd && !strcmp(pid, id) && !strcmp(pd, digest)) return 1;
  }
  return 0;
}

static const char *verified_content(json_t *trailer, const char *id) {
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(trailer, "parents_verified"), i, p) {
    const char *pid = json_string_value(json_object_get(p, "stream_id"));
    if (pid && !strcmp(pid, id)) return json_string_value(json_object_get(json_object_get(p, "content_digest"), "xxh3_128"));
  }
  return NULL;
}

static int same_shapes(json_t *a, json_t *b) {
  if (json_array_size(a) != json_array_size(b)) return 0;
  for (size_t i = 0; i < json_array_size(a); i++)
    if (!json_equal(json_object_get(json_array_get(a, i), "name"), json_object_get(json_array_get(b, i), "name")) ||
        !json_equal(json_object_get(json_array_get(a, i), "shape"), json_object_get(json_array_get(b, i), "shape")))
      return 0;
  return 1;
}

int main(int argc, char **argv) {
  cli_init("mpu-invert", argc, argv);
  enum { OPT_KEY = OPT_PROGRAM, OPT_ONTO, OPT_BASE, OPT_ALPHAS };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS, CLI_OUTPUT_OPTIONS, CLI_DEVICE_OPTION, {"key", required_argument, 0, OPT_KEY},
                                           {"onto", required_argument, 0, OPT_ONTO}, {"base", required_argument, 0, OPT_BASE},
                                           {"alphas", required_argument, 0, OPT_ALPHAS}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  int device = GPU_DEVICE_AUTO;
  const char *key_path = NULL, *model_path = NULL, *base_path = NULL, *alphas = NULL;
  int opt;
  while ((opt = getopt_long(argc, argv, "hVqo:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_DEVICE:
      if ((device = gpu_parse_device(optarg)) < 0) return cli_usage_error("--device: '%s' is not auto, cpu or cuda", optarg);
      break;
    case OPT_KEY: key_path = optarg; break;
    case OPT_ONTO: model_path = optarg; break;
    case OPT_BASE: base_path = optarg; break;
    case OPT_ALPHAS: alphas = optarg; break;
    default: return cli_usage_error("bad option");
    }
  }
  if (!key_path || !model_path) return cli_usage_error("--key FILE and --onto MODEL are required");
  int ncopy = argc - optind;
  if (ncopy < 1) return cli_usage_error("no COPY given");
  if (ncopy > MAX_PERTURB_COPIES) return cli_usage_error("at most %d copies", MAX_PERTURB_COPIES);

  mpu_err e = {0};
  gpu_ctx *gpu = NULL; /* NULL: the CPU */
  if (gpu_open(device, &gpu, &e)) return cli_report(&e);
  if (gpu && !c.quiet && c.progress == 1) cli_msg("computing on %s", gpu_name(gpu));
  server_key key;
  char warning[300];
  if (key_load(&key, key_path, warning, sizeof warning, &e)) return cli_report(&e);
  if (warning[0] && !c.quiet) cli_msg("warning: %s", warning);
  ms_reader model = {0}, base = {0}, cr[MAX_PERTURB_COPIES];
  memset(cr, 0, sizeof cr);
  round_params rp[MAX_PERTURB_COPIES];
  int rc = ms_reader_open(&model, model_path, &e);
  for (int i = 0; !rc && i < ncopy; i++) {
    rc = ms_reader_open(&cr[i], argv[optind + i], &e);
    if (!rc) rc = round_record_parse(cr[i].header, &rp[i], cr[i].name, &e);
    if (!rc && i && !round_same(&rp[0], &rp[i]))
      rc = mpu_fail(&e, MPU_EVERIFY, "%s and %s come from different rounds or models", cr[0].name, cr[i].name);
  }
  /* Which copy each input stream holds: M single copies, or one stream of all M. */
  int M = rc ? 0 : rp[0].copies, multi = 0, of[MAX_PERTURB_COPIES];
  if (!rc) {
    multi = ncopy == 1 && json_integer_value(json_object_get(cr[0].header, "copies")) == M;
    if (!multi) {
      int seen[MAX_PERTURB_COPIES + 1] = {0};
      if (ncopy != M) rc = mpu_fail(&e, MPU_EUSAGE, "the round has %d copies; %d given", M, ncopy);
      for (int i = 0; !rc && i < ncopy; i++) {
        int k = rp[i].copy;
        if (k < 1 || json_integer_value(json_object_get(cr[i].header, "copies")) != 1)
          rc = mpu_fail(&e, MPU_EUSAGE, "%s is not a single copy (split the round's stream first)", cr[i].name);
        else if (seen[k]++)
          rc = mpu_fail(&e, MPU_EUSAGE, "copy %d is given twice", k);
        else
          of[k - 1] = i;
      }
    }
  }
  for (int i = 0; !rc && i < ncopy; i++)
    if (!same_shapes(json_object_get(cr[i].header, "tensors"), json_object_get(model.header, "tensors")))
      rc = mpu_fail(&e, MPU_EVERIFY, "%s does not have MODEL's tensors (a tensor is missing, added or reshaped)", cr[i].name);
  round_params p = rc ? (round_params){0} : rp[0];
  p.copy = 0;
  if (!rc && p.alphas_mode == ALPHAS_LIST) {
    if (!alphas) rc = mpu_fail(&e, MPU_EUSAGE, "the round used a list of alphas; give it with --alphas");
    int n = 0;
    for (const char *s = alphas; !rc && s && *s && n < MAX_PERTURB_COPIES; n++) {
      char *end;
      p.alphas[n] = strtod(s, &end);
      s = *end == ',' ? end + 1 : end;
    }
    if (!rc && n != M) rc = mpu_fail(&e, MPU_EUSAGE, "--alphas gives %d values for %d copies", n, M);
  }
  if (!rc && p.has_base) {
    if (!base_path) rc = mpu_fail(&e, MPU_EUSAGE, "the round was perturbed with --base; give it again");
    else rc = ms_reader_open(&base, base_path, &e);
    if (!rc) {
      char ident[66], commit[65];
      model_identity(ident, mpuc_reader_stream_id(base.r), mpuc_reader_header_digest(base.r));
      key_commit(&key, "base", ident, commit);
      if (strcmp(commit, p.base_commit)) rc = mpu_fail(&e, MPU_EVERIFY, "--base %s is not the base the round used", base_path);
    }
  }
  perturber pt = {0};
  char expected_model[65];
  if (!rc) {
    snprintf(expected_model, sizeof expected_model, "%s", p.model_commit);
    rc = perturber_init(&pt, &key, model.header, mpuc_reader_stream_id(model.r), mpuc_reader_header_digest(model.r), &p, &e);
    pt.gpu = gpu;
  }
  if (!rc && strcmp(pt.p.model_commit, expected_model))
    rc = mpu_fail(&e, MPU_EVERIFY, "%s was not made from %s with this key (another key or model)", cr[0].name, model.name);

  /* The streams this key makes: perturb's, and split's for each copy. */
  char pid[33], phd[33], sid[MAX_PERTURB_COPIES][33], shd[MAX_PERTURB_COPIES][33];
  json_t *ph = rc ? NULL : perturb_header(model.header, &pt.p);
  if (ph) rc = header_ids(ph, pid, phd, &e);
  for (int k = 0; !rc && !multi && k < M; k++) {
    json_t *sh = split_header(ph, pid, phd, k + 1);
    rc = header_ids(sh, sid[k], shd[k], &e);
    json_decref(sh);
  }
  /* Each returned stream must be that stream, or name it as its parent; a
   * single copy may also descend from perturb's stream of every copy (one
   * copy taken out of it, e.g. `mpu unlearn --copy K`). */
  int is_it[MAX_PERTURB_COPIES] = {0}, via_all[MAX_PERTURB_COPIES] = {0}, any_via_all = 0;
  for (int k = 0; !rc && k < (multi ? 1 : M); k++) {
    ms_reader *r = &cr[multi ? 0 : of[k]];
    const char *want_id = multi ? pid : sid[k], *want_hd = multi ? phd : shd[k];
    is_it[k] = !strcmp(mpuc_reader_stream_id(r->r), want_id) && !strcmp(mpuc_reader_header_digest(r->r), want_hd);
    if (!is_it[k] && !has_parent(r->header, want_id, want_hd)) {
      if (!multi && has_parent(r->header, pid, phd)) via_all[k] = any_via_all = 1;
      else
        rc = mpu_fail(&e, MPU_EVERIFY, "%s does not descend from copy %d as this key makes it for round %llu", r->name,
                      multi ? 0 : k + 1, (unsigned long long)p.round);
    }
  }

  /* The update stream. */
  ms_writer w = {0};
  if (!rc) {
    json_t *h = prov_header("invert", NULL);
    prov_copy_model(h, model.header);
    json_object_set_new(h, "copies", json_integer(M));
    json_array_append_new(json_object_get(h, "parents"), prov_parent(&model));
    for (int i = 0; i < ncopy; i++) json_array_append_new(json_object_get(h, "parents"), prov_parent(&cr[i]));
    json_t *listing = json_deep_copy(json_object_get(model.header, "tensors")), *t;
    size_t i;
    json_array_foreach(listing, i, t) json_object_set_new(t, "dtype", json_string("F32"));
    json_object_set_new(h, "tensors", listing);
    json_object_set_new(h, "mpu", round_record(&p));
    char *hj = json_canonical(h);
    json_decref(h);
    rc = ms_writer_open(&w, c.output, &c.enc, hj, &e);
    free(hj);
  }
  /* Content digests of the streams regenerated, to compare with what each copy read. */
  mpuc_digest *dg[MAX_PERTURB_COPIES] = {0}, *dg_all = NULL; /* dg_all: perturb's, for via_all copies */
  for (int k = 0; !rc && k < (multi ? 1 : M); k++) dg[k] = mpuc_digest_create(multi ? phd : shd[k]);
  if (!rc && any_via_all) dg_all = mpuc_digest_create(phd);

  tensor_group g = {0}, bg = {0};
  blob_item *blobs = NULL;
  size_t nblobs = 0, cap = 0;
  float *pub[MAX_PERTURB_COPIES] = {0}, *ret[MAX_PERTURB_COPIES] = {0}, *delta[MAX_PERTURB_COPIES] = {0};
  uint8_t *raw = NULL;
  size_t raw_cap = 0;
  int first = 1, more = 0;
  ms_reader_progress(&model, c.progress, "inverting");
  while (!rc && (more = group_read(&model, &g, first ? &blobs : NULL, &nblobs, &e)) == 1) {
    if (first) {
      for (size_t b = 0; b < nblobs; b++) {
        mpuc_entry be = {.name = blobs[b].name, .name_len = strlen(blobs[b].name), .kind = MPUC_KIND_BLOB,
                         .dtype = MPUC_DT_U8, .ndim = 1, .dims = {blobs[b].size}, .raw_size = blobs[b].size};
        hash_bytes(be.xxh3, blobs[b].data, blobs[b].size);
        for (int k = 0; k < (multi ? 1 : M); k++) mpuc_digest_add(dg[k], &be);
        if (dg_all) mpuc_digest_add(dg_all, &be);
      }
      first = 0;
    }
    if (p.has_base && (group_read(&base, &bg, NULL, NULL, &e) != 1 || bg.n != g.n)) {
      if (!e.status) mpu_fail(&e, MPU_EUSAGE, "--base %s ends or differs at %s", base_path, g.t[0].name);
      rc = e.status;
      break;
    }
    double sigma = group_sigma(&g, p.has_base ? &bg : NULL, p.kappa, p.scope);
    for (size_t gi = 0; !rc && gi < g.n; gi++) {
      group_tensor *t = &g.t[gi];
      if (t->elems > cap || !pub[0]) {
        for (int k = 0; k < M; k++) {
          free(pub[k]), free(ret[k]), free(delta[k]);
          pub[k] = malloc((t->elems ? t->elems : 1) * sizeof(float));
          ret[k] = malloc((t->elems ? t->elems : 1) * sizeof(float));
          delta[k] = malloc((t->elems ? t->elems : 1) * sizeof(float));
          if (!pub[k] || !ret[k] || !delta[k]) rc = mpu_fail(&e, MPU_EUSAGE, "out of memory for tensor %s", t->name);
        }
        cap = t->elems;
        if (rc) break;
      }
      if (!t->f32) {
        rc = mpu_fail(&e, MPU_EUSAGE, "tensor %s is %s; updates are computed on float tensors", t->name,
                      mpuc_dtype_name(t->en.dtype));
        break;
      }
      /* the returned tensors, copy by copy (a shared entry stands for all) */
      int shared_in = 0;
      for (int k = 0; !rc && k < M; k++) {
        ms_reader *r = &cr[multi ? 0 : of[k]];
        const mpuc_entry *en;
        if (shared_in) {
          memcpy(ret[k], ret[0], t->elems * sizeof(float));
          continue;
        }
        int m = next_tensor(r, &en, &e);
        if (m < 0) {
          rc = e.status;
          break;
        }
        char name[MPUC_MAX_NAME + 1];
        if (m == 0 || strcmp(ms_entry_name(en, name, sizeof name), t->name)) {
          rc = mpu_fail(&e, MPU_EVERIFY, "%s: expected tensor %s", r->name, t->name);
          break;
        }
        if (!is_float_dtype(en->dtype)) {
          rc = mpu_fail(&e, MPU_EVERIFY, "%s: tensor %s is %s", r->name, t->name, mpuc_dtype_name(en->dtype));
          break;
        }
        if (en->raw_size > raw_cap) {
          free(raw);
          raw = malloc(raw_cap = en->raw_size);
        }
        int edt = en->dtype;
        shared_in = multi && en->copy == MPUC_COPY_SHARED;
        if ((rc = ms_read_entry(r, raw, &e))) break;
        to_float(ret[k], raw, t->elems, edt);
      }
      if (rc) break;
      /* theta_pub for every copy and the updates (on the device, if any) */
      int perturbed = tensor_perturbed(t, p.scope), dt = perturbed && !p.keep_dtype ? MPUC_DT_F32 : t->en.dtype;
      if (perturbed) {
        if ((rc = invert_tensor(&pt, t, (float)sigma, ret, pub, delta, &e))) break;
      } else {
        for (int k = 0; k < M; k++) {
          memcpy(pub[k], t->f32, t->elems * sizeof(float));
          for (size_t j = 0; j < t->elems; j++) delta[k][j] = ret[k][j] - pub[k][j];
        }
      }
      /* the entries of the regenerated streams */
      mpuc_entry de = t->en;
      de.dtype = dt;
      mpuc_tensor_bytes(dt, de.ndim, de.dims, &de.raw_size);
      for (int k = 0; k < M; k++) {
        if (multi && !perturbed && k) break; /* one shared entry */
        if (perturbed) hash_tensor_f32(de.xxh3, pub[k], t->elems, dt);
        else hash_bytes(de.xxh3, t->raw, t->en.raw_size);
        if (dg_all && (perturbed || !k)) { /* the entry as perturb's stream has it */
          de.copy = perturbed ? (uint32_t)k : MPUC_COPY_SHARED;
          mpuc_digest_add(dg_all, &de);
        }
        de.copy = multi ? (perturbed ? (uint32_t)k : MPUC_COPY_SHARED) : 0;
        mpuc_digest_add(dg[multi ? 0 : k], &de);
      }
      for (int k = 0; !rc && k < M; k++) rc = write_tensor_f32(&w, t, (uint32_t)k, MPUC_DT_F32, delta[k], &e);
    }
  }
  if (!rc && more < 0) rc = e.status;
  /* Every returned stream ends here, and read exactly what was regenerated. */
  for (int i = 0; !rc && i < ncopy; i++) {
    const mpuc_entry *en;
    int m = next_tensor(&cr[i], &en, &e);
    if (m < 0) rc = e.status;
    else if (m > 0) rc = mpu_fail(&e, MPU_EVERIFY, "%s has more tensors than %s", cr[i].name, model.name);
  }
  char all_hex[33] = "";
  if (dg_all) {
    mpuc_digest_final(dg_all, all_hex);
    dg_all = NULL;
  }
  for (int k = 0; !rc && k < (multi ? 1 : M); k++) {
    char hex[33];
    mpuc_digest_final(dg[k], hex);
    dg[k] = NULL;
    if (via_all[k]) memcpy(hex, all_hex, sizeof hex);
    ms_reader *r = &cr[multi ? 0 : of[k]];
    const char *seen = is_it[k] ? mpuc_reader_content_digest(r->r) : NULL;
    if (!seen) {
      json_t *tr = json_loads(ms_trailer_json(r), 0, NULL);
      const char *v = verified_content(tr, multi || via_all[k] ? pid : sid[k]);
      static char copy_of[33];
      snprintf(copy_of, sizeof copy_of, "%s", v ? v : "");
      json_decref(tr);
      seen = copy_of;
    }
    if (strcmp(seen, hex))
      rc = mpu_fail(&e, MPU_EVERIFY, "%s was not made from the bytes this key produces for copy %d (read %s, expected %s)",
                    r->name, multi ? 0 : k + 1, *seen ? seen : "(nothing recorded)", hex);
  }
  if (!rc) {
    ms_reader *ins[1 + MAX_PERTURB_COPIES];
    ins[0] = &model;
    for (int i = 0; i < ncopy; i++) ins[1 + i] = &cr[i];
    json_t *extra = prov_parents_verified(ins, (size_t)ncopy + 1);
    char *ej = json_canonical(extra);
    json_decref(extra);
    rc = ms_writer_close(&w, ej, &e);
    free(ej);
  }
  if (rc) ms_writer_abort(&w);
  for (int k = 0; k < MAX_PERTURB_COPIES; k++) {
    free(pub[k]), free(ret[k]), free(delta[k]);
    if (dg[k]) {
      char hex[33];
      mpuc_digest_final(dg[k], hex);
    }
  }
  if (dg_all) {
    char hex[33];
    mpuc_digest_final(dg_all, hex); /* frees it */
  }
  free(raw);
  if (ph) json_decref(ph);
  group_free(&g);
  group_free(&bg);
  blobs_free(blobs, nblobs);
  perturber_wipe(&pt);
  key_wipe(&key);
  ms_reader_close(&model);
  if (p.has_base) ms_reader_close(&base);
  for (int i = 0; i < ncopy; i++) ms_reader_close(&cr[i]);
  gpu_close(gpu);
  return rc ? cli_report(&e) : 0;
}
