/*
 * mpu-denoise -- MPU's Post-Process, second half: harmonic denoising of the
 * copies' updates and the server's step,
 *   theta_next = theta + eta * sum_k (Delta_k / alpha_k) / sum_k (1 / alpha_k).
 * Weighting by 1/alpha_k cancels the zero-sum noise to first order; a plain
 * mean (--aggregate mean) does not when the alphas differ.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gpu.h"
#include "jsonx.h"
#include "prov.h"
#include "protocol.h"
#include "reparam.h"

static void help(void) {
  printf("Usage: mpu denoise --key FILE --onto MODEL [OPTION]... [UPDATES]\n"
         "Aggregate the copies' updates (UPDATES, the output of 'mpu invert', or standard\n"
         "input) and apply them to MODEL; write the next model.\n\n"
         "Options:\n"
         "      --key FILE       the server key of the round\n"
         "      --onto MODEL     the model the round started from\n"
         "      --eta X          server step size (default 1)\n"
         "      --aggregate A    harmonic (default: weights 1/alpha_k), mean, or copy:K\n"
         "                       (copy K's update alone: no denoising, for comparison)\n"
         "      --alphas LIST    the alphas, if perturb was given a list\n"
         "      --dtype D        keep (default: MODEL's dtypes) or f32\n" CLI_DEVICE_HELP CLI_OUTPUT_HELP CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the updates are not of MODEL under this key, or an input\n"
         "failed verification; 2 usage or I/O error.\n");
}

static int next_tensor(ms_reader *r, const mpuc_entry **en, mpu_err *e) {
  for (;;) {
    int more = ms_next_entry(r, en, e);
    if (more <= 0 || (*en)->kind == MPUC_KIND_TENSOR) return more;
  }
}

int main(int argc, char **argv) {
  cli_init("mpu-denoise", argc, argv);
  enum { OPT_KEY = OPT_PROGRAM, OPT_ONTO, OPT_ETA, OPT_AGG, OPT_ALPHAS, OPT_DTYPE };
  static const struct option longopts[] = {
    CLI_COMMON_OPTIONS, CLI_OUTPUT_OPTIONS, CLI_DEVICE_OPTION, {"key", required_argument, 0, OPT_KEY}, {"onto", required_argument, 0, OPT_ONTO},
    {"eta", required_argument, 0, OPT_ETA}, {"aggregate", required_argument, 0, OPT_AGG},
    {"alphas", required_argument, 0, OPT_ALPHAS}, {"dtype", required_argument, 0, OPT_DTYPE}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  int device = GPU_DEVICE_AUTO;
  const char *key_path = NULL, *model_path = NULL, *alphas = NULL;
  double eta = 1.0;
  int mean = 0, single = 0, f32 = 0, opt; /* single: 1-based copy whose update is taken alone */
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
    case OPT_ALPHAS: alphas = optarg; break;
    case OPT_ETA: {
      char *end;
      eta = strtod(optarg, &end);
      if (end == optarg || *end || !(eta >= 0 && eta <= 1e6)) return cli_usage_error("--eta: '%s' is not a step size", optarg);
      break;
    }
    case OPT_AGG:
      if (!strcmp(optarg, "harmonic")) mean = single = 0;
      else if (!strcmp(optarg, "mean")) mean = 1, single = 0;
      else if (!strncmp(optarg, "copy:", 5) && atoi(optarg + 5) >= 1 && atoi(optarg + 5) <= MAX_PERTURB_COPIES)
        single = atoi(optarg + 5), mean = 0;
      else return cli_usage_error("--aggregate: '%s' is not harmonic, mean or copy:K", optarg);
      break;
    case OPT_DTYPE:
      if (!strcmp(optarg, "keep")) f32 = 0;
      else if (!strcmp(optarg, "f32")) f32 = 1;
      else return cli_usage_error("--dtype: '%s' is not keep or f32", optarg);
      break;
    default: return cli_usage_error("bad option");
    }
  }
  if (!key_path || !model_path) return cli_usage_error("--key FILE and --onto MODEL are required");
  if (optind < argc - 1) return cli_usage_error("one UPDATES stream (the output of mpu invert)");

  mpu_err e = {0};
  gpu_ctx *gpu = NULL; /* NULL: the CPU */
  if (gpu_open(device, &gpu, &e)) return cli_report(&e);
  if (gpu && !c.quiet && c.progress == 1) cli_msg("computing on %s", gpu_name(gpu));
  server_key key;
  char warning[300];
  if (key_load(&key, key_path, warning, sizeof warning, &e)) return cli_report(&e);
  if (warning[0] && !c.quiet) cli_msg("warning: %s", warning);
  ms_reader model = {0}, up = {0};
  round_params p;
  int rc = ms_reader_open(&model, model_path, &e);
  if (!rc) rc = ms_reader_open(&up, optind < argc ? argv[optind] : NULL, &e);
  if (!rc) rc = round_record_parse(up.header, &p, up.name, &e);
  int M = rc ? 0 : p.copies;
  if (!rc && (json_integer_value(json_object_get(up.header, "copies")) != M || p.copy))
    rc = mpu_fail(&e, MPU_EUSAGE, "%s is not an update stream of all %d copies (the output of mpu invert)", up.name, M);
  /* The updates must be of this model: invert names it as a parent. */
  if (!rc) {
    int found = 0;
    size_t i;
    json_t *par;
    json_array_foreach(json_object_get(up.header, "parents"), i, par) {
      const char *id = json_string_value(json_object_get(par, "stream_id"));
      const char *hd = json_string_value(json_object_get(json_object_get(par, "header_digest"), "xxh3_128"));
      found |= id && hd && !strcmp(id, mpuc_reader_stream_id(model.r)) && !strcmp(hd, mpuc_reader_header_digest(model.r));
    }
    if (!found) rc = mpu_fail(&e, MPU_EVERIFY, "%s are not updates of %s (it is not among their parents)", up.name, model.name);
  }
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
  perturber pt = {0};
  char expected[65];
  snprintf(expected, sizeof expected, "%s", rc ? "" : p.model_commit);
  if (!rc) rc = perturber_init(&pt, &key, model.header, mpuc_reader_stream_id(model.r), mpuc_reader_header_digest(model.r), &p, &e);
  if (!rc && strcmp(pt.p.model_commit, expected))
    rc = mpu_fail(&e, MPU_EVERIFY, "%s belong to a round of another model or key", up.name);
  /* Weights: harmonic w_k = (1/alpha_k) / sum_j (1/alpha_j), 1/M, or one copy's. */
  double w[MAX_PERTURB_COPIES], s0 = 0;
  if (!rc && single > M) rc = mpu_fail(&e, MPU_EUSAGE, "--aggregate copy:%d, but the round has %d copies", single, M);
  for (int k = 0; k < M; k++) s0 += 1.0 / pt.p.alphas[k];
  for (int k = 0; k < M; k++) w[k] = single ? (k + 1 == single) : mean ? 1.0 / M : (1.0 / pt.p.alphas[k]) / s0;
  char agg_name[32];
  if (single) snprintf(agg_name, sizeof agg_name, "copy:%d", single);
  else snprintf(agg_name, sizeof agg_name, "%s", mean ? "mean" : "harmonic");

  ms_writer wr = {0};
  if (!rc) {
    json_t *h = prov_header("denoise", json_pack("{s:f, s:s}", "eta", eta, "aggregate", agg_name));
    prov_copy_model(h, model.header);
    json_array_append_new(json_object_get(h, "parents"), prov_parent(&model));
    json_array_append_new(json_object_get(h, "parents"), prov_parent(&up));
    json_object_set_new(h, "blobs", json_deep_copy(json_object_get(model.header, "blobs")));
    json_t *listing = json_deep_copy(json_object_get(model.header, "tensors")), *t;
    size_t i;
    json_array_foreach(listing, i, t) {
      if (f32 && is_float_dtype(mpuc_dtype_from_name(json_string_value(json_object_get(t, "dtype")))))
        json_object_set_new(t, "dtype", json_string("F32"));
    }
    json_object_set_new(h, "tensors", listing);
    char *hj = json_canonical(h);
    json_decref(h);
    rc = ms_writer_open(&wr, c.output, &c.enc, hj, &e);
    free(hj);
  }
  /* Tensor by tensor: the model's, and the M copies' updates beside it. */
  tensor_group g = {0};
  blob_item *blobs = NULL;
  size_t nblobs = 0, cap = 0;
  float *delta = NULL, *out = NULL;
  uint8_t *raw = NULL;
  int first = 1, more = 0;
  ms_reader_progress(&model, c.progress, "denoising");
  while (!rc && (more = group_read(&model, &g, first ? &blobs : NULL, &nblobs, &e)) == 1) {
    if (first) {
      for (size_t b = 0; !rc && b < nblobs; b++) {
        mpuc_entry en = {.name = blobs[b].name, .name_len = strlen(blobs[b].name), .kind = MPUC_KIND_BLOB,
                         .raw_size = blobs[b].size};
        rc = ms_write_entry(&wr, &en, blobs[b].data, &e);
      }
      first = 0;
    }
    for (size_t gi = 0; !rc && gi < g.n; gi++) {
      group_tensor *t = &g.t[gi];
      if (!t->f32) {
        rc = mpu_fail(&e, MPU_EUSAGE, "tensor %s is %s; only float tensors are updated", t->name, mpuc_dtype_name(t->en.dtype));
        break;
      }
      if (t->elems > cap || !delta) {
        free(delta);
        free(out);
        free(raw);
        cap = t->elems ? t->elems : 1;
        delta = malloc((size_t)M * cap * sizeof(float));
        out = malloc(cap * sizeof(float));
        raw = malloc(cap * sizeof(float));
      }
      for (int k = 0; !rc && k < M; k++) {
        const mpuc_entry *en;
        char name[MPUC_MAX_NAME + 1];
        int m = next_tensor(&up, &en, &e);
        if (m < 0) rc = e.status;
        else if (m == 0 || strcmp(ms_entry_name(en, name, sizeof name), t->name) || en->dtype != MPUC_DT_F32 ||
                 en->raw_size != t->elems * 4)
          rc = mpu_fail(&e, MPU_EVERIFY, "%s: expected the F32 update of tensor %s", up.name, t->name);
        else if (!(rc = ms_read_entry(&up, raw, &e)))
          memcpy(delta + (size_t)k * t->elems, raw, t->elems * sizeof(float));
      }
      if (rc) break;
      size_t n = t->elems;
      if ((rc = aggregate_tensor(gpu, t->f32, delta, n, w, M, eta, out, &e))) break;
      rc = write_tensor_f32(&wr, t, 0, f32 ? MPUC_DT_F32 : t->en.dtype, out, &e);
    }
  }
  if (!rc && more < 0) rc = e.status;
  if (!rc) {
    const mpuc_entry *en;
    int m = next_tensor(&up, &en, &e);
    if (m < 0) rc = e.status;
    else if (m > 0) rc = mpu_fail(&e, MPU_EVERIFY, "%s has more tensors than %s", up.name, model.name);
  }
  if (!rc) {
    ms_reader *ins[2] = {&model, &up};
    json_t *extra = prov_parents_verified(ins, 2);
    char *ej = json_canonical(extra);
    json_decref(extra);
    rc = ms_writer_close(&wr, ej, &e);
    free(ej);
  }
  if (rc) ms_writer_abort(&wr);
  free(delta);
  free(out);
  free(raw);
  group_free(&g);
  blobs_free(blobs, nblobs);
  perturber_wipe(&pt);
  key_wipe(&key);
  ms_reader_close(&model);
  ms_reader_close(&up);
  gpu_close(gpu);
  return rc ? cli_report(&e) : 0;
}
