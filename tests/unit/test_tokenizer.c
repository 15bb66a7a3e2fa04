/*
 * test_tokenizer.c -- lib/tokenizer.c against the Hugging Face `tokenizers`
 * library.
 *
 * tests/fixtures/tokenizer/ holds six tokenizer.json files (GPT-2, Llama-3
 * and Qwen2 styles trained by the library, the byte-level one of
 * tok_byte_level_json, and two that exercise the remaining options), the
 * corpus, and what the library answered for each string: its ids with and
 * without special tokens and their decodings (make_fixtures.js; node is not
 * needed here).  Every id must be identical.  Also: bos/eos/pad from the
 * configs, round trips, bytes to ids, chat prompts as Jinja renders them,
 * error messages, every code point of 27 regex classes as HF's Oniguruma
 * sees them (regex_classes.json), and speed.
 *
 *   test_tokenizer --byte-level-json   prints tok_byte_level_json() for make_fixtures.js
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "tap.h"
#include "tokenizer.h"

#define DIR "tests/fixtures/tokenizer/"

static const char *NAMES[] = {"gpt2", "llama3", "qwen2", "bytelevel", "misc", "plain"};
#define NNAMES (sizeof NAMES / sizeof *NAMES)

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf) buf[n] = 0;
  *len = (size_t)n;
  return buf;
}

static json_t *load_json(const char *name) {
  char path[256];
  snprintf(path, sizeof path, DIR "%s", name);
  json_error_t je;
  json_t *j = json_load_file(path, JSON_ALLOW_NUL, &je);
  if (!j) printf("# %s: %s\n", path, je.text);
  return j;
}

/* Loads fixture NAME with its config, if it has one. */
static tokenizer *load_fixture(const char *name, json_t *expected) {
  char path[256];
  size_t len, clen = 0;
  snprintf(path, sizeof path, DIR "%s.json", name);
  char *json = read_file(path, &len), *cfg = NULL;
  const char *cfgname = json_string_value(json_object_get(expected, "config"));
  if (cfgname) {
    snprintf(path, sizeof path, DIR "%s", cfgname);
    cfg = read_file(path, &clen);
  }
  tokenizer *t = NULL;
  mpu_err e = {0};
  if (!json || tok_load(&t, json, len, cfg, clen, &e)) printf("# %s: %s\n", name, json ? e.msg : "missing");
  free(json);
  free(cfg);
  return t;
}

/* The text, escaped and cut short, for a diagnostic line. */
static void print_text(const char *s, size_t n) {
  printf("\"");
  for (size_t i = 0; i < n && i < 80; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') printf("\\x%02x", c);
    else putchar(c);
  }
  printf(n > 80 ? "\"... (%zu bytes)" : "\"", n);
}

static void print_ids(const char *label, const tokenizer *t, const int32_t *ids, size_t n, size_t at) {
  printf("#   %s (%zu ids):", label, n);
  size_t from = at > 4 ? at - 4 : 0;
  for (size_t i = from; i < n && i < at + 5; i++) {
    const char *tok = tok_token_text(t, ids[i]);
    printf(" %s%d", i == at ? "*" : "", ids[i]);
    if (tok) printf("'%s'", tok);
  }
  printf("\n");
}

/* Compares our ids with HF's; prints the first difference with context. */
static int same_ids(const tokenizer *t, const char *what, size_t index, const char *text, size_t tlen, json_t *want,
                    const int32_t *got, size_t n) {
  size_t m = json_array_size(want), at = 0;
  while (at < m && at < n && json_integer_value(json_array_get(want, at)) == got[at]) at++;
  if (at == m && at == n) return 1;
  int32_t *w = malloc((m + 1) * sizeof *w);
  for (size_t i = 0; i < m; i++) w[i] = (int32_t)json_integer_value(json_array_get(want, i));
  printf("# %s, case %zu ", what, index);
  print_text(text, tlen);
  printf(": first difference at id %zu\n", at);
  print_ids("HF ", t, w, m, at);
  print_ids("mpu", t, got, n, at);
  free(w);
  return 0;
}

typedef struct {
  int32_t *ids;
  size_t n, cap;
} idbuf;

