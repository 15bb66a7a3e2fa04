/*
 * mpu-perturb -- MPU's Pre-Process: M noised, reparameterized copies of a
 * model in one tensor-major stream, a layer group at a time.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gpu.h"
#include "jsonx.h"
#include "protocol.h"

static void help(void) {
  printf("Usage: mpu perturb --key FILE --copies M --kappa K [OPTION]... [MODEL]\n"
         "Write M perturbed copies of MODEL (an .mpuc stream, or standard input) as one\n"
         "stream: copy k is T_k(theta + alpha_k eps0_k), with zero-sum Gaussian noise of\n"
         "sigma = K * RMS per layer group, secret copy scalings alpha_k, and T_k the\n"
         "copy's secret RoPE-plane rotations of the attention heads and permutation of\n"
         "the FFN neurons (spec/protocol.md).  Nothing secret, and no plain digest of\n"
         "MODEL, goes into the output.\n\n"
         "Options:\n"
         "      --key FILE       the server key (mpu keygen)\n"
         "      --copies M       copies, 2..64\n"
         "      --kappa K        noise level (0.01 = the paper's 1%%); 0 for no noise\n"
         "      --round R        round number (default 1); every round's secrets differ\n"
         "      --base BASE      public base model: sigma from the task vector theta - base\n"
         "      --alphas A       secret (default: drawn from the key), paper (1 + (k-1)/(M-1)),\n"
         "                       or a comma-separated list of M values\n"
         "      --scope S        layers (default: the transformer layers) or all (also\n"
         "                       noise embeddings, final norm and head)\n"
         "      --dtype D        f32 (default: copies in fp32, so no noise rounds away) or\n"
         "                       keep (each tensor's dtype; reports how much noise survived)\n" CLI_DEVICE_HELP CLI_OUTPUT_HELP CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 an input failed verification, 2 usage or I/O error.\n");
}

static int parse_alphas(const char *s, round_params *p) {
  if (!strcmp(s, "secret")) p->alphas_mode = ALPHAS_SECRET;
  else if (!strcmp(s, "paper")) p->alphas_mode = ALPHAS_PAPER;
  else {
    p->alphas_mode = ALPHAS_LIST;
    int n = 0;
    const char *c = s;
    while (*c && n < MAX_PERTURB_COPIES) {
      char *end;
      p->alphas[n] = strtod(c, &end);
      if (end == c || !(p->alphas[n] > 0)) return -1;
      n++;
      c = *end == ',' ? end + 1 : end;
      if (*end && *end != ',') return -1;
    }
    return n;
  }
  return 0;
}

int main(int argc, char **argv) {
  cli_init("mpu-perturb", argc, argv);
  enum { OPT_KEY = OPT_PROGRAM, OPT_COPIES, OPT_KAPPA, OPT_ROUND, OPT_BASE, OPT_ALPHAS, OPT_SCOPE, OPT_DTYPE };
  static const struct option longopts[] = {
    CLI_COMMON_OPTIONS, CLI_OUTPUT_OPTIONS, CLI_DEVICE_OPTION, {"key", required_argument, 0, OPT_KEY},
    {"copies", required_argument, 0, OPT_COPIES}, {"kappa", required_argument, 0, OPT_KAPPA},
    {"round", required_argument, 0, OPT_ROUND}, {"base", required_argument, 0, OPT_BASE},
    {"alphas", required_argument, 0, OPT_ALPHAS}, {"scope", required_argument, 0, OPT_SCOPE},
    {"dtype", required_argument, 0, OPT_DTYPE}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  int device = GPU_DEVICE_AUTO;
  round_params p = {.round = 1, .kappa = -1};
  const char *key_path = NULL, *base_path = NULL;
  long long v;
  int nlist = 0, opt;
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
    case OPT_COPIES:
      if (cli_parse_int(optarg, 2, MAX_PERTURB_COPIES, &v)) return cli_usage_error("--copies: '%s' is not in 2..%d", optarg, MAX_PERTURB_COPIES);
      p.copies = (int)v;
      break;
    case OPT_KAPPA: {
      char *end;
      errno = 0;
      p.kappa = strtod(optarg, &end);
      if (end == optarg || *end || errno || !(p.kappa >= 0 && p.kappa <= 100)) return cli_usage_error("--kappa: '%s' is not a noise level", optarg);
      break;
    }
    case OPT_ROUND:
      if (cli_parse_int(optarg, 1, INT64_MAX, &v)) return cli_usage_error("--round: '%s' is not a round number", optarg);
      p.round = (uint64_t)v;
      break;
    case OPT_BASE: base_path = optarg; break;
    case OPT_ALPHAS:
      if ((nlist = parse_alphas(optarg, &p)) < 0) return cli_usage_error("--alphas: '%s' is not secret, paper or a list of positive numbers", optarg);
      break;
    case OPT_SCOPE:
      if (!strcmp(optarg, "layers")) p.scope = SCOPE_LAYERS;
      else if (!strcmp(optarg, "all")) p.scope = SCOPE_ALL;
      else return cli_usage_error("--scope: '%s' is not layers or all", optarg);
      break;
    case OPT_DTYPE:
      if (!strcmp(optarg, "f32")) p.keep_dtype = 0;
      else if (!strcmp(optarg, "keep")) p.keep_dtype = 1;
      else return cli_usage_error("--dtype: '%s' is not f32 or keep", optarg);
      break;
    default: return cli_usage_error("bad option");
    }
  }
  if (!key_path) return cli_usage_error("--key FILE is required");
  if (!p.copies) return cli_usage_error("--copies M is required");
  if (p.kappa < 0) return cli_usage_error("--kappa K is required");
  if (p.alphas_mode == ALPHAS_LIST && nlist != p.copies)
    return cli_usage_error("--alphas: %d values for %d copies", nlist, p.copies);
  if (optind < argc - 1) return cli_usage_error("one MODEL at a time");

  mpu_err e = {0};
  gpu_ctx *gpu = NULL; /* NULL: the CPU */
  if (gpu_open(device, &gpu, &e)) return cli_report(&e);
  if (gpu && !c.quiet && c.progress == 1) cli_msg("computing on %s", gpu_name(gpu));
  server_key key;
  char warning[300];
  if (key_load(&key, key_path, warning, sizeof warning, &e)) return cli_report(&e);
  if (warning[0] && !c.quiet) cli_msg("warning: %s", warning);
  ms_reader in = {0}, base = {0};
  ms_writer w = {0};
  perturber pt = {0};
  tensor_group g = {0}, bg = {0};
  blob_item *blobs = NULL;
  size_t nblobs = 0;
  float *out[MAX_PERTURB_COPIES] = {0}, *clean = NULL;
  int rc = ms_reader_open(&in, optind < argc ? argv[optind] : NULL, &e);
  if (!rc && json_integer_value(json_object_get(in.header, "copies")) != 1)
    rc = mpu_fail(&e, MPU_EUSAGE, "%s already holds several copies; perturb a model", in.name);
  if (!rc && base_path) {
    rc = ms_reader_open(&base, base_path, &e);
    if (!rc && !json_equal(json_object_get(base.header, "tensors"), json_object_get(in.header, "tensors"))) {
      /* names and shapes must match; dtypes may differ */
      json_t *a = json_object_get(in.header, "tensors"), *b = json_object_get(base.header, "tensors");
      int same = json_array_size(a) == json_array_size(b);
      for (size_t i = 0; same && i < json_array_size(a); i++)
        same = json_equal(json_object_get(json_array_get(a, i), "name"), json_object_get(json_array_get(b, i), "name")) &&
               json_equal(json_object_get(json_array_get(a, i), "shape"), json_object_get(json_array_get(b, i), "shape"));
      if (!same) rc = mpu_fail(&e, MPU_EUSAGE, "--base %s does not have MODEL's tensors and shapes", base_path);
    }
    if (!rc) {
      char ident[66];
      model_identity(ident, mpuc_reader_stream_id(base.r), mpuc_reader_header_digest(base.r));
      key_commit(&key, "base", ident, p.base_commit);
      p.has_base = 1;
    }
  }
  if (!rc)
    rc = perturber_init(&pt, &key, in.header, mpuc_reader_stream_id(in.r), mpuc_reader_header_digest(in.r), &p, &e);
  pt.gpu = gpu;
  json_t *h = rc ? NULL : perturb_header(in.header, &pt.p);
  if (h) {
    char *hj = json_canonical(h);
    json_decref(h);
    rc = ms_writer_open(&w, c.output, &c.enc, hj, &e);
    free(hj);
  }
  ms_reader_progress(&in, c.progress, "perturbing");
  size_t max_elems = 0;
  double lost = 0, kept = 0, intended_ss = 0, effective_ss = 0;
  int first = 1, more;
  while (!rc && (more = group_read(&in, &g, first ? &blobs : NULL, &nblobs, &e)) == 1) {
    if (first) { /* the blobs precede every tensor: pass them on now */
      for (size_t b = 0; !rc && b < nblobs; b++) {
        mpuc_entry en = {.name = blobs[b].name, .name_len = strlen(blobs[b].name), .kind = MPUC_KIND_BLOB,
                         .raw_size = blobs[b].size};
        rc = ms_write_entry(&w, &en, blobs[b].data, &e);
      }
      first = 0;
    }
    if (base_path) {
      int bm = group_read(&base, &bg, NULL, NULL, &e);
      if (bm != 1 || bg.n != g.n) {
        if (!e.status) mpu_fail(&e, MPU_EUSAGE, "--base %s ends or differs at %s", base_path, g.t[0].name);
        rc = e.status;
        break;
      }
    }
    double sigma = group_sigma(&g, base_path ? &bg : NULL, p.kappa, p.scope);
    for (size_t i = 0; !rc && i < g.n; i++) {
      group_tensor *t = &g.t[i];
      if (!tensor_perturbed(t, p.scope)) {
        rc = write_tensor_raw(&w, t, MPUC_COPY_SHARED, &e);
        continue;
      }
      if (t->elems > max_elems) {
        for (int k = 0; k < p.copies; k++) {
          free(out[k]);
          out[k] = malloc(t->elems * sizeof(float) + 4);
        }
        free(clean);
        clean = malloc(t->elems * sizeof(float) + 4);
        max_elems = t->elems;
      }
      if ((rc = perturb_tensor_on(&pt, t, (float)sigma, out, &e))) break;
      int dt = p.keep_dtype ? t->en.dtype : MPUC_DT_F32;
      for (int k = 0; !rc && k < p.copies; k++) {
        if (p.keep_dtype && dt != MPUC_DT_F32) {
          /* How much of the noise survives rounding to the tensor's dtype:
           * compare with the same copy made without noise. */
          memcpy(clean, t->f32, t->elems * sizeof(float));
          reparam_tensor(&pt, t, k, clean);
          for (size_t j = 0; j < t->elems; j++) {
            uint8_t a[4], b[4];
            from_float(a, &out[k][j], 1, dt);
            from_float(b, &clean[j], 1, dt);
            if (!memcmp(a, b, 2)) lost++;
            kept++;
            double n = (double)pt.alpha_f[k] * sigma;
            intended_ss += n * n;
            double d = (double)out[k][j] - (double)clean[j];
            effective_ss += d * d;
          }
        }
        rc = write_tensor_f32(&w, t, (uint32_t)k, dt, out[k], &e);
      }
    }
  }
  if (!rc && more < 0) rc = e.status;
  if (!rc) {
    char commit[65];
    key_commit(&key, "model-content", mpuc_reader_content_digest(in.r), commit);
    json_t *pv = json_pack("[{s:s}]", "commitment", commit);
    json_t *extra = json_pack("{s:o}", "parents_verified", pv);
    char *ej = json_canonical(extra);
    json_decref(extra);
    rc = ms_writer_close(&w, ej, &e);
    free(ej);
  }
  if (rc) ms_writer_abort(&w);
  if (!rc && !c.quiet && kept > 0)
    cli_msg("with --dtype keep, %.1f%% of the noised elements rounded back to their noise-free value; "
            "the noise that survived has %.3f of its intended RMS",
            100.0 * lost / kept, intended_ss > 0 ? sqrt(effective_ss / intended_ss) : 0.0);
  for (int k = 0; k < MAX_PERTURB_COPIES; k++) free(out[k]);
  free(clean);
  group_free(&g);
  group_free(&bg);
  blobs_free(blobs, nblobs);
  perturber_wipe(&pt);
  key_wipe(&key);
  ms_reader_close(&in);
  if (base_path) ms_reader_close(&base);
  gpu_close(gpu);
  return rc ? cli_report(&e) : 0;
}
