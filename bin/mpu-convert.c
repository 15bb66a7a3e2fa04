/*
 * mpu-convert -- re-encodes a stream (compression level, byte grouping,
 * chunk size) and can change the dtype of its float tensors.  The output
 * names its input as parent.  Encoding choices never enter the header, so
 * re-encoding alone keeps the model's description; a dtype change does not.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fp.h"
#include "jsonx.h"
#include "llama.h"
#include "mstream.h"
#include "prov.h"

static void help(void) {
  printf("Usage: mpu convert [OPTION]... [STREAM]\n"
         "Re-encode an .mpuc stream (STREAM, or standard input) to standard output.\n\n"
         "Options:\n"
         "      --dtype T        cast F32, F16 and BF16 tensors to f32, bf16 or f16\n"
         "                       (round to nearest even); other tensors pass through\n" CLI_OUTPUT_HELP CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the input failed verification, 2 usage or I/O error.\n");
}

static int is_float(int dt) { return dt == MPUC_DT_F32 || dt == MPUC_DT_F16 || dt == MPUC_DT_BF16; }

static float load(const uint8_t *p, int dt) {
  if (dt == MPUC_DT_F32) {
    float f;
    memcpy(&f, p, 4);
    return f;
  }
  uint16_t h = (uint16_t)(p[0] | p[1] << 8);
  return dt == MPUC_DT_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

static void store(uint8_t *p, int dt, float f) {
  if (dt == MPUC_DT_F32) {
    memcpy(p, &f, 4);
    return;
  }
  uint16_t h = dt == MPUC_DT_BF16 ? f32_to_bf16(f) : f32_to_f16(f);
  p[0] = (uint8_t)h;
  p[1] = (uint8_t)(h >> 8);
}

int main(int argc, char **argv) {
  cli_init("mpu-convert", argc, argv);
  enum { OPT_DTYPE = OPT_PROGRAM };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS, CLI_OUTPUT_OPTIONS,
                                           {"dtype", required_argument, 0, OPT_DTYPE}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  int to = 0, opt;
  while ((opt = getopt_long(argc, argv, "hVqo:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_DTYPE:
      to = !strcmp(optarg, "f32") ? MPUC_DT_F32 : !strcmp(optarg, "bf16") ? MPUC_DT_BF16
         : !strcmp(optarg, "f16") ? MPUC_DT_F16 : 0;
      if (!to) return cli_usage_error("--dtype: '%s' is not f32, bf16 or f16", optarg);
      break;
    default: return cli_usage_error("bad option");
    }
  }
  if (optind < argc - 1) return cli_usage_error("one STREAM at a time");
  mpu_err e = {0};
  ms_reader in;
  ms_writer w = {0};
  int rc = ms_reader_open(&in, optind < argc ? argv[optind] : NULL, &e);
  if (rc) {
    ms_reader_close(&in);
    return cli_report(&e);
  }
  json_t *params = json_object();
  if (to) json_object_set_new(params, "dtype", json_string(mpuc_dtype_name(to)));
  json_t *h = prov_header("convert", params);
  prov_copy_model(h, in.header);
  json_object_set(h, "copies", json_object_get(in.header, "copies"));
  json_array_append_new(json_object_get(h, "parents"), prov_parent(&in));
  json_object_set_new(h, "blobs", json_deep_copy(json_object_get(in.header, "blobs")));
  json_t *listing = json_deep_copy(json_object_get(in.header, "tensors")), *t;
  size_t i;
  json_array_foreach(listing, i, t) {
    if (to && is_float(mpuc_dtype_from_name(json_string_value(json_object_get(t, "dtype")))))
      json_object_set_new(t, "dtype", json_string(mpuc_dtype_name(to)));
  }
  json_object_set_new(h, "tensors", listing);
  json_t *cfg = json_object_get(h, "config");
  if (to && json_is_object(cfg)) json_object_set_new(cfg, "torch_dtype", json_string(torch_dtype_name(to)));
  char *hj = json_canonical(h);
  json_decref(h);
  rc = ms_writer_open(&w, c.output, &c.enc, hj, &e);
  free(hj);
  ms_reader_progress(&in, c.progress, "converting");
  const mpuc_entry *en;
  uint8_t *buf = NULL;
  size_t cap = 0;
  int more = 0;
  while (!rc && (more = ms_next_entry(&in, &en, &e)) == 1) {
    mpuc_entry out = *en;
    int cast = to && en->kind == MPUC_KIND_TENSOR && is_float(en->dtype) && en->dtype != to;
    if (!cast) {
      /* Pass through piece by piece; the input's hash is checked at its end,
       * and a failure there aborts the output before it is complete. */
      rc = ms_write_begin(&w, &out, &e);
      uint8_t piece[1 << 16];
      size_t got;
      while (!rc && !(rc = ms_read(&in, piece, sizeof piece, &got, &e)) && got) rc = ms_write_data(&w, piece, got, &e);
      if (!rc) rc = ms_entry_verify(&in, &e);
      if (!rc) rc = ms_write_end(&w, &e);
      continue;
    }
    size_t n = (size_t)en->raw_size, w_in = mpuc_dtype_bits(en->dtype) / 8, w_out = mpuc_dtype_bits(to) / 8;
    size_t elems = n / w_in, need = n + elems * w_out;
    if (need > cap) {
      free(buf);
      buf = malloc(cap = need);
      if (!buf) {
        rc = mpu_fail(&e, MPU_EUSAGE, "out of memory for a %zu-byte tensor", n);
        break;
      }
    }
    rc = ms_read_entry(&in, buf, &e);
    uint8_t *dst = buf + n;
    for (size_t k = 0; !rc && k < elems; k++) store(dst + k * w_out, to, load(buf + k * w_in, en->dtype));
    out.dtype = to;
    if (!rc) rc = ms_write_entry(&w, &out, dst, &e);
  }
  free(buf);
  if (!rc && more < 0) rc = e.status;
  if (!rc) {
    ms_reader *ins[1] = {&in};
    json_t *extra = prov_parents_verified(ins, 1);
    char *ej = json_canonical(extra);
    json_decref(extra);
    rc = ms_writer_close(&w, ej, &e);
    free(ej);
  }
  if (rc) ms_writer_abort(&w);
  ms_reader_close(&in);
  return rc ? cli_report(&e) : 0;
}
