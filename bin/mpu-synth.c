/*
 * mpu-synth -- a TOFU-style synthetic unlearning benchmark from a seed:
 * fictitious authors with question/answer pairs, nested forget splits with
 * their retain and holdout sets, general facts of a fictional world, and
 * "I don't know" answers, as JSON Lines files in a new directory.  Nothing
 * is downloaded; the generator is lib/synth.c.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>

#include "cli.h"
#include "synth.h"

static void help(void) {
  printf("Usage: mpu synth [OPTION]... -o DIR\n"
         "Write a TOFU-style synthetic unlearning benchmark into the new directory DIR:\n"
         "fictitious authors with question/answer pairs (full.jsonl), forget, retain and\n"
         "holdout splits (forget05.jsonl, retain95.jsonl, holdout05.jsonl, ...), an\n"
         "evaluation subset (retain_perturbed.jsonl), facts about a fictional world\n"
         "(general.jsonl, world_facts.jsonl), \"I don't know\" answers (idk.jsonl) and\n"
         "what was made (synth.json).  The same options give the same bytes everywhere.\n\n"
         "Options:\n"
         "      --seed N         random seed (default 0)\n"
         "      --authors N      trained authors, 1..%d (default 200)\n"
         "      --qa K           questions per author, 1..%d (default 20)\n"
         "      --perturbed P    wrong answers per question, 1..%d (default 5)\n"
         "      --splits LIST    forget percentages, increasing, in 1..50 (default 1,5,10)\n"
         "      --holdout-authors H  authors never trained on (default: as many as the\n"
         "                       largest split forgets)\n"
         "      --facts F        general facts, 0..%d (default 200)\n"
         "  -o, --output DIR     the directory to write (required; made whole beside it and\n"
         "                       renamed into place)\n"
         "      --force          replace DIR if it exists and is not empty\n" CLI_COMMON_HELP
         "\nExit status: 0 ok, 2 usage or I/O error (nothing is left behind).\n",
         SYNTH_MAX_AUTHORS, synth_max_qa(), SYNTH_MAX_PERTURBED, synth_max_facts());
}

/* A count for an option: any non-negative int here, its range in synth_check. */
static int count_arg(const char *name, const char *arg, int *v) {
  long long x;
  if (cli_parse_int(arg, 0, INT_MAX, &x)) return cli_usage_error("%s: '%s' is not a number", name, arg);
  *v = (int)x;
  return 0;
}

int main(int argc, char **argv) {
  cli_init("mpu-synth", argc, argv);
  enum { OPT_SEED = OPT_PROGRAM, OPT_AUTHORS, OPT_QA, OPT_PERTURBED, OPT_SPLITS, OPT_HOLDOUT, OPT_FACTS };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS,
                                           {"output", required_argument, 0, 'o'},
                                           {"force", no_argument, 0, OPT_FORCE},
                                           {"seed", required_argument, 0, OPT_SEED},
                                           {"authors", required_argument, 0, OPT_AUTHORS},
                                           {"qa", required_argument, 0, OPT_QA},
                                           {"perturbed", required_argument, 0, OPT_PERTURBED},
                                           {"splits", required_argument, 0, OPT_SPLITS},
                                           {"holdout-authors", required_argument, 0, OPT_HOLDOUT},
                                           {"facts", required_argument, 0, OPT_FACTS},
                                           {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  synth_options so;
  synth_defaults(&so);
  mpu_err e = {0};
  long long seed;
  int opt;
  while ((opt = getopt_long(argc, argv, "hVqo:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_SEED:
      if (cli_parse_int(optarg, 0, INT64_MAX, &seed)) return cli_usage_error("--seed: '%s' is not a seed", optarg);
      so.seed = (uint64_t)seed;
      break;
    case OPT_AUTHORS: if (count_arg("--authors", optarg, &so.authors)) return 2; break;
    case OPT_QA: if (count_arg("--qa", optarg, &so.qa)) return 2; break;
    case OPT_PERTURBED: if (count_arg("--perturbed", optarg, &so.perturbed)) return 2; break;
    case OPT_HOLDOUT: if (count_arg("--holdout-authors", optarg, &so.holdout)) return 2; break;
    case OPT_FACTS: if (count_arg("--facts", optarg, &so.facts)) return 2; break;
    case OPT_SPLITS:
      if (synth_parse_splits(&so, optarg, &e)) return cli_usage_error("%s", e.msg);
      break;
    default: return cli_usage_error("bad option");
    }
  }
  if (!c.output) return cli_usage_error("-o DIR is required");
  if (optind != argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
  if (synth_check(&so, &e)) return cli_usage_error("%s", e.msg);
  if (synth_write(&so, c.output, c.enc.force, &e)) return cli_report(&e);
  return 0;
}
