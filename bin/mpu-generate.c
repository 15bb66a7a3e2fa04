/*
 * mpu-generate -- greedy decoding with a key/value cache.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "decode.h"
#include "engine.h"
#include "jsonx.h"

static void help(void) {
  printf("Usage: mpu generate --prompt TEXT [OPTION]... [MODEL]\n"
         "Continue TEXT with MODEL (an .mpuc stream, or standard input) by greedy\n"
         "decoding, and print the continuation.\n\n"
         "Options:\n"
         "      --prompt TEXT    the text to continue (required)\n"
         "      --max-new N      tokens to generate at most (default 64); stops early at\n"
         "                       the end-of-sequence token\n"
         "      --chat           treat TEXT as a user message in the tokenizer's chat template\n"
         "      --question       make TEXT the prompt a {\"question\", \"answer\"} example has:\n"
         "                       the chat template if the tokenizer has one (unless\n"
         "                       --no-chat), else \"Question: TEXT\\nAnswer: \"\n"
         "      --no-chat        with --question: never the chat template\n"
         "      --system TEXT    system prompt for --chat and --question\n"
         "      --json           print {\"prompt\", \"completion\", \"ids\", \"stop\"} instead\n"
         "      --copy K         use copy K of a multi-copy stream\n"
         "      --threads N      threads (default: all cores)\n" ENGINE_DEVICE_HELP CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the model failed verification, 2 usage or I/O error.\n");
}

int main(int argc, char **argv) {
  cli_init("mpu-generate", argc, argv);
  enum { OPT_PROMPT = OPT_PROGRAM, OPT_MAXNEW, OPT_CHAT, OPT_QUESTION, OPT_NOCHAT, OPT_SYSTEM, OPT_COPY, OPT_THREADS };
  static const struct option longopts[] = {
    CLI_COMMON_OPTIONS, {"prompt", required_argument, 0, OPT_PROMPT}, {"max-new", required_argument, 0, OPT_MAXNEW},
    {"chat", no_argument, 0, OPT_CHAT}, {"question", no_argument, 0, OPT_QUESTION},
    {"no-chat", no_argument, 0, OPT_NOCHAT},
    {"system", required_argument, 0, OPT_SYSTEM}, {"json", no_argument, 0, OPT_JSON},
    {"copy", required_argument, 0, OPT_COPY}, {"threads", required_argument, 0, OPT_THREADS}, CLI_DEVICE_OPTION,
    {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  const char *prompt = NULL, *system = NULL;
  long long max_new = 64, copy = 0, threads = 0;
  int chat = 0, question = 0, no_chat = 0, as_json = 0, opt, device = MODEL_CPU;
  while ((opt = getopt_long(argc, argv, "hVq", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_PROMPT: prompt = optarg; break;
    case OPT_MAXNEW:
      if (cli_parse_int(optarg, 0, 1 << 24, &max_new)) return cli_usage_error("--max-new: bad value '%s'", optarg);
      break;
    case OPT_CHAT: chat = 1; break;
    case OPT_QUESTION: question = 1; break;
    case OPT_NOCHAT: no_chat = 1; break;
    case OPT_SYSTEM: system = optarg; break;
    case OPT_JSON: as_json = 1; break;
    case OPT_COPY:
      if (cli_parse_int(optarg, 1, 1024, &copy)) return cli_usage_error("--copy: bad value '%s'", optarg);
      break;
    case OPT_THREADS:
      if (cli_parse_int(optarg, 1, 1024, &threads)) return cli_usage_error("--threads: bad value '%s'", optarg);
      break;
    case OPT_DEVICE:
      if ((device = engine_parse_device(optarg)) < -1)
        return cli_usage_error("--device: '%s' is not cpu, cuda or auto", optarg);
      break;
    default: return cli_usage_error("bad option");
    }
  }
  if (!prompt) return cli_usage_error("--prompt TEXT is required");
  if (optind < argc - 1) return cli_usage_error("one MODEL at a time");
  mpu_err e = {0};
  engine g;
  if (engine_check_device(device, &e)) return cli_report(&e);
  int rc = engine_open(&g, optind < argc ? argv[optind] : NULL, (int)copy - 1, (int)threads, &e);
  if (!rc) rc = engine_set_device(&g, device, -1, &e);
  if (!rc && !g.tok) rc = mpu_fail(&e, MPU_EUSAGE, "the model carries no tokenizer (tokenizer.json)");
  int32_t *ids = NULL, *gen = NULL;
  size_t n = 0, cap = 0, ngen = 0;
  char *text = NULL;
  if (!rc) {
    if (chat) {
      rc = tok_chat_format(g.tok, system, prompt, &text, &e);
      if (!rc) rc = tok_encode(g.tok, text, strlen(text), 0, &ids, &n, &cap, &e);
    } else if (question) {
      /* exactly the prompt a {"question", "answer"} example has */
      g.data.use_chat = !no_chat;
      g.data.system = system;
      rc = question_ids(&g.data, prompt, &ids, &n, &e);
    } else {
      rc = tok_encode(g.tok, prompt, strlen(prompt), 1, &ids, &n, &cap, &e);
    }
  }
  decode_stop stop = STOP_LENGTH;
  if (!rc) rc = greedy_decode(&g.m, ids, n, (size_t)max_new, g.eos, &gen, &ngen, &stop, &e);
  char *out = NULL, *shown = NULL;
  size_t out_len, shown_len;
  if (!rc) rc = tok_decode(g.tok, gen, ngen, 1, &out, &out_len, &e);
  if (!rc && !chat && question) rc = tok_decode(g.tok, ids, n, 1, &shown, &shown_len, &e);
  if (!rc) {
    if (as_json) {
      json_t *arr = json_array();
      for (size_t i = 0; i < ngen; i++) json_array_append_new(arr, json_integer(gen[i]));
      json_t *o = json_pack("{s:s, s:s%, s:o, s:s}", "prompt", shown ? shown : text ? text : prompt, "completion", out,
                            out_len, "ids", arr, "stop", decode_stop_name(stop));
      char *s = json_canonical(o);
      printf("%s\n", s);
      free(s);
      json_decref(o);
    } else {
      fwrite(out, 1, out_len, stdout);
      printf("\n");
    }
  }
  free(shown);
  free(gen);
  free(out);
  free(ids);
  free(text);
  engine_close(&g);
  return rc ? cli_report(&e) : 0;
}