static int encode(const tokenizer *t, const char *s, size_t n, int special, idbuf *b, mpu_err *e) {
  b->n = 0;
  return tok_encode(t, s, n, special, &b->ids, &b->n, &b->cap, e);
}

/* One fixture: every corpus case, both ways, and the decodings. */
static void check_fixture(const char *name, json_t *corpus, size_t *matched, size_t *total) {
  char fname[64];
  snprintf(fname, sizeof fname, "%s.expected.json", name);
  json_t *exp = load_json(fname);
  tokenizer *t = exp ? load_fixture(name, exp) : NULL;
  CHECK(t != NULL);
  if (!t) {
    json_decref(exp);
    return;
  }
  CHECK_EQ_U64(tok_vocab_size(t), json_integer_value(json_object_get(exp, "vocab_size")));
  json_t *cases = json_object_get(exp, "cases");
  CHECK_EQ_U64(json_array_size(cases), json_array_size(corpus));
  idbuf plain = {0}, special = {0};
  size_t ok = 0, n = json_array_size(cases);
  for (size_t i = 0; i < n; i++) {
    json_t *c = json_array_get(cases, i), *text = json_array_get(corpus, i);
    const char *s = json_string_value(text);
    size_t len = json_string_length(text);
    mpu_err e = {0};
    int good = !encode(t, s, len, 0, &plain, &e) && !encode(t, s, len, 1, &special, &e);
    if (e.status) printf("# %s, case %zu: %s\n", name, i, e.msg);
    good = good && same_ids(t, name, i, s, len, json_object_get(c, "ids"), plain.ids, plain.n);
    good = good && same_ids(t, name, i, s, len, json_object_get(c, "ids_special"), special.ids, special.n);
    for (int skip = 0; good && skip < 2; skip++) {
      json_t *want = json_object_get(c, skip ? "decoded_skip" : "decoded");
      char *dec = NULL;
      size_t dlen = 0;
      good = !tok_decode(t, special.ids, special.n, skip, &dec, &dlen, &e) && dlen == json_string_length(want) &&
             !memcmp(dec, json_string_value(want), dlen);
      if (!good) {
        printf("# %s, case %zu: decode(skip_special=%d) gives ", name, i, skip);
        print_text(dec ? dec : "", dlen);
        printf(", HF ");
        print_text(json_string_value(want), json_string_length(want));
        printf("\n");
      }
      free(dec);
    }
    ok += good;
  }
  /* Chat prompts of the fixture's own template, encoded without specials. */
  json_t *chat = json_object_get(exp, "chat");
  for (size_t i = 0; i < json_array_size(chat); i++) {
    json_t *c = json_array_get(chat, i), *prompt = json_object_get(c, "prompt");
    mpu_err e = {0};
    int good = !encode(t, json_string_value(prompt), json_string_length(prompt), 0, &plain, &e) &&
               same_ids(t, name, i, json_string_value(prompt), json_string_length(prompt), json_object_get(c, "ids"),
                        plain.ids, plain.n);
    CHECK(good);
  }
  printf("# %s: %zu of %zu corpus cases identical to HF (%lld merges), %zu chat prompts\n", name, ok, n,
         json_integer_value(json_object_get(exp, "merges")), json_array_size(chat));
  CHECK_EQ_U64(ok, n);
  *matched += ok;
  *total += n;
  free(plain.ids);
  free(special.ids);
  tok_free(t);
  json_decref(exp);
}

TEST(ids_identical_to_hf_for_every_corpus_case) {
  json_t *corpus = load_json("corpus.json");
  CHECK(json_array_size(corpus) > 100);
  size_t matched = 0, total = 0;
  for (size_t k = 0; k < NNAMES; k++) check_fixture(NAMES[k], corpus, &matched, &total);
  printf("# all tokenizers: %zu of %zu cases identical\n", matched, total);
  json_decref(corpus);
}

/* bos/eos/pad as tokenizer_config.json names them: a string, an AddedToken
 * object, null. */
