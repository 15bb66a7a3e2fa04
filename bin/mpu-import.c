/*
 * mpu-import -- a Hugging Face checkpoint in, an .mpuc stream out.
 */
#include <getopt.h>
#include <stdlib.h>

#include "cli.h"
#include "hf.h"

static void help(void) {
  printf("Usage: mpu import [OPTION]... CHECKPOINT\n"
         "Convert a Hugging Face checkpoint into an .mpuc stream on standard output.\n\n"
         "CHECKPOINT is a model directory (config.json, weights, tokenizer files), a\n"
         "model.safetensors.index.json, a .safetensors file, or - for a .safetensors\n"
         "file on standard input.  Every tensor is carried with its dtype and bytes as\n"
         "they are; config.json goes into the header; the other files of a directory\n"
         "(generation_config.json, tokenizer files, ...) are carried as blobs.\n\n"
         "Options:\n"
         "      --config FILE    use FILE as config.json\n" CLI_OUTPUT_HELP CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the checkpoint is invalid, 2 usage or I/O error.\n");
}

int main(int argc, char **argv) {
  cli_init("mpu-import", argc, argv);
  enum { OPT_CONFIG = OPT_PROGRAM };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS, CLI_OUTPUT_OPTIONS,
                                           {"config", required_argument, 0, OPT_CONFIG}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  const char *config = NULL;
  int opt;
  while ((opt = getopt_long(argc, argv, "hVqo:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_CONFIG: config = optarg; break;
    default: return cli_usage_error("bad option");
    }
  }
  if (optind != argc - 1) return cli_usage_error(optind == argc ? "no CHECKPOINT given" : "one CHECKPOINT at a time");
  mpu_err e = {0};
  hf_source src;
  if (hf_source_open(&src, argv[optind], config, &e)) {
    hf_source_close(&src);
    return cli_report(&e);
  }
  if (!c.quiet)
    for (size_t i = 0; i < src.nnotes; i++) cli_msg("note: %s", src.notes[i]);
  if (!src.config && !c.quiet) cli_msg("note: no config.json; the stream carries no model configuration");
  ms_writer w;
  int rc = hf_import(&src, &w, c.output, &c.enc, NULL, c.progress, &e);
  if (rc) ms_writer_abort(&w);
  hf_source_close(&src);
  return rc ? cli_report(&e) : 0;
}
