/*
 * mpu-init -- a randomly initialised Llama-family model from a config, the
 * way transformers initialises one: weights ~ N(0, initializer_range),
 * biases 0, norm weights 1, the padding token's embedding row 0.  It carries
 * a tokenizer: a given tokenizer.json, or by default a byte-level one (byte b
 * is token b; <|bos|>, <|eos|>, <|pad|> are 256..258), written as a real
 * Hugging Face tokenizer.json so the exported model works with transformers.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fp.h"
#include "jsonx.h"
#include "llama.h"
#include "mstream.h"
#include "prov.h"
#include "rng.h"
#include "tokenizer.h"

static void help(void) {
  printf("Usage: mpu init --config CONFIG.json [OPTION]...\n"
         "Write a randomly initialised model as an .mpuc stream.\n\n"
         "CONFIG.json is a Hugging Face config (LlamaForCausalLM, Qwen2ForCausalLM or\n"
         "MistralForCausalLM).  Weights are drawn from N(0, initializer_range) by a\n"
         "counter-based generator: the same seed gives the same bytes on every machine.\n\n"
         "Options:\n"
         "      --config FILE    the model configuration (required)\n"
         "      --seed N         random seed (default 0)\n"
         "      --dtype T        f32 (default), bf16 or f16\n"
         "      --tokenizer T    bytes (default: a byte-level tokenizer; needs vocab_size\n"
         "                       >= 259), none, or a tokenizer.json file\n"
         "      --tokenizer-config FILE  a tokenizer_config.json to carry with it\n" CLI_OUTPUT_HELP CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 the config is invalid, 2 usage or I/O error.\n");
}

/* Reads or makes the tokenizer's files and checks them against the config;
 * the byte-level default also sets the config's special token ids. */