TEST(special_roles_come_from_the_config) {
  struct {
    const char *name, *bos, *eos, *pad;
  } want[] = {
    {"gpt2", "<|endoftext|>", "<|endoftext|>", NULL},
    {"llama3", "<|begin_of_text|>", "<|eot_id|>", NULL},
    {"qwen2", NULL, "<|im_end|>", "<|endoftext|>"},
    {"misc", "<s>", "</s>", NULL},
  };
  for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
    char fname[64];
    snprintf(fname, sizeof fname, "%s.expected.json", want[k].name);
    json_t *exp = load_json(fname);
    tokenizer *t = load_fixture(want[k].name, exp);
    CHECK(t != NULL);
    if (t) {
      int32_t bos = want[k].bos ? tok_token_id(t, want[k].bos) : -1, eos = tok_token_id(t, want[k].eos);
      int32_t pad = want[k].pad ? tok_token_id(t, want[k].pad) : -1;
      CHECK(tok_bos(t) == bos && tok_eos(t) == eos && tok_pad(t) == pad);
      CHECK(eos >= 0 && (!want[k].bos || bos >= 0) && (!want[k].pad || pad >= 0));
    }
    tok_free(t);
    json_decref(exp);
  }
}

/* decode(encode(x)) gives x back, NFC'd where the tokenizer normalizes. */
TEST(decode_of_encode_round_trips) {
  json_t *corpus = load_json("corpus.json");
  const char *names[] = {"gpt2", "llama3", "qwen2", "bytelevel"};
  for (size_t k = 0; k < 4; k++) {
    tokenizer *t = load_fixture(names[k], NULL);
    CHECK(t != NULL);
    idbuf b = {0};
    size_t bad = 0;
    for (size_t i = 0; t && i < json_array_size(corpus); i++) {
      json_t *text = json_array_get(corpus, i);
      const char *s = json_string_value(text);
      size_t len = json_string_length(text);
      utf8proc_uint8_t *nfc = NULL;
      if (!strcmp(names[k], "qwen2")) {
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &nfc,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        s = (const char *)nfc;
        len = (size_t)r;
      }
      mpu_err e = {0};
      char *dec = NULL;
      size_t dlen = 0;
      int good = !encode(t, json_string_value(text), json_string_length(text), 0, &b, &e) &&
                 !tok_decode(t, b.ids, b.n, 0, &dec, &dlen, &e) && dlen == len && !memcmp(dec, s, len);
      if (!good && bad++ < 3) {
        printf("# %s, case %zu: round trip gives ", names[k], i);
        print_text(dec ? dec : "", dlen);
        printf("\n");
      }
      free(dec);
      free(nfc);
    }
    CHECK_EQ_U64(bad, 0);
    free(b.ids);
    tok_free(t);
  }
  json_decref(corpus);
}

