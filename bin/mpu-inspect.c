/*
 * mpu-inspect -- a stream's header, entries and trailer, for people (a
 * table) or for programs (--json: JSON Lines).  Reads the whole stream and
 * checks every hash on the way, so what it shows is what is there.
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fp.h"
#include "jsonx.h"
#include "mstream.h"

static void help(void) {
  printf("Usage: mpu inspect [OPTION]... [STREAM]\n"
         "Show an .mpuc stream's header, entries and trailer (STREAM, or standard input).\n"
         "Every hash is checked as the stream is read.\n\n"
         "Options:\n"
         "      --json           JSON Lines: a header object, one object per entry, a\n"
         "                       trailer object (copy is 0-based there; -1 = shared)\n"
         "      --stats          also min, max, mean, RMS and NaN/Inf counts of F32, F16\n"
         "                       and BF16 tensors\n" CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the stream failed verification, 2 usage or I/O error.\n");
}

typedef struct {
  double min, max, sum, sumsq;
  uint64_t n, nan, inf;
} stats;

static void stats_add(stats *s, float x) {
  if (isnan(x)) {
    s->nan++;
    return;
  }
  if (isinf(x)) {
    s->inf++;
    return;
  }
  if (!s->n || x < s->min) s->min = x;
  if (!s->n || x > s->max) s->max = x;
  s->sum += x;
  s->sumsq += (double)x * x;
  s->n++;
}

/* Reads the entry's data, accumulating statistics for float dtypes. */
static int entry_stats(ms_reader *in, const mpuc_entry *en, stats *s, mpu_err *e) {
  static uint8_t buf[1 << 20];
  size_t got;
  unsigned w = en->dtype == MPUC_DT_F32 ? 4 : 2;
  while (!ms_read(in, buf, sizeof buf, &got, e) && got) {
    for (size_t i = 0; i + w <= got; i += w) {
      uint32_t u = buf[i] | (uint32_t)buf[i + 1] << 8;
      float x = en->dtype == MPUC_DT_F32 ? fp_from_bits(u | (uint32_t)buf[i + 2] << 16 | (uint32_t)buf[i + 3] << 24)
                : en->dtype == MPUC_DT_BF16 ? bf16_to_f32((uint16_t)u) : f16_to_f32((uint16_t)u);
      stats_add(s, x);
    }
  }
  return e->status ? e->status : ms_entry_verify(in, e);
}

static void shape_str(char *buf, size_t n, const mpuc_entry *en) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (unsigned d = 0; d < en->ndim && k < n; d++)
    k += (size_t)snprintf(buf + k, n - k, "%s%llu", d ? ", " : "", (unsigned long long)en->dims[d]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

static void print_parents(json_t *parents) {
  if (!json_array_size(parents)) {
    printf("parents   (none)\n");
    return;
  }
  size_t i;
  json_t *p;
  json_array_foreach(parents, i, p) {
    const char *id = json_string_value(json_object_get(p, "stream_id"));
    const char *hd = json_string_value(json_object_get(json_object_get(p, "header_digest"), "xxh3_128"));
    char *rest = json_canonical(p);
    if (id && hd) printf("%s stream %s (header %s)\n", i ? "         " : "parents  ", id, hd);
    else printf("%s %s\n", i ? "         " : "parents  ", rest ? rest : "?");
    free(rest);
  }
}

static void print_model(json_t *config) {
  if (!json_is_object(config)) {
    printf("model     (no configuration)\n");
    return;
  }
  json_t *arch = json_array_get(json_object_get(config, "architectures"), 0);
  const char *mt = json_string_value(json_object_get(config, "model_type"));
  printf("model     %s", json_is_string(arch) ? json_string_value(arch) : mt ? mt : "(unknown architecture)");
  static const struct {
    const char *key, *label;
  } fields[] = {{"num_hidden_layers", "layers"}, {"hidden_size", "hidden"}, {"intermediate_size", "ffn"},
                {"num_attention_heads", "heads"}, {"num_key_value_heads", "kv-heads"}, {"vocab_size", "vocab"}};
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    json_t *v = json_object_get(config, fields[i].key);
    if (json_is_integer(v)) printf(", %s %lld", fields[i].label, (long long)json_integer_value(v));
  }
  printf("\n");
}

