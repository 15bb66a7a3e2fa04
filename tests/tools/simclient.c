/*
 * simclient -- a client that knows the server's secrets, for tests only.
 *
 *   simclient --key K --onto MODEL [--update S] [--aligned] [--drop NAME] COPY > OUT
 *       --update S   returns COPY + T_k(S * theta): an update of S times the
 *                    model in original coordinates, mapped into the copy's
 *       --aligned    returns T_k^-1(COPY) = theta + alpha_k eps0_k (the copy
 *                    undone), for measuring the noise
 *       --drop NAME  leaves tensor NAME out (a malformed return)
 *   simclient --key K --onto MODEL --secrets COPY
 *       prints the round's derived secrets as JSON (round key, Philox keys,
 *       alphas) and the model's plain identifiers, to search client streams for
 *
 * The output descends from COPY (parent and verified digest), as an
 * unlearning stage's would.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "jsonx.h"
#include "prov.h"
#include "protocol.h"

static int next_tensor(ms_reader *r, const mpuc_entry **en, mpu_err *e) {
  for (;;) {
    int more = ms_next_entry(r, en, e);
    if (more <= 0 || (*en)->kind == MPUC_KIND_TENSOR) return more;
  }
}

/* A test fixture that plays a client, often on bad input it is meant to
 * refuse: its error paths return straight from main and leave the process's
 * memory to exit, so LeakSanitizer (make test SAN=1) would turn every refusal
 * into a failure.  The programs under test keep leak checking. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }

int main(int argc, char **argv) {
  cli_init("simclient", argc, argv);
  const char *key_path = NULL, *model_path = NULL, *copy_path = NULL, *drop = NULL;
  double update = 0;
  int aligned = 0, secrets = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--key") && i + 1 < argc) key_path = argv[++i];
    else if (!strcmp(argv[i], "--onto") && i + 1 < argc) model_path = argv[++i];
    else if (!strcmp(argv[i], "--update") && i + 1 < argc) update = atof(argv[++i]);
    else if (!strcmp(argv[i], "--drop") && i + 1 < argc) drop = argv[++i];
    else if (!strcmp(argv[i], "--aligned")) aligned = 1;
    else if (!strcmp(argv[i], "--secrets")) secrets = 1;
    else copy_path = argv[i];
  }
  if (!key_path || !model_path || !copy_path) {
    fprintf(stderr, "usage: simclient --key K --onto MODEL [--update S|--aligned|--drop NAME|--secrets] COPY\n");
    return 2;
  }
  mpu_err e = {0};
  server_key key;
  char warn[256];
  ms_reader model, copy;
  round_params p;
  perturber pt;
  if (key_load(&key, key_path, warn, sizeof warn, &e) || ms_reader_open(&model, model_path, &e) ||
      ms_reader_open(&copy, copy_path, &e) || round_record_parse(copy.header, &p, copy.name, &e) ||
      perturber_init(&pt, &key, model.header, mpuc_reader_stream_id(model.r), mpuc_reader_header_digest(model.r), &p, &e))
    return cli_report(&e);
  int k = p.copy ? p.copy - 1 : 0;
  if (secrets) {
    char rk[65];
    sodium_bin2hex(rk, sizeof rk, pt.rs.round_key, sizeof pt.rs.round_key);
    json_t *o = json_pack("{s:s, s:s, s:s, s:[]}", "round_key", rk, "model_stream_id", mpuc_reader_stream_id(model.r),
                          "model_header_digest", mpuc_reader_header_digest(model.r), "philox_keys");
    char mk[65];
    sodium_bin2hex(mk, sizeof mk, key.master, sizeof key.master);
    json_object_set_new(o, "master_key", json_string(mk));
    json_t *al = json_array();
    for (int j = 0; j < p.copies; j++) json_array_append_new(al, json_real(pt.p.alphas[j]));
    json_object_set_new(o, "alphas", al);
    for (int purpose = PURPOSE_NOISE; purpose <= PURPOSE_ALPHA; purpose++)
      for (uint32_t c = 0; c < (uint32_t)p.copies; c++)
        for (uint32_t idx = 0; idx < 4; idx++) {
          uint32_t pk[2];
          round_philox_key(&pt.rs, purpose, c, idx, pk);
          char hex[17];
          snprintf(hex, sizeof hex, "%08x%08x", pk[0], pk[1]);
          json_array_append_new(json_object_get(o, "philox_keys"), json_string(hex));
        }
    /* the model's content digest needs the whole stream */
    tensor_group g = {0};
    while (group_read(&model, &g, NULL, NULL, &e) == 1) {}
    json_object_set_new(o, "model_content_digest", json_string(mpuc_reader_content_digest(model.r)));
    char *s = json_canonical(o);
    printf("%s\n", s);
    return 0;
  }
  json_t *h = prov_header("simclient", json_pack("{s:f, s:b}", "update", update, "aligned", aligned));
  prov_copy_model(h, copy.header);
  json_array_append_new(json_object_get(h, "parents"), prov_parent(&copy));
  json_object_set_new(h, "blobs", json_deep_copy(json_object_get(copy.header, "blobs")));
  json_t *listing = json_array(), *t;
  size_t i;
  json_array_foreach(json_object_get(copy.header, "tensors"), i, t) {
    if (drop && !strcmp(json_string_value(json_object_get(t, "name")), drop)) continue;
    json_t *item = json_deep_copy(t);
    json_object_set_new(item, "dtype", json_string("F32"));
    json_array_append_new(listing, item);
  }
  json_object_set_new(h, "tensors", listing);
  char *hj = json_canonical(h);
  ms_writer w;
  stream_options o = {1, 1, 4u << 20, 0, 0, NULL};
  if (ms_writer_open(&w, NULL, &o, hj, &e)) return cli_report(&e);
  tensor_group g = {0};
  blob_item *blobs = NULL;
  size_t nb = 0;
  int first = 1, rc = 0;
  float *x = NULL;
  uint8_t *raw = NULL;
  size_t cap = 0;
  while (!rc && group_read(&model, &g, first ? &blobs : NULL, &nb, &e) == 1) {
    if (first) {
      /* the copy's blobs, as the copy has them */
      const mpuc_entry *en;
      for (size_t b = 0; b < nb && !rc; b++) {
        mpuc_entry be = {.name = blobs[b].name, .name_len = strlen(blobs[b].name), .kind = MPUC_KIND_BLOB,
                         .raw_size = blobs[b].size};
        rc = ms_write_entry(&w, &be, blobs[b].data, &e);
      }
      (void)en;
      first = 0;
    }
    for (size_t j = 0; !rc && j < g.n; j++) {
      group_tensor *gt = &g.t[j];
      const mpuc_entry *en;
      if (next_tensor(&copy, &en, &e) != 1) return cli_report(&e);
      if (gt->elems > cap) {
        free(x);
        free(raw);
        cap = gt->elems;
        x = malloc(cap * 4);
        raw = malloc(cap * 4);
      }
      if (ms_read_entry(&copy, raw, &e)) return cli_report(&e);
      to_float(x, raw, gt->elems, en->dtype);
      int perturbed = tensor_perturbed(gt, p.scope);
      if (aligned && perturbed) unperturb_tensor(&pt, gt, k, x);
      if (update != 0) {
        float *d = malloc(gt->elems * 4);
        for (size_t q = 0; q < gt->elems; q++) d[q] = (float)update * gt->f32[q];
        if (perturbed) reparam_tensor(&pt, gt, k, d);
        for (size_t q = 0; q < gt->elems; q++) x[q] += d[q];
        free(d);
      }
      if (drop && !strcmp(gt->name, drop)) continue;
      rc = write_tensor_f32(&w, gt, 0, MPUC_DT_F32, x, &e);
    }
  }
  const mpuc_entry *en;
  if (!rc && next_tensor(&copy, &en, &e) != 0) return cli_report(&e);
  ms_reader *ins[1] = {&copy};
  json_t *extra = prov_parents_verified(ins, 1);
  char *ej = json_canonical(extra);
  if (!rc) rc = ms_writer_close(&w, ej, &e);
  return rc ? cli_report(&e) : 0;
}