TEST(byte_level_tokenizer_maps_bytes_to_ids) {
  char *json = tok_byte_level_json();
  CHECK(json != NULL);
  json_t *mine = json_loads(json, 0, NULL), *fixture = load_json("bytelevel.json");
  CHECK(json_equal(mine, fixture)); /* the file HF was run on is what the code writes */
  json_decref(mine);
  json_decref(fixture);
  tokenizer *t = NULL;
  mpu_err e = {0};
  CHECK(tok_load(&t, json, strlen(json), NULL, 0, &e) == 0);
  free(json);
  if (!t) return;
  CHECK_EQ_U64(tok_vocab_size(t), 259);
  CHECK(tok_bos(t) == 256 && tok_eos(t) == 257 && tok_pad(t) == 258);
  CHECK(tok_token_id(t, "<|bos|>") == 256 && tok_is_special(t, 257) && !tok_is_special(t, 65));
  /* Every byte's symbol is its id; the text of every valid UTF-8 sequence
   * encodes to its bytes (bytes C0, C1, F5..FF never occur in UTF-8). */
  for (int b = 0; b < 256; b++) {
    const char *sym = tok_token_text(t, b);
    CHECK(sym && tok_token_id(t, sym) == b);
  }
  char text[4 * 0x1100 + 64];
  size_t len = 0;
  for (uint32_t cp = 0; cp < 0x110000; cp += cp < 0x800 ? 1 : cp < 0x10000 ? 61 : 4093)
    if (cp < 0xD800 || cp > 0xDFFF) len += (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)text + len);
  len += (size_t)utf8proc_encode_char(0x10FFFF, (utf8proc_uint8_t *)text + len);
  idbuf ids = {0};
  CHECK(encode(t, text, len, 1, &ids, &e) == 0);
  CHECK_EQ_U64(ids.n, len + 1);
  CHECK(ids.n && ids.ids[0] == 256);
  size_t wrong = 0;
  for (size_t i = 0; i + 1 < ids.n && i < len; i++) wrong += ids.ids[i + 1] != (unsigned char)text[i];
  CHECK_EQ_U64(wrong, 0);
  char *dec = NULL;
  size_t dlen;
  CHECK(tok_decode(t, ids.ids, ids.n, 1, &dec, &dlen, &e) == 0 && dlen == len && !memcmp(dec, text, len));
  free(dec);
  /* Bytes that are not UTF-8 decode to U+FFFD, one per maximal bad run. */
  int32_t bad[] = {0xE2, 0x82, 'a', 0xF0, 0x80, 0xFF};
  CHECK(tok_decode(t, bad, 6, 0, &dec, &dlen, &e) == 0);
  CHECK(dec && !strcmp(dec, "\xEF\xBF\xBD" "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
  free(dec);
  /* ids that name no token are left out, as HF does */
  int32_t unknown[] = {'H', 259, -1, 1 << 30, 'i', 256};
  CHECK(tok_decode(t, unknown, 6, 1, &dec, &dlen, &e) == 0 && dec && !strcmp(dec, "Hi"));
  free(dec);
  free(ids.ids);
  tok_free(t);
}

/* Each template, each conversation: the prompt Jinja rendered. */
TEST(chat_prompts_match_the_templates) {
  json_t *chat = load_json("chat.json"), *configs = json_object_get(chat, "configs");
  char *base = tok_byte_level_json();
  json_t *cases = json_object_get(chat, "cases");
  size_t ok = 0;
  for (size_t i = 0; i < json_array_size(cases); i++) {
    json_t *c = json_array_get(cases, i);
    const char *name = json_string_value(json_object_get(c, "template"));
    char *cfg = json_dumps(json_object_get(configs, name), 0);
    tokenizer *t = NULL;
    mpu_err e = {0};
    char *prompt = NULL;
    int rc = tok_load(&t, base, strlen(base), cfg, strlen(cfg), &e);
    if (!rc) rc = tok_chat_format_dated(t, json_string_value(json_object_get(c, "system")),
                                        json_string_value(json_object_get(c, "user")),
                                        json_string_value(json_object_get(c, "date")), &prompt, &e);
    const char *want = json_string_value(json_object_get(c, "prompt"));
    if (!rc && !strcmp(prompt, want)) {
      ok++;
    } else {
      printf("# %s, conversation %zu: %s\n#   want ", name, i, rc ? e.msg : "");
      print_text(want, strlen(want));
      printf("\n#   got  ");
      print_text(prompt ? prompt : "", prompt ? strlen(prompt) : 0);
      printf("\n");
    }
    free(prompt);
    free(cfg);
    tok_free(t);
  }
  printf("# %zu of %zu chat prompts as Jinja renders them\n", ok, json_array_size(cases));
  CHECK_EQ_U64(ok, json_array_size(cases));
  CHECK(json_array_size(cases) >= 25);
  /* tok_chat_format writes the templates' own fallback date */
  tokenizer *t = NULL;
  mpu_err e = {0};
  char *cfg = json_dumps(json_object_get(configs, "llama3.2"), 0), *prompt = NULL;
  CHECK(tok_load(&t, base, strlen(base), cfg, strlen(cfg), &e) == 0);
  CHECK(t && tok_chat_format(t, "sys", "hi", &prompt, &e) == 0);
  CHECK(prompt && strstr(prompt, "Today Date: 26 Jul 2024\n\nsys<|eot_id|>"));
  free(prompt);
  free(cfg);
  tok_free(t);
  free(base);
  json_decref(chat);
}

/* Loads json_text with the given config; returns the status, e.msg set. */
static int try_load(const char *json_text, const char *cfg, mpu_err *e) {
  tokenizer *t = NULL;
  int rc = tok_load(&t, json_text, strlen(json_text), cfg, cfg ? strlen(cfg) : 0, e);
  tok_free(t);
  return rc;
}

/* The byte-level tokenizer with one part replaced. */
static char *variant(const char *path, const char *key, const char *value_json) {
  char *base = tok_byte_level_json();
  json_t *j = json_loads(base, 0, NULL);
  free(base);
  json_t *target = j;
  if (path) target = json_object_get(j, path);
  json_object_set_new(target, key, json_loads(value_json, JSON_DECODE_ANY, NULL));
  char *out = json_dumps(j, 0);
  json_decref(j);
  return out;
}

static void expect_refusal(const char *path, const char *key, const char *value, const char *cfg, int status,
                           const char *words) {
  char *text = variant(path, key, value);
  mpu_err e = {0};
  int rc = try_load(text, cfg, &e);
  printf("# %s = %s: status %d: %s\n", key, value, rc, e.msg);
  CHECK(rc == status);
  CHECK(strstr(e.msg, words) != NULL);
  free(text);
}

TEST(errors_are_clear) {
  mpu_err e = {0};
  CHECK(try_load("{\"model\": ", NULL, &e) == 1 && strstr(e.msg, "bad JSON"));
  e = (mpu_err){0};
  CHECK(try_load("[1, 2]", NULL, &e) == 1 && strstr(e.msg, "not a JSON object"));
  expect_refusal("model", "type", "\"WordPiece\"", NULL, 1, "model type 'WordPiece' is not supported");
  expect_refusal(NULL, "pre_tokenizer", "{\"type\": \"Metaspace\", \"replacement\": \"_\"}", NULL, 1,
                 "pre_tokenizer 'Metaspace' is not supported");
  expect_refusal(NULL, "pre_tokenizer", "null", NULL, 1, "only byte-level BPE");
  expect_refusal(NULL, "pre_tokenizer",
                 "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\"}, {\"type\": \"Digits\"}]}", NULL,
                 1, "does not end with ByteLevel");
  expect_refusal(NULL, "normalizer", "{\"type\": \"NFKC\"}", NULL, 1, "normalizer 'NFKC' is not supported");
  expect_refusal(NULL, "decoder", "{\"type\": \"Metaspace\"}", NULL, 1, "decoder 'Metaspace' is not supported");
  expect_refusal(NULL, "post_processor", "{\"type\": \"BertProcessing\"}", NULL, 1,
                 "post_processor 'BertProcessing' is not supported");
  expect_refusal("model", "merges", "[\"a zz\"]", NULL, 1, "not in the vocab");
  expect_refusal("model", "merges", "[\"a b c\"]", NULL, 1, "is not two tokens");
  expect_refusal("model", "byte_fallback", "true", NULL, 1, "byte_fallback is not supported");
  expect_refusal("model", "dropout", "0.1", NULL, 1, "dropout is not supported");
  expect_refusal(NULL, "truncation", "{\"max_length\": 8}", NULL, 1, "truncation is not supported");
  expect_refusal(NULL, "pre_tokenizer",
                 "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"},"
                 " \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}",
                 NULL, 1, "does not compile");
  expect_refusal(NULL, "version", "\"2.0\"", NULL, 1, "unknown version");
  expect_refusal(NULL, "post_processor",
                 "{\"type\": \"Sequence\", \"processors\": [{\"type\": \"TemplateProcessing\", \"single\": []},"
                 " {\"type\": \"TemplateProcessing\", \"single\": []}]}",
                 NULL, 1, "more than one TemplateProcessing");
  char *base = tok_byte_level_json();
  e = (mpu_err){0};
  CHECK(try_load(base, "{\"bos_token\": ", &e) == 1 && strstr(e.msg, "tokenizer_config.json"));
  /* encoding refuses bytes that are not UTF-8; chat prompts name what they support */
  tokenizer *t = NULL;
  e = (mpu_err){0};
  const char *odd = "{\"chat_template\": \"{{ messages }}\"}";
  CHECK(tok_load(&t, base, strlen(base), odd, strlen(odd), &e) == 0);
  idbuf ids = {0};
  CHECK(t && encode(t, "ab\xC3", 3, 0, &ids, &e) == 1 && strstr(e.msg, "not valid UTF-8"));
  char *prompt = NULL;
  e = (mpu_err){0};
  CHECK(t && tok_chat_format(t, NULL, "hi", &prompt, &e) == 2 && strstr(e.msg, "Llama-3") && strstr(e.msg, "ChatML"));
  printf("# %s\n", e.msg);
  tok_free(t);
  e = (mpu_err){0};
  CHECK(tok_load(&t, base, strlen(base), NULL, 0, &e) == 0);
  e = (mpu_err){0};
  CHECK(t && tok_chat_format(t, NULL, "hi", &prompt, &e) == 2 && strstr(e.msg, "no chat_template"));
  tok_free(t);
  free(ids.ids);
  free(base);
}

