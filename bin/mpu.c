/*
 * mpu -- runs mpu-<verb> (like git): `mpu import x` execs `mpu-import x`.
 * Looks beside its own executable first, then on PATH.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
  const char *verb, *what;
} verbs[] = {
  {NULL, "Streams:"},
  {"import", "convert a Hugging Face checkpoint into an .mpuc stream"},
  {"export", "write an .mpuc stream as a Hugging Face directory or .safetensors file"},
  {"inspect", "show a stream's header, entries and trailer"},
  {"verify", "check a stream's structure, hashes and provenance"},
  {"log", "the provenance graph of streams: stages, parameters, parents, signers"},
  {"convert", "re-encode a stream or change its float dtype"},
  {"pack", "streams into one reproducible, optionally signed tar for removable media"},
  {"unpack", "check a bundle from end to end, then write its streams into a directory"},
  {NULL, "Models:"},
  {"init", "a randomly initialised model from a config"},
  {"score", "the NLL of each example of a data file"},
  {"train", "fine-tune a model on a data file"},
  {"generate", "continue a prompt"},
  {"synth", "a synthetic TOFU-style unlearning benchmark from a seed"},
  {"eval", "TOFU's metrics of a model: forget quality, model utility, privleak, ..."},
  {NULL, "An MPU round (server: keygen, perturb, split, invert, denoise; client: unlearn):"},
  {"keygen", "a new server key"},
  {"perturb", "noised, reparameterized copies of a model"},
  {"split", "one file per copy of a multi-copy stream"},
  {"unlearn", "make every copy forget a data set (the client's stage)"},
  {"invert", "the returned copies' updates, in the model's own coordinates"},
  {"denoise", "the harmonic mean of the updates, applied to the model"},
};

static void usage(FILE *f) {
  fprintf(f, "Usage: mpu <command> [options] [arguments]\n\n"
             "mpu carries out MPU unlearning between a model owner and a data owner as\n"
             "small programs over streamed .mpuc containers.\n\n");
  for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++)
    if (verbs[i].verb) fprintf(f, "  %-9s %s\n", verbs[i].verb, verbs[i].what);
    else fprintf(f, "%s%s\n", i ? "\n" : "", verbs[i].what);
  fprintf(f, "\n'mpu <command> --help' describes a command; 'man mpu-<command>' and 'man 5 mpuc' too.\n"
             "Exit status: 0 ok, 1 an input failed verification, 2 usage or I/O error.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *verb = argv[1];
  if (!strcmp(verb, "-h") || !strcmp(verb, "--help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(verb, "-V") || !strcmp(verb, "--version")) {
    printf("mpu %s\n", MPU_VERSION);
    return 0;
  }
  /* The child's argv: "mpu-VERB" then the arguments after VERB ("mpu help
   * VERB" is "mpu-VERB --help"). */
  int help = !strcmp(verb, "help") && argc > 2;
  if (help) verb = argv[2];
  if (verb[0] == '-' || strchr(verb, '/')) {
    fprintf(stderr, "mpu: '%s' is not a command\nTry 'mpu --help'.\n", verb);
    return 2;
  }
  char prog[256];
  snprintf(prog, sizeof prog, "mpu-%s", verb);
  char *help_args[] = {prog, "--help", NULL};
  char **args = help ? help_args : argv + 1;
  args[0] = prog;

  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash) {
      char path[PATH_MAX + 300];
      snprintf(path, sizeof path, "%.*s/%s", (int)(slash - self), self, prog);
      if (access(path, X_OK) == 0) {
        execv(path, args);
        fprintf(stderr, "mpu: cannot run %s: %s\n", path, strerror(errno));
        return 2;
      }
    }
  }
  execvp(prog, args);
  if (errno == ENOENT) fprintf(stderr, "mpu: '%s' is not an mpu command\nTry 'mpu --help'.\n", verb);
  else fprintf(stderr, "mpu: cannot run %s: %s\n", prog, strerror(errno));
  return 2;
}