static int run(ms_reader *in, int as_json, int with_stats, mpu_err *e) {
  json_t *h = in->header;
  size_t hlen;
  const char *hjson = mpuc_reader_header_json(in->r, &hlen);
  unsigned minor = mpuc_reader_format_minor(in->r);
  if (as_json) {
    printf("{\"record\":\"header\",\"format\":\"%d.%u\",\"stream_id\":\"%s\",\"header_digest\":{\"xxh3_128\":\"%s\"},"
           "\"header\":%.*s}\n",
           MPUC_FORMAT_MAJOR, minor, mpuc_reader_stream_id(in->r), mpuc_reader_header_digest(in->r), (int)hlen, hjson);
  } else {
    json_t *stage = json_object_get(h, "stage"), *tool = json_object_get(h, "tool");
    printf("stream    %s  (.mpuc %d.%u, header %s)\n", mpuc_reader_stream_id(in->r), MPUC_FORMAT_MAJOR, minor,
           mpuc_reader_header_digest(in->r));
    printf("stage     %s", json_string_value(json_object_get(stage, "name")));
    if (json_is_object(tool))
      printf(" (%s %s)", json_string_value(json_object_get(tool, "name")), json_string_value(json_object_get(tool, "version")));
    printf("\n");
    char *params = json_canonical(json_object_get(stage, "params"));
    if (params && strcmp(params, "{}") && strcmp(params, "null")) printf("params    %s\n", params);
    free(params);
    print_parents(json_object_get(h, "parents"));
    printf("copies    %lld\n", (long long)json_integer_value(json_object_get(h, "copies")));
    print_model(json_object_get(h, "config"));
    printf("\n%5s  %-6s %4s  %-6s %-20s %12s %12s  %-15s %-32s  %s\n", "#", "kind", "copy", "dtype", "shape", "bytes",
           "stored", "codec", "xxh3-128", "name");
  }
  const mpuc_entry *en;
  int more, idx = 0;
  while ((more = ms_next_entry(in, &en, e)) == 1) {
    stats s = {0};
    int floaty = en->kind == MPUC_KIND_TENSOR &&
                 (en->dtype == MPUC_DT_F32 || en->dtype == MPUC_DT_BF16 || en->dtype == MPUC_DT_F16);
    if (with_stats && floaty ? entry_stats(in, en, &s, e) : ms_entry_verify(in, e)) return e->status;
    char name[MPUC_MAX_NAME + 1], shape[200], hex[33];
    ms_entry_name(en, name, sizeof name);
    shape_str(shape, sizeof shape, en);
    mpuc_hex128(en->xxh3, hex);
    const char *codec = en->codec == MPUC_CODEC_STORE ? "store" : en->filter == MPUC_FILTER_BYTEGROUP ? "zstd+bytegroup" : "zstd";
    idx++;
    if (as_json) {
      json_t *o = json_pack("{s:s, s:i, s:s, s:s, s:I, s:s, s:I, s:I, s:i, s:s, s:I, s:I, s:s}", "record", "entry",
                            "index", idx - 1, "name", name, "kind", en->kind == MPUC_KIND_BLOB ? "blob" : "tensor",
                            "copy", (json_int_t)(en->copy == MPUC_COPY_SHARED ? -1 : (json_int_t)en->copy),
                            "dtype", mpuc_dtype_name(en->dtype), "bytes", (json_int_t)en->raw_size, "stored_bytes",
                            (json_int_t)en->stored_size, "chunks", (int)en->chunks, "codec", codec, "chunk_size",
                            (json_int_t)en->chunk_size, "offset", (json_int_t)en->offset, "xxh3_128", hex);
      json_t *sh = json_array();
      for (unsigned d = 0; d < en->ndim; d++) json_array_append_new(sh, json_integer((json_int_t)en->dims[d]));
      json_object_set_new(o, "shape", sh);
      if (with_stats && floaty)
        json_object_set_new(o, "stats", json_pack("{s:f, s:f, s:f, s:f, s:I, s:I}", "min", s.n ? s.min : 0.0,
                                                  "max", s.n ? s.max : 0.0, "mean", s.n ? s.sum / s.n : 0.0, "rms",
                                                  s.n ? sqrt(s.sumsq / s.n) : 0.0, "nan", (json_int_t)s.nan, "inf",
                                                  (json_int_t)s.inf));
      char *line = json_canonical(o);
      json_decref(o);
      printf("%s\n", line);
      free(line);
    } else {
      char copy[16];
      if (en->kind == MPUC_KIND_BLOB) snprintf(copy, sizeof copy, "-");
      else if (en->copy == MPUC_COPY_SHARED) snprintf(copy, sizeof copy, "all");
      else snprintf(copy, sizeof copy, "%u", en->copy + 1);
      printf("%5d  %-6s %4s  %-6s %-20s %12llu %12llu  %-15s %s  %s\n", idx, en->kind == MPUC_KIND_BLOB ? "blob" : "tensor",
             copy, mpuc_dtype_name(en->dtype), shape, (unsigned long long)en->raw_size,
             (unsigned long long)en->stored_size, codec, hex, name);
      if (with_stats && floaty)
        printf("%5s  min %.6g  max %.6g  mean %.6g  rms %.6g  nan %llu  inf %llu\n", "", s.n ? s.min : 0.0,
               s.n ? s.max : 0.0, s.n ? s.sum / s.n : 0.0, s.n ? sqrt(s.sumsq / s.n) : 0.0,
               (unsigned long long)s.nan, (unsigned long long)s.inf);
    }
    fflush(stdout);
  }
  if (more < 0) return e->status;
  size_t tlen;
  const char *tjson = mpuc_reader_trailer_json(in->r, &tlen);
  if (as_json) {
    printf("{\"record\":\"trailer\",\"content_digest\":{\"xxh3_128\":\"%s\"},\"stream_digest\":{\"xxh3_128\":\"%s\"},"
           "\"stream_bytes\":%llu,\"trailer\":%.*s}\n",
           mpuc_reader_content_digest(in->r), mpuc_reader_stream_digest(in->r),
           (unsigned long long)mpuc_reader_offset(in->r), (int)tlen, tjson);
  } else {
    json_t *t = json_loadb(tjson, tlen, 0, NULL);
    json_t *c = json_object_get(t, "counts");
    unsigned long long raw = (unsigned long long)json_integer_value(json_object_get(c, "raw_bytes"));
    unsigned long long stored = (unsigned long long)json_integer_value(json_object_get(c, "stored_bytes"));
    long long nt = (long long)json_integer_value(json_object_get(c, "tensors"));
    long long nb = (long long)json_integer_value(json_object_get(c, "blobs"));
    printf("\nentries   %lld (%lld tensor%s, %lld blob%s) in %lld chunks\n",
           (long long)json_integer_value(json_object_get(c, "entries")), nt, nt == 1 ? "" : "s", nb,
           nb == 1 ? "" : "s", (long long)json_integer_value(json_object_get(c, "chunks")));
    printf("bytes     %llu raw, %llu stored (%.3fx), stream %llu\n", raw, stored, stored ? (double)raw / stored : 1.0,
           (unsigned long long)mpuc_reader_offset(in->r));
    json_t *pv = json_object_get(t, "parents_verified");
    size_t i;
    json_t *p;
    json_array_foreach(pv, i, p) {
      const char *cd = json_string_value(json_object_get(json_object_get(p, "content_digest"), "xxh3_128"));
      char *other = json_canonical(p);
      if (cd) printf("%s stream %s had content %s\n", i ? "         " : "read     ",
                     json_string_value(json_object_get(p, "stream_id")), cd);
      else printf("%s %s\n", i ? "         " : "read     ", other ? other : "?");
      free(other);
    }
    printf("content   xxh3-128 %s\n", mpuc_reader_content_digest(in->r));
    printf("stream    xxh3-128 %s\n", mpuc_reader_stream_digest(in->r));
    printf("verified  ok\n");
    json_decref(t);
  }
  return 0;
}

int main(int argc, char **argv) {
  cli_init("mpu-inspect", argc, argv);
  enum { OPT_STATS = OPT_PROGRAM };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS, {"json", no_argument, 0, OPT_JSON},
                                           {"stats", no_argument, 0, OPT_STATS}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  int as_json = 0, with_stats = 0, opt;
  while ((opt = getopt_long(argc, argv, "hVq", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_JSON: as_json = 1; break;
    case OPT_STATS: with_stats = 1; break;
    default: return cli_usage_error("bad option");
    }
  }
  if (optind < argc - 1) return cli_usage_error("one STREAM at a time");
  mpu_err e = {0};
  ms_reader in;
  int rc = ms_reader_open(&in, optind < argc ? argv[optind] : NULL, &e);
  if (!rc) ms_reader_progress(&in, c.progress, "inspecting");
  if (!rc) rc = run(&in, as_json, with_stats, &e);
  fflush(stdout);
  ms_reader_close(&in);
  return rc ? cli_report(&e) : 0;
}