/* Every code point's membership of each class, as PCRE2 runs the pattern
 * lib/tokenizer.c makes of it, against what HF's Oniguruma said. */
TEST(regex_classes_agree_with_oniguruma) {
  json_t *classes = load_json("regex_classes.json");
  CHECK(json_object_size(classes) >= 20);
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  const char *name;
  json_t *ranges;
  json_object_foreach(classes, name, ranges) {
    char *pat = tok_pcre2_pattern(name);
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err,
                                   &off, NULL);
    CHECK(re != NULL);
    if (!re) {
      free(pat);
      continue;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    size_t r = 0, wrong = 0, nr = json_array_size(ranges);
    uint32_t run = 0;
    for (uint32_t cp = 0; cp <= 0x110000; cp++) {
      int mine = 0, hf = 0;
      if (cp < 0x110000 && (cp < 0xD800 || cp > 0xDFFF)) {
        while (r < nr && json_integer_value(json_array_get(json_array_get(ranges, r), 1)) < cp) r++;
        hf = r < nr && json_integer_value(json_array_get(json_array_get(ranges, r), 0)) <= cp;
        utf8proc_uint8_t buf[4];
        utf8proc_ssize_t n = utf8proc_encode_char((utf8proc_int32_t)cp, buf);
        mine = pcre2_match(re, buf, (size_t)n, 0, PCRE2_ANCHORED, md, NULL) >= 0;
      }
      /* Prints the runs HF has and PCRE2 lacks: UNICODE_EXTRA's entries. */
      if (hf && !mine && !run) run = cp;
      if (!(hf && !mine) && run) {
        printf("# %s: HF only: \\x{%X}-\\x{%X}\n", name, run, cp - 1);
        run = 0;
      }
      if (hf != mine && wrong++ < 3) printf("# %s: U+%04X is %sin the class for HF\n", name, cp, hf ? "" : "not ");
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    }
    if (wrong) printf("# %s (PCRE2 /%.60s/): %zu code points differ\n", name, pat, wrong);
    CHECK_EQ_U64(wrong, 0);
    pcre2_code_free(re);
    free(pat);
  }
  pcre2_match_data_free(md);
  json_decref(classes);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A Llama-3-sized tokenizer.json (128k vocab, 280k merges) made of random
 * merges: what loading costs, and encoding with a big merge table. */
static char *big_tokenizer(void) {
  uint32_t cp[256], next = 256;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    cp[b] = printable ? (uint32_t)b : next++;
  }
  enum { VOCAB = 128000, MERGES = 280000 };
  char **tok = malloc(VOCAB * sizeof *tok);
  json_t *vocab = json_object(), *merges = json_array();
  size_t n = 0;
  for (int b = 0; b < 256; b++) {
    tok[n] = calloc(5, 1);
    utf8proc_encode_char((utf8proc_int32_t)cp[b], (utf8proc_uint8_t *)tok[n]);
    json_object_set_new(vocab, tok[n], json_integer((json_int_t)n));
    n++;
  }
  /* Letters and spaces merge most, as in text. */
  uint64_t rng = 88172645463325252ull;
  while (n < VOCAB) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    size_t a = (rng >> 8) % (n < 2000 ? n : 2000 + (rng >> 40) % (n - 2000 + 1));
    size_t b = 'a' + (rng >> 20) % 26;
    if (n > 4000) b = (rng >> 24) % n;
    char buf[256];
    size_t la = strlen(tok[a]), lb = strlen(tok[b]);
    if (la + lb > 24) continue; /* Llama-3's tokens are short too */
    memcpy(buf, tok[a], la);
    memcpy(buf + la, tok[b], lb + 1);
    if (json_object_get(vocab, buf)) continue;
    tok[n] = strdup(buf);
    json_object_set_new(vocab, buf, json_integer((json_int_t)n));
    json_array_append_new(merges, json_pack("[s,s]", tok[a], tok[b])); /* as HF writes them now */
    n++;
  }
  /* More merges than tokens, as Llama-3 has: the same pairs again. */
  for (size_t i = 0; json_array_size(merges) < MERGES; i++)
    json_array_append(merges, json_array_get(merges, i));
  char *base = tok_byte_level_json();
  json_t *j = json_loads(base, 0, NULL);
  free(base);
  json_object_set_new(json_object_get(j, "model"), "vocab", vocab);
  json_object_set_new(json_object_get(j, "model"), "merges", merges);
  char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  for (size_t i = 0; i < n; i++) free(tok[i]);
  free(tok);
  return text;
}