static int load_tokenizer_files(const char *which, const char *cfg_path, json_t *cfg, llama_config *lc, char **tj,
                                size_t *tl, char **cj, size_t *cl, mpu_err *e) {
  *tj = *cj = NULL;
  if (!strcmp(which, "none")) return 0;
  if (!strcmp(which, "bytes")) {
    if (lc->vocab < 259)
      return mpu_fail(e, MPU_EUSAGE, "vocab_size %lld is too small for the byte-level tokenizer (259 ids); "
                      "raise it or use --tokenizer none", (long long)lc->vocab);
    *tj = tok_byte_level_json();
    json_t *tc = json_pack("{s:s, s:s, s:s, s:I, s:s}", "bos_token", "<|bos|>", "eos_token", "<|eos|>", "pad_token",
                           "<|pad|>", "model_max_length", (json_int_t)lc->max_pos, "tokenizer_class",
                           "PreTrainedTokenizerFast");
    *cj = json_pretty(tc);
    json_decref(tc);
    json_object_set_new(cfg, "bos_token_id", json_integer(256));
    json_object_set_new(cfg, "eos_token_id", json_integer(257));
    json_object_set_new(cfg, "pad_token_id", json_integer(258));
    lc->pad = 258;
  } else {
    size_t n;
    FILE *f = fopen(which, "rb");
    if (!f) return mpu_fail(e, MPU_EUSAGE, "%s: %s", which, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    *tj = malloc((size_t)size + 1);
    n = fread(*tj, 1, (size_t)size, f);
    fclose(f);
    (*tj)[n] = 0;
    if (cfg_path) {
      json_t *tc;
      if (json_load_object(cfg_path, &tc, e)) return e->status;
      *cj = json_pretty(tc);
      json_decref(tc);
    }
  }
  *tl = strlen(*tj);
  *cl = *cj ? strlen(*cj) : 0;
  tokenizer *t;
  if (tok_load(&t, *tj, *tl, *cj, *cl, e)) return mpu_fail_ctx(e, "%s", which);
  size_t vs = tok_vocab_size(t);
  tok_free(t);
  if (vs > (size_t)lc->vocab)
    return mpu_fail(e, MPU_EUSAGE, "the tokenizer has %zu tokens, more than vocab_size %lld", vs, (long long)lc->vocab);
  return 0;
}

int main(int argc, char **argv) {
  cli_init("mpu-init", argc, argv);
  enum { OPT_CONFIG = OPT_PROGRAM, OPT_SEED, OPT_DTYPE, OPT_TOKENIZER, OPT_TOKCONFIG };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS, CLI_OUTPUT_OPTIONS,
                                           {"config", required_argument, 0, OPT_CONFIG},
                                           {"seed", required_argument, 0, OPT_SEED},
                                           {"dtype", required_argument, 0, OPT_DTYPE},
                                           {"tokenizer", required_argument, 0, OPT_TOKENIZER},
                                           {"tokenizer-config", required_argument, 0, OPT_TOKCONFIG},
                                           {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  const char *config_path = NULL, *tok_choice = "bytes", *tok_config = NULL;
  long long seed = 0;
  int dtype = MPUC_DT_F32, opt;
  while ((opt = getopt_long(argc, argv, "hVqo:", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_CONFIG: config_path = optarg; break;
    case OPT_SEED:
      if (cli_parse_int(optarg, 0, INT64_MAX, &seed)) return cli_usage_error("--seed: '%s' is not a seed", optarg);
      break;
    case OPT_DTYPE:
      dtype = !strcmp(optarg, "f32") ? MPUC_DT_F32 : !strcmp(optarg, "bf16") ? MPUC_DT_BF16
            : !strcmp(optarg, "f16") ? MPUC_DT_F16 : 0;
      if (!dtype) return cli_usage_error("--dtype: '%s' is not f32, bf16 or f16", optarg);
      break;
    case OPT_TOKENIZER: tok_choice = optarg; break;
    case OPT_TOKCONFIG: tok_config = optarg; break;
    default: return cli_usage_error("bad option");
    }
  }
  if (!config_path) return cli_usage_error("--config CONFIG.json is required");
  if (optind != argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
  mpu_err e = {0};
  json_t *cfg;
  if (json_load_object(config_path, &cfg, &e)) return cli_report(&e);
  llama_config lc;
  if (llama_config_parse(cfg, &lc, &e)) {
    mpu_fail_ctx(&e, "%s", config_path);
    json_decref(cfg);
    return cli_report(&e);
  }
  /* The tokenizer: its files become blobs; its special tokens go into the config. */
  char *tok_json = NULL, *tok_cfg_json = NULL;
  size_t tok_len = 0, tok_cfg_len = 0;
  if (load_tokenizer_files(tok_choice, tok_config, cfg, &lc, &tok_json, &tok_len, &tok_cfg_json, &tok_cfg_len, &e)) {
    json_decref(cfg);
    free(tok_json);
    free(tok_cfg_json);
    return cli_report(&e);
  }
  llama_tensor *ts;
  size_t n = llama_tensors(&lc, &ts);
  json_t *h = prov_header("init", json_pack("{s:I, s:s}", "seed", (json_int_t)seed, "dtype", mpuc_dtype_name(dtype)));
  json_object_set_new(cfg, "torch_dtype", json_string(torch_dtype_name(dtype)));
  json_object_set_new(h, "config", cfg);
  json_t *listing = json_object_get(h, "tensors"), *blobs = json_object_get(h, "blobs");
  if (tok_json) json_array_append_new(blobs, json_pack("{s:s, s:I}", "name", "tokenizer.json", "bytes", (json_int_t)tok_len));
  if (tok_cfg_json)
    json_array_append_new(blobs, json_pack("{s:s, s:I}", "name", "tokenizer_config.json", "bytes", (json_int_t)tok_cfg_len));
  uint64_t total = 0, largest = 0;
  for (size_t i = 0; i < n; i++) {
    json_t *shape = json_array();
    for (unsigned d = 0; d < ts[i].ndim; d++) json_array_append_new(shape, json_integer((json_int_t)ts[i].dims[d]));
    json_array_append_new(listing, json_pack("{s:s, s:s, s:o}", "name", ts[i].name, "dtype", mpuc_dtype_name(dtype),
                                             "shape", shape));
    uint64_t elems = ts[i].dims[0] * (ts[i].ndim > 1 ? ts[i].dims[1] : 1);
    total += elems;
    if (elems > largest) largest = elems;
  }
  char *hj = json_canonical(h);
  json_decref(h);
  ms_writer w;
  int rc = ms_writer_open(&w, c.output, &c.enc, hj, &e);
  free(hj);
  if (!rc && tok_json) {
    mpuc_entry b = {.name = "tokenizer.json", .name_len = 14, .kind = MPUC_KIND_BLOB, .raw_size = tok_len};
    rc = ms_write_entry(&w, &b, tok_json, &e);
  }
  if (!rc && tok_cfg_json) {
    mpuc_entry b = {.name = "tokenizer_config.json", .name_len = 21, .kind = MPUC_KIND_BLOB, .raw_size = tok_cfg_len};
    rc = ms_write_entry(&w, &b, tok_cfg_json, &e);
  }
  free(tok_json);
  free(tok_cfg_json);
  unsigned esize = mpuc_dtype_bits(dtype) / 8;
  uint8_t *buf = malloc(largest * esize + 1);
  cli_progress pg;
  cli_progress_start(&pg, c.progress, "initialising", total);
  uint64_t done = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    llama_tensor *t = &ts[i];
    uint64_t elems = t->dims[0] * (t->ndim > 1 ? t->dims[1] : 1), cols = t->ndim > 1 ? t->dims[1] : 1;
    int ones = t->role == LT_ATTN_NORM || t->role == LT_MLP_NORM || t->role == LT_FINAL_NORM;
    int zeros = t->role == LT_Q_BIAS || t->role == LT_K_BIAS || t->role == LT_V_BIAS || t->role == LT_O_BIAS ||
                t->role == LT_GATE_BIAS || t->role == LT_UP_BIAS || t->role == LT_DOWN_BIAS;
    for (uint64_t k = 0; k < elems; k++) {
      float x = ones ? 1.0f : zeros ? 0.0f
              : (float)(lc.init_range * rng_normal_at((uint32_t)seed, (uint32_t)((uint64_t)seed >> 32), (uint32_t)i,
                                                       0x696e6974u /* "init" */, k));
      if (t->role == LT_EMBED && lc.pad >= 0 && lc.pad < lc.vocab && k / cols == (uint64_t)lc.pad) x = 0.0f;
      if (dtype == MPUC_DT_F32) memcpy(buf + 4 * k, &x, 4);
      else {
        uint16_t hbits = dtype == MPUC_DT_BF16 ? f32_to_bf16(x) : f32_to_f16(x);
        memcpy(buf + 2 * k, &hbits, 2);
      }
    }
    mpuc_entry en = {.name = t->name, .name_len = strlen(t->name), .dtype = dtype, .ndim = t->ndim};
    en.dims[0] = t->dims[0];
    en.dims[1] = t->dims[1];
    rc = ms_write_entry(&w, &en, buf, &e);
    done += elems;
    cli_progress_update(&pg, done);
  }
  cli_progress_end(&pg);
  free(buf);
  free(ts);
  if (!rc) rc = ms_writer_close(&w, NULL, &e);
  if (rc) ms_writer_abort(&w);
  return rc ? cli_report(&e) : 0;
}
