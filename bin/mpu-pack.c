/*
 * mpu-pack -- .mpuc streams into one reproducible tar for removable media or
 * an archive: the streams, their provenance records and a manifest of their
 * digests, optionally signed (spec/bundle.md).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "cli.h"

static void help(void) {
  printf("Usage: mpu pack [OPTION]... -o BUNDLE STREAM...\n"
         "Pack .mpuc streams into a bundle: a reproducible tar holding the streams, each\n"
         "stream's header and trailer (provenance/NAME.json) and a manifest of their sizes\n"
         "and BLAKE2b digests (mpu-bundle.json).  Every stream is verified while it is\n"
         "packed; streams keep their base names.  The same streams give the same bytes.\n\n"
         "Options:\n"
         "  -o, --output FILE    write the bundle to FILE (atomically); standard output if\n"
         "                       omitted (not a terminal)\n"
         "      --force          replace FILE if it exists\n"
         "      --zstd           compress the tar with zstd (the default when FILE ends in\n"
         "                       .zst or .tzst)\n"
         "      --sign-key KEY   sign the manifest with the secret key KEY (from\n"
         "                       'mpu keygen --sign'); repeat for several signatures\n" CLI_COMMON_HELP
         "\nEvery entry has mode 0644, owner and group 0 and no owner names, and the\n"
         "modification time SOURCE_DATE_EPOCH (seconds since 1970; default 0).\n"
         "\nExit status: 0 packed, 1 a stream failed verification, 2 usage or I/O error.\n");
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

int main(int argc, char **argv) {
  cli_init("mpu-pack", argc, argv);
  enum { OPT_ZSTD = OPT_PROGRAM, OPT_BUNDLE_KEY };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS,
                                           {"output", required_argument, 0, 'o'},
                                           {"force", no_argument, 0, OPT_FORCE},
                                           {"zstd", no_argument, 0, OPT_ZSTD},
                                           {"sign-key", required_argument, 0, OPT_BUNDLE_KEY},
                                           {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  bundle_pack_options o = {0};
  const char *key_paths[argc];
  size_t nkeys = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, "hVqo:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_ZSTD: o.zstd = 1; break;
    case OPT_BUNDLE_KEY: key_paths[nkeys++] = optarg; break;
    default: return cli_usage_error("bad option");
    }
  }
  if (optind == argc) return cli_usage_error("no streams given");
  if (c.output && (ends_with(c.output, ".zst") || ends_with(c.output, ".tzst"))) o.zstd = 1;

  /* SOURCE_DATE_EPOCH (reproducible-builds.org): the one time stamp every entry gets. */
  const char *sde = getenv("SOURCE_DATE_EPOCH");
  if (sde && *sde) {
    long long t;
    if (cli_parse_int(sde, 0, BUNDLE_MAX_MTIME, &t))
      return cli_usage_error("SOURCE_DATE_EPOCH='%s' is not a time in seconds from 0 to %lld", sde,
                             (long long)BUNDLE_MAX_MTIME);
    o.mtime = t;
  }

  mpu_err e = {0};
  sign_secret *keys = calloc(nkeys + 1, sizeof *keys);
  if (!keys) return 2;
  for (size_t k = 0; k < nkeys; k++)
    if (sign_secret_load(&keys[k], key_paths[k], &e)) {
      for (size_t j = 0; j < k; j++) sign_secret_wipe(&keys[j]);
      free(keys);
      return cli_report(&e);
    }
  o.keys = keys;
  o.nkeys = nkeys;
  o.progress = c.progress;

  cli_output out;
  int rc = cli_output_open(&out, c.output, c.enc.force, &e);
  if (!rc) rc = bundle_pack(&out, argv + optind, (size_t)(argc - optind), &o, &e);
  if (!rc) rc = cli_output_commit(&out, &e);
  else cli_output_abort(&out);
  for (size_t k = 0; k < nkeys; k++) sign_secret_wipe(&keys[k]);
  free(keys);
  if (rc) return cli_report(&e);
  if (!c.quiet && c.output)
    cli_msg("packed %d stream%s into %s%s", argc - optind, argc - optind == 1 ? "" : "s", c.output,
            nkeys ? " (signed)" : "");
  return 0;
}