/* Several MB of the corpus and the training text. */
static char *big_text(size_t want, size_t *len) {
  size_t tlen;
  char *train = read_file(DIR "train.txt", &tlen);
  json_t *corpus = load_json("corpus.json");
  char *text = malloc(want + 65536);
  *len = 0;
  while (train && *len < want) {
    memcpy(text + *len, train, tlen);
    *len += tlen;
    for (size_t i = 0; i < json_array_size(corpus) && *len < want; i++) {
      size_t n = json_string_length(json_array_get(corpus, i));
      if (n > 2000) continue;
      memcpy(text + *len, json_string_value(json_array_get(corpus, i)), n);
      *len += n;
      text[(*len)++] = ' ';
    }
  }
  free(train);
  json_decref(corpus);
  return text;
}

static double encode_rate(const tokenizer *t, const char *text, size_t len, size_t *ntok) {
  idbuf ids = {0};
  mpu_err e = {0};
  double t0 = now();
  int rc = encode(t, text, len, 1, &ids, &e);
  double dt = now() - t0;
  CHECK(rc == 0);
  *ntok = ids.n;
  free(ids.ids);
  return len / dt / 1e6;
}

TEST(speed) {
  size_t len, ntok;
  char *text = big_text(8u << 20, &len);
  const char *names[] = {"gpt2", "llama3", "qwen2"};
  for (int k = 0; k < 3; k++) {
    tokenizer *t = load_fixture(names[k], NULL);
    if (!t) continue;
    double rate = encode_rate(t, text, len, &ntok);
    printf("# %s: encoded %.1f MB into %zu ids at %.1f MB/s\n", names[k], len / 1e6, ntok, rate);
    tok_free(t);
  }
  char *big = big_tokenizer();
  tokenizer *t = NULL;
  mpu_err e = {0};
  double t0 = now();
  CHECK(tok_load(&t, big, strlen(big), NULL, 0, &e) == 0);
  double load = now() - t0;
  printf("# 128000-token vocab, 280000 merges (%.1f MB of JSON): loaded in %.0f ms\n", strlen(big) / 1e6, load * 1e3);
  CHECK(load < 20); /* about 0.6 s here; this only catches the pathological */
  if (t) {
    double rate = encode_rate(t, text, len, &ntok);
    printf("# with it: encoded %.1f MB into %zu ids at %.1f MB/s\n", len / 1e6, ntok, rate);
  }
  tok_free(t);
  free(big);
  free(text);
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--byte-level-json")) {
    char *json = tok_byte_level_json();
    if (!json) return 2;
    puts(json);
    free(json);
    return 0;
  }
  RUN(ids_identical_to_hf_for_every_corpus_case);
  RUN(special_roles_come_from_the_config);
  RUN(decode_of_encode_round_trips);
  RUN(byte_level_tokenizer_maps_bytes_to_ids);
  RUN(chat_prompts_match_the_templates);
  RUN(errors_are_clear);
  RUN(regex_classes_agree_with_oniguruma);
  RUN(speed);
  return tap_done();
}
