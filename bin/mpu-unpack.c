/*
 * mpu-unpack -- the streams of a bundle (mpu pack) into a directory, after
 * every size, digest, stream and (with --trust) signature has been checked;
 * or, with --list, what a bundle holds.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle.h"
#include "cli.h"
#include "jsonx.h"

static void help(void) {
  printf("Usage: mpu unpack [OPTION]... [BUNDLE]\n"
         "Check a bundle made by 'mpu pack' (standard input if BUNDLE is omitted) and\n"
         "write its streams into a directory.  Every entry's size and BLAKE2b digest is\n"
         "checked against the manifest and every stream is verified in full before\n"
         "anything is put in place; a refused bundle leaves the directory as it was.\n\n"
         "Options:\n"
         "  -C, --directory DIR  write the streams into DIR (made if missing; default .)\n"
         "  -t, --list           only list the bundle's streams (sizes and digests are\n"
         "                       checked; nothing is written)\n"
         "      --json           with --list: the manifest, as JSON\n"
         "      --force          replace streams that exist in DIR\n"
         "      --trust PUBKEY   require a signature by a key of the public key file\n"
         "                       PUBKEY ('mpu keygen --sign' makes KEY.pub); repeat to\n"
         "                       trust several\n"
         "      --max-size S     refuse a stream larger than S bytes (default 256TiB)\n" CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the bundle failed a check (the message names the entry),\n"
         "2 usage or I/O error (a stream that exists without --force).\n");
}

static void human(char *buf, size_t n, double v) {
  const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (v >= 1024 && i < 4) v /= 1024, i++;
  snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

/* One line per stream: name, size, stage, copies, stream id. */
static void list(const bundle_result *r, const char *name) {
  json_t *files = json_object_get(r->manifest, "files"), *f;
  size_t i;
  printf("%-24s %10s  %-8s %6s  %s\n", "name", "size", "stage", "copies", "stream id");
  json_array_foreach(files, i, f) {
    json_t *s = json_object_get(f, "stream");
    char size[32];
    human(size, sizeof size, (double)json_integer_value(json_object_get(f, "size")));
    printf("%-24s %10s  %-8s %6lld  %s\n", json_string_value(json_object_get(f, "name")), size,
           json_string_value(json_object_get(s, "stage")) ?: "?",
           (long long)json_integer_value(json_object_get(s, "copies")),
           json_string_value(json_object_get(s, "stream_id")) ?: "?");
  }
  size_t ns = json_array_size(r->signers);
  if (r->trusted[0]) printf("%s: signed by trusted key %s\n", name, r->trusted);
  else if (ns) {
    printf("%s: signed by key", name);
    for (size_t k = 0; k < ns; k++) printf(" %s", json_string_value(json_array_get(r->signers, k)));
    printf(" (not checked: give --trust)\n");
  } else printf("%s: not signed\n", name);
}

int main(int argc, char **argv) {
  cli_init("mpu-unpack", argc, argv);
  enum { OPT_TRUST = OPT_PROGRAM, OPT_MAX_SIZE };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS,
                                           {"directory", required_argument, 0, 'C'},
                                           {"list", no_argument, 0, 't'},
                                           {"json", no_argument, 0, OPT_JSON},
                                           {"force", no_argument, 0, OPT_FORCE},
                                           {"trust", required_argument, 0, OPT_TRUST},
                                           {"max-size", required_argument, 0, OPT_MAX_SIZE},
                                           {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  bundle_read_options o = {.dir = "."};
  sign_trust trust = {0};
  int listing = 0, as_json = 0, ntrust = 0, opt;
  mpu_err e = {0};
  while ((opt = getopt_long(argc, argv, "hVqC:t", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case 'C': o.dir = optarg; break;
    case 't': listing = 1; break;
    case OPT_JSON: as_json = 1; break;
    case OPT_TRUST:
      if (sign_trust_add_file(&trust, optarg, &e)) return cli_report(&e);
      ntrust++;
      break;
    case OPT_MAX_SIZE: {
      int64_t s = cli_parse_size(optarg);
      if (s <= 0) return cli_usage_error("--max-size: '%s' is not a size", optarg);
      o.max_size = (uint64_t)s;
      break;
    }
    default: return cli_usage_error("bad option");
    }
  }
  if (argc - optind > 1) return cli_usage_error("one bundle at a time");
  if (as_json && !listing) return cli_usage_error("--json goes with --list");
  o.force = c.enc.force;
  o.progress = c.progress;
  o.trust = ntrust ? &trust : NULL;
  if (listing) o.dir = NULL;

  const char *path = optind < argc ? argv[optind] : NULL;
  const char *name = cli_input_name(path);
  int fd;
  if (cli_open_input(path, &fd, &e)) return cli_report(&e);
  bundle_result r;
  int rc = bundle_read(fd, name, &o, &r, &e);
  if (fd > 0) close(fd);
  sign_trust_free(&trust);
  if (rc) {
    bundle_result_free(&r);
    return cli_report(&e);
  }
  if (listing && as_json) {
    char *s = json_canonical(r.manifest);
    printf("%s\n", s ? s : "null");
    free(s);
  } else if (listing) {
    list(&r, name);
  } else if (!c.quiet) {
    json_t *f;
    size_t i;
    json_array_foreach(json_object_get(r.manifest, "files"), i, f)
      printf("%s/%s: ok\n", o.dir, json_string_value(json_object_get(f, "name")));
    if (r.trusted[0]) printf("%s: signed by trusted key %s\n", name, r.trusted);
  }
  bundle_result_free(&r);
  return 0;
}
