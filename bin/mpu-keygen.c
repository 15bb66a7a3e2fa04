/*
 * mpu-keygen -- a new server key: 256 random bits, mode 0600, never
 * replacing a file, never written to a terminal.
 */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "secret.h"

static void help(void) {
  printf("Usage: mpu keygen -o FILE\n"
         "Write a new secret server key to FILE (mode 0600; an existing FILE is never\n"
         "replaced).  Every secret of a round -- noise, rotations, permutations, copy\n"
         "scalings -- is derived from it, so keep it where only the server can read it.\n\n"
         "Options:\n"
         "  -o, --output FILE    where to write the key (- for standard output, which\n"
         "                       must not be a terminal)\n"
         "  -h, --help           show this help and exit\n"
         "  -V, --version        show the version and exit\n"
         "\nExit status: 0 ok, 2 usage or I/O error.\n");
}

int main(int argc, char **argv) {
  cli_init("mpu-keygen", argc, argv);
  static const struct option longopts[] = {{"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                           {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
  const char *out = NULL;
  int opt;
  while ((opt = getopt_long(argc, argv, "hVo:", longopts, NULL)) != -1) {
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case 'o': out = optarg; break;
    default: return cli_usage_error("bad option");
    }
  }
  if (!out) return cli_usage_error("-o FILE is required");
  if (optind != argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
  mpu_err e = {0};
  if (key_generate(out, &e)) return cli_report(&e);
  return 0;
}
