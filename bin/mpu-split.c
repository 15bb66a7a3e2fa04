/*
 * mpu-split -- one complete, verifiable stream per copy of a multi-copy
 * stream, each naming the stream it came from; optionally cut into volumes
 * that fit removable media.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "jsonx.h"
#include "prov.h"
#include "protocol.h"

static void help(void) {
  printf("Usage: mpu split [OPTION]... [STREAM]\n"
         "Write each copy of a multi-copy stream (STREAM, or standard input; e.g. the\n"
         "output of 'mpu perturb') as a stream of its own, with its parent's id.\n\n"
         "Options:\n"
         "  -o, --output PATTERN output names; %%d is the copy number 1..M\n"
         "                       (default copy-%%d.mpuc)\n"
         "      --volume-size S  cut each output into volumes PATTERN.001, .002, ... of at\n"
         "                       most S bytes (4294967295 for FAT32); cat joins them back\n"
         "      --force          replace existing outputs\n"
         "      --level N, --store, --no-group, --chunk-size S   as for every writer\n" CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the input failed verification, 2 usage or I/O error.\n");
}

static int valid_pattern(const char *p) {
  const char *d = strstr(p, "%d");
  if (!d || strstr(d + 2, "%d")) return 0;
  for (const char *c = p; *c; c++)
    if (*c == '%' && c != d) return 0;
  return 1;
}

int main(int argc, char **argv) {
  cli_init("mpu-split", argc, argv);
  enum { OPT_VOLUME = OPT_PROGRAM };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS, CLI_OUTPUT_OPTIONS,
                                           {"volume-size", required_argument, 0, OPT_VOLUME}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  int opt;
  while ((opt = getopt_long(argc, argv, "hVqo:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_VOLUME: {
      int64_t s = cli_parse_size(optarg);
      if (s < (64 << 10)) return cli_usage_error("--volume-size: '%s' is not a size of at least 64KiB", optarg);
      c.enc.volume = (uint64_t)s;
      break;
    }
    default: return cli_usage_error("bad option");
    }
  }
  const char *pattern = c.output ? c.output : "copy-%d.mpuc";
  if (!valid_pattern(pattern)) return cli_usage_error("-o: '%s' needs exactly one %%d (the copy number) and no other %%", pattern);
  if (optind < argc - 1) return cli_usage_error("one STREAM at a time");
  mpu_err e = {0};
  ms_reader in;
  int rc = ms_reader_open(&in, optind < argc ? argv[optind] : NULL, &e);
  int M = rc ? 0 : (int)json_integer_value(json_object_get(in.header, "copies"));
  if (!rc && M < 2) rc = mpu_fail(&e, MPU_EUSAGE, "%s holds one copy; there is nothing to split", in.name);
  ms_writer *w = calloc((size_t)(M > 0 ? M : 1), sizeof *w);
  int opened = 0;
  for (int k = 1; !rc && k <= M; k++, opened++) {
    char path[4096];
    snprintf(path, sizeof path, pattern, k);
    json_t *h = split_header(in.header, mpuc_reader_stream_id(in.r), mpuc_reader_header_digest(in.r), k);
    if (!json_object_get(in.header, "mpu")) json_object_del(h, "mpu");
    char *hj = json_canonical(h);
    json_decref(h);
    rc = ms_writer_open(&w[k - 1], path, &c.enc, hj, &e);
    free(hj);
  }
  ms_reader_progress(&in, c.progress, "splitting");
  const mpuc_entry *en;
  int more = 0;
  uint8_t *piece = malloc(1 << 20);
  while (!rc && (more = ms_next_entry(&in, &en, &e)) == 1) {
    /* Copy k goes to output k as copy 0; blobs and shared tensors to all. */
    int all = en->kind == MPUC_KIND_BLOB || en->copy == MPUC_COPY_SHARED;
    int lo = all ? 0 : (int)en->copy, hi = all ? M : lo + 1;
    mpuc_entry out = *en;
    out.copy = 0;
    for (int k = lo; !rc && k < hi; k++) rc = ms_write_begin(&w[k], &out, &e);
    size_t got;
    while (!rc && !(rc = ms_read(&in, piece, 1 << 20, &got, &e)) && got)
      for (int k = lo; !rc && k < hi; k++) rc = ms_write_data(&w[k], piece, got, &e);
    if (!rc) rc = ms_entry_verify(&in, &e);
    for (int k = lo; !rc && k < hi; k++) rc = ms_write_end(&w[k], &e);
  }
  free(piece);
  if (!rc) rc = e.status;
  if (!rc) {
    ms_reader *ins[1] = {&in};
    json_t *extra = prov_parents_verified(ins, 1);
    char *ej = json_canonical(extra);
    json_decref(extra);
    for (int k = 0; !rc && k < M; k++) rc = ms_writer_close(&w[k], ej, &e);
    free(ej);
  }
  if (rc)
    for (int k = 0; k < opened; k++) ms_writer_abort(&w[k]);
  free(w);
  ms_reader_close(&in);
  return rc ? cli_report(&e) : 0;
}
