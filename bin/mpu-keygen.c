/*
 * mpu-keygen -- a new server key: 256 random bits, mode 0600, never
 * replacing a file, never written to a terminal.  With --sign, an Ed25519
 * signing key pair instead (lib/sign.h): FILE and FILE.pub.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "secret.h"
#include "sign.h"

static void help(void) {
  printf("Usage: mpu keygen [--sign] -o FILE\n"
         "Write a new secret server key to FILE (mode 0600; an existing FILE is never\n"
         "replaced).  Every secret of a round -- noise, rotations, permutations, copy\n"
         "scalings -- is derived from it, so keep it where only the server can read it.\n\n"
         "With --sign, write a new Ed25519 signing key to FILE (mode 0600) and its\n"
         "public half to FILE.pub, and print the key id; neither file is ever\n"
         "replaced.  Programs that write streams sign them with --sign-key FILE;\n"
         "'mpu verify --trust FILE.pub' accepts what that key signed.\n\n"
         "Options:\n"
         "  -o, --output FILE    where to write the key (- for standard output, which\n"
         "                       must not be a terminal)\n"
         "      --sign           make a signing key pair (FILE and FILE.pub) instead\n"
         "  -h, --help           show this help and exit\n"
         "  -V, --version        show the version and exit\n"
         "\nExit status: 0 ok, 2 usage or I/O error.\n");
}

int main(int argc, char **argv) {
  cli_init("mpu-keygen", argc, argv);
  enum { OPT_SIGN = 1000 };
  static const struct option longopts[] = {{"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                           {"version", no_argument, 0, 'V'}, {"sign", no_argument, 0, OPT_SIGN},
                                           {0, 0, 0, 0}};
  const char *out = NULL;
  int opt, sign = 0;
  while ((opt = getopt_long(argc, argv, "hVo:", longopts, NULL)) != -1) {
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case 'o': out = optarg; break;
    case OPT_SIGN: sign = 1; break;
    default: return cli_usage_error("bad option");
    }
  }
  if (!out) return cli_usage_error("-o FILE is required");
  if (optind != argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
  mpu_err e = {0};
  if (sign) {
    /* a pair is two files: standard output cannot hold both */
    if (!strcmp(out, "-")) return cli_usage_error("--sign writes FILE and FILE.pub; give -o FILE, not -");
    sign_public pub;
    if (sign_keygen(out, &pub, &e)) return cli_report(&e);
    printf("%s: signing key %s (public key in %s.pub)\n", out, pub.id, out);
    return 0;
  }
  if (key_generate(out, &e)) return cli_report(&e);
  return 0;
}
