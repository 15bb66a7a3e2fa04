/*
 * mpu-export -- an .mpuc stream in, a Hugging Face directory or a
 * .safetensors file out.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hf.h"

static void help(void) {
  printf("Usage: mpu export [OPTION]... -o OUT [STREAM]\n"
         "Write an .mpuc stream (STREAM, or standard input) as a Hugging Face model.\n\n"
         "OUT is a directory (config.json, blobs, model.safetensors or shards with\n"
         "model.safetensors.index.json), or a file ending in .safetensors.  The tensor\n"
         "bytes are exactly those of the stream, laid out the way Hugging Face's\n"
         "writer lays them out.  Every hash is verified before OUT appears.\n\n"
         "Options:\n"
         "  -o, --output OUT     where to write (required)\n"
         "      --force          replace OUT if it exists\n"
         "      --copy K         export copy K (1..M) of a multi-copy stream\n"
         "      --shard-size S   bytes per shard (default 5GB, as transformers)\n" CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the stream failed verification, 2 usage or I/O error.\n");
}

int main(int argc, char **argv) {
  cli_init("mpu-export", argc, argv);
  enum { OPT_COPY = OPT_PROGRAM, OPT_SHARD };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS,
                                           {"output", required_argument, 0, 'o'},
                                           {"force", no_argument, 0, OPT_FORCE},
                                           {"copy", required_argument, 0, OPT_COPY},
                                           {"shard-size", required_argument, 0, OPT_SHARD},
                                           {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  hf_export_options o = {0};
  int opt;
  long long v;
  while ((opt = getopt_long(argc, argv, "hVqo:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_COPY:
      if (cli_parse_int(optarg, 1, 1024, &v)) return cli_usage_error("--copy: '%s' is not a copy number", optarg);
      o.copy = (long)v;
      break;
    case OPT_SHARD: {
      int64_t s = cli_parse_size(optarg);
      if (s < 1) return cli_usage_error("--shard-size: '%s' is not a size", optarg);
      o.shard_size = (uint64_t)s;
      break;
    }
    default: return cli_usage_error("bad option");
    }
  }
  if (!c.output || !strcmp(c.output, "-")) return cli_usage_error("-o OUT is required (a directory or a .safetensors file)");
  if (optind < argc - 1) return cli_usage_error("one STREAM at a time");
  o.force = c.enc.force;
  o.progress = c.progress;
  mpu_err e = {0};
  ms_reader in;
  int rc = ms_reader_open(&in, optind < argc ? argv[optind] : NULL, &e);
  if (!rc) rc = hf_export(&in, c.output, &o, &e);
  ms_reader_close(&in);
  if (rc) return cli_report(&e);
  if (!c.quiet && (o.dropped_blobs || o.dropped_config)) {
    char blobs[64] = "";
    if (o.dropped_blobs) snprintf(blobs, sizeof blobs, "%d blob%s", o.dropped_blobs, o.dropped_blobs == 1 ? "" : "s");
    cli_msg("note: a .safetensors file holds only tensors: %s%s%s left out; export to a directory to keep them",
            o.dropped_config ? "config.json" : "", o.dropped_config && o.dropped_blobs ? " and " : "", blobs);
  }
  return 0;
}
