/*
 * tokenizer.c -- byte-level BPE from Hugging Face tokenizer.json (see
 * tokenizer.h for what is supported).
 *
 * Encoding follows the HF `tokenizers` pipeline step for step, because ids
 * only match when every step matches:
 *
 *   1. added tokens with normalized=false split the raw text;
 *   2. each piece left is normalized (NFC) and split by the normalized=true
 *      added tokens;
 *   3. each piece left goes through the pre-tokenizer steps (Split, Digits),
 *      the last of which, ByteLevel, cuts it into words of byte symbols;
 *   4. each word goes through BPE: the pair with the lowest merge rank
 *      (leftmost on ties) is merged until no pair has a rank;
 *   5. the post-processor's template adds its special tokens.
 *
 * Words are kept as raw bytes: the byte-level symbol of byte b is one
 * character, so a word of n bytes starts as n symbols whose ids come from a
 * 256-entry table, and strings of symbols are only built for vocab lookups.
 */
#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

#define MAX_STEPS 16          /* pre-tokenizer steps after flattening Sequences */
#define DEFAULT_DATE "26 Jul 2024"

/* Unicode White_Space: what Oniguruma's \s and Rust regex's \s match. */
#define WS_CLASS "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
/* Oniguruma's Unicode \w (its Latin-1 table counts the superscript digits
 * and the fractions as word characters). */
#define ONIG_WORD_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}"
/* Rust regex's Unicode \w (AddedVocabulary's single_word test), widened
 * to Unicode 16 like Oniguruma's \w: both add the same new code points. */
#define RUST_WORD_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"
/* The regex of HF's ByteLevel pre-tokenizer (GPT-2's). */
#define GPT2_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* ================================================================ buffers */

/* The array p with room for need elements (doubling), NULL when out of
 * memory, p then left as it was. */
static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return p;
  size_t c = *cap ? *cap : 16;
  while (c < need) c *= 2;
  void *q = realloc(p, c * elem);
  if (q) *cap = c;
  return q;
}

typedef struct {
  char *s;
  size_t n, cap;
} sbuf;

static int sbuf_put(sbuf *b, const void *p, size_t n) {
  char *grown = grow(b->s, &b->cap, b->n + n + 1, 1);
  if (!grown) return -1;
  b->s = grown;
  memcpy(b->s + b->n, p, n);
  b->n += n;
  b->s[b->n] = 0;
  return 0;
}

static int sbuf_str(sbuf *b, const char *s) { return sbuf_put(b, s, strlen(s)); }

typedef struct {
  int32_t *v;
  size_t n, cap;
} ivec;

static int ivec_push(ivec *a, int32_t x) {
  int32_t *grown = grow(a->v, &a->cap, a->n + 1, sizeof *grown);
  if (!grown) return -1;
  a->v = grown;
  a->v[a->n++] = x;
  return 0;
}

/* Strings that live as long as the tokenizer, carved from big blocks so a
 * 128k-token vocab is not 128k mallocs. */
typedef struct arena_block {
  struct arena_block *next;
  size_t used, size;
  char data[];
} arena_block;

static char *arena_dup(arena_block **a, const char *s, size_t n) {
  if (!*a || (*a)->size - (*a)->used < n + 1) {
    size_t size = n + 1 > (1u << 20) ? n + 1 : (1u << 20);
    arena_block *b = malloc(sizeof *b + size);
    if (!b) return NULL;
    b->next = *a;
    b->used = 0;
    b->size = size;
    *a = b;
  }
  char *p = (*a)->data + (*a)->used;
  memcpy(p, s, n);
  p[n] = 0;
  (*a)->used += n + 1;
  return p;
}

static void arena_free(arena_block *a) {
  while (a) {
    arena_block *n = a->next;
    free(a);
    a = n;
  }
}

/* ================================================================ UTF-8 */

/* Length of the well-formed character at s, or 0 if there is none.  When 0,
 * *bad is the length of the maximal ill-formed subpart (Unicode 3.9, the
 * rule Rust's from_utf8_lossy replaces with one U+FFFD). */
static size_t utf8_char(const unsigned char *s, size_t n, size_t *bad) {
  unsigned char b = s[0];
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) need = 1;
  else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t k = 1; k <= need; k++) {
    unsigned char c = k < n ? s[k] : 0;
    if (k >= n || c < lo || c > hi) {
      *bad = k;
      return 0;
    }
    lo = 0x80;
    hi = 0xBF;
  }
  return need + 1;
}

static int utf8_valid(const char *s, size_t n) {
  size_t bad;
  for (size_t i = 0; i < n;) {
    size_t k = utf8_char((const unsigned char *)s + i, n - i, &bad);
    if (!k) return 0;
    i += k;
  }
  return 1;
}

/* Decodes the (valid) character at s[*i] and steps past it. */
static uint32_t utf8_next(const char *s, size_t *i) {
  const unsigned char *p = (const unsigned char *)s + *i;
  if (p[0] < 0x80) {
    *i += 1;
    return p[0];
  }
  if (p[0] < 0xE0) {
    *i += 2;
    return (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
  }
  if (p[0] < 0xF0) {
    *i += 3;
    return (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
  }
  *i += 4;
  return (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 | (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
}

/* Start of the character that ends at s[n-1]. */
static size_t utf8_prev(const char *s, size_t n) {
  while (n > 0 && ((unsigned char)s[n - 1] & 0xC0) == 0x80) n--;
  return n ? n - 1 : 0;
}

static size_t utf8_put(char *out, uint32_t cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Unicode White_Space (Rust's char::is_whitespace, regex \s). */
static int is_white_space(uint32_t c) {
  return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Python's str.isspace, which Jinja's trim filter strips. */
static int is_py_space(uint32_t c) { return is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other
 * 68 take the code points from U+0100 up, in byte order. */
static void byte_alphabet(uint32_t cp[256]) {
  uint32_t next = 256;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    cp[b] = printable ? (uint32_t)b : next++;
  }
}

/* ================================================================ hash maps */

/* String -> int32, open addressing.  The strings belong to the caller. */
typedef struct {
  const char *s;
  uint32_t len;
  int32_t val;
  uint64_t h;
} sm_slot;

typedef struct {
  sm_slot *slot;
  size_t mask, n;
} strmap;

static int sm_init(strmap *m, size_t expect) {
  size_t cap = 64;
  while (cap < expect * 2) cap *= 2;
  m->slot = calloc(cap, sizeof *m->slot);
  m->mask = cap - 1;
  m->n = 0;
  return m->slot ? 0 : -1;
}

static sm_slot *sm_find(const strmap *m, const char *s, size_t len, uint64_t h) {
  for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
    sm_slot *sl = &m->slot[i];
    if (!sl->s || (sl->h == h && sl->len == len && !memcmp(sl->s, s, len))) return sl;
  }
}

static int sm_get(const strmap *m, const char *s, size_t len, int32_t *val) {
  if (!m->slot) return 0;
  sm_slot *sl = sm_find(m, s, len, XXH3_64bits(s, len));
  if (!sl->s) return 0;
  *val = sl->val;
  return 1;
}

/* Inserts or replaces (the last value wins, as in a Rust HashMap). */
static int sm_put(strmap *m, const char *s, size_t len, int32_t val) {
  if ((m->n + 1) * 2 > m->mask + 1) {
    strmap bigger;
    if (sm_init(&bigger, m->n + 1)) return -1;
    for (size_t i = 0; i <= m->mask; i++)
      if (m->slot[i].s) *sm_find(&bigger, m->slot[i].s, m->slot[i].len, m->slot[i].h) = m->slot[i];
    bigger.n = m->n;
    free(m->slot);
    *m = bigger;
  }
  uint64_t h = XXH3_64bits(s, len);
  sm_slot *sl = sm_find(m, s, len, h);
  if (!sl->s) m->n++;
  *sl = (sm_slot){s, (uint32_t)len, val, h};
  return 0;
}

/* (u64 key) -> (rank, id): merges keyed by the pair of ids, and small
 * id -> index tables.  UINT64_MAX marks an empty slot; ids are < 2^31. */
typedef struct {
  uint64_t key;
  uint32_t rank;
  int32_t id;
} im_slot;

typedef struct {
  im_slot *slot;
  size_t mask, n;
} intmap;

static int im_init(intmap *m, size_t expect) {
  size_t cap = 64;
  while (cap < expect * 2) cap *= 2;
  m->slot = malloc(cap * sizeof *m->slot);
  if (!m->slot) return -1;
  for (size_t i = 0; i < cap; i++) m->slot[i].key = UINT64_MAX;
  m->mask = cap - 1;
  m->n = 0;
  return 0;
}

static size_t im_hash(uint64_t key) { return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17); }

static im_slot *im_find(const intmap *m, uint64_t key) {
  for (size_t i = im_hash(key) & m->mask;; i = (i + 1) & m->mask)
    if (m->slot[i].key == key || m->slot[i].key == UINT64_MAX) return &m->slot[i];
}

static const im_slot *im_get(const intmap *m, uint64_t key) {
  if (!m->slot) return NULL;
  const im_slot *s = im_find(m, key);
  return s->key == key ? s : NULL;
}

static int im_put(intmap *m, uint64_t key, uint32_t rank, int32_t id) {
  if ((m->n + 1) * 2 > m->mask + 1) {
    intmap bigger;
    if (im_init(&bigger, m->n + 1)) return -1;
    for (size_t i = 0; i <= m->mask; i++)
      if (m->slot[i].key != UINT64_MAX) *im_find(&bigger, m->slot[i].key) = m->slot[i];
    bigger.n = m->n;
    free(m->slot);
    *m = bigger;
  }
  im_slot *s = im_find(m, key);
  if (s->key == UINT64_MAX) m->n++;
  *s = (im_slot){key, rank, id};
  return 0;
}

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

/* ================================================================ regex */

/* Where the two engines' Unicode tables differ: the code points a general
 * category of HF's Oniguruma (Unicode 16) holds that PCRE2's older tables
 * (10.42: Unicode 14) leave unassigned.  Each string is added to the class.
 * test_tokenizer checks every code point of these classes against what the
 * HF library does, and prints the ranges this table lacks when they differ. */
static const struct {
  const char *name, *extra;
} UNICODE_EXTRA[] = {
  {"L",
     "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}"
     "\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}"
     "\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}\\x{113D3}"
     "\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}"
     "\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}\\x{16D40}-\\x{16D6C}\\x{18CFF}"
     "\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}"
     "\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"},
  {"Lu",
     "\\x{1C89}\\x{A7CB}-\\x{A7CC}\\x{A7DA}\\x{A7DC}\\x{10D50}-\\x{10D65}"},
  {"Ll",
     "\\x{1C8A}\\x{A7CD}\\x{A7DB}\\x{10D70}-\\x{10D85}\\x{1DF25}-\\x{1DF2A}"},
  {"Lm",
     "\\x{10D4E}\\x{10D6F}\\x{16D40}-\\x{16D42}\\x{16D6B}-\\x{16D6C}\\x{1E030}-\\x{1E06D}\\x{1E4EB}"},
  {"Lo",
     "\\x{105C0}-\\x{105F3}\\x{10D4A}-\\x{10D4D}\\x{10D4F}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}"
     "\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}\\x{113D3}"
     "\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}"
     "\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}\\x{16D43}-\\x{16D6A}\\x{18CFF}"
     "\\x{1B132}\\x{1B155}\\x{1E4D0}-\\x{1E4EA}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}"
     "\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"},
  {"M",
     "\\x{897}\\x{CF3}\\x{ECE}\\x{10D69}-\\x{10D6D}\\x{10EFC}-\\x{10EFF}\\x{11241}"
     "\\x{113B8}-\\x{113C0}\\x{113C2}\\x{113C5}\\x{113C7}-\\x{113CA}\\x{113CC}-\\x{113D0}\\x{113D2}"
     "\\x{113E1}-\\x{113E2}\\x{11F00}-\\x{11F01}\\x{11F03}\\x{11F34}-\\x{11F3A}\\x{11F3E}-\\x{11F42}"
     "\\x{11F5A}\\x{13440}\\x{13447}-\\x{13455}\\x{1611E}-\\x{1612F}\\x{1E08F}\\x{1E4EC}-\\x{1E4EF}"
     "\\x{1E5EE}-\\x{1E5EF}"},
  {"N",
     "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}"
     "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}"
     "\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}"},
  {"Nd",
     "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}"
     "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1E4F0}-\\x{1E4F9}"
     "\\x{1E5F1}-\\x{1E5FA}"},
  {"No",
     "\\x{1D2C0}-\\x{1D2D3}"},
  {"P",
     "\\x{1B4E}-\\x{1B4F}\\x{1B7F}\\x{10D6E}\\x{113D4}-\\x{113D5}\\x{113D7}-\\x{113D8}"
     "\\x{11B00}-\\x{11B09}\\x{11BE1}\\x{11F43}-\\x{11F4F}\\x{16D6D}-\\x{16D6F}\\x{1E5FF}"},
  {"S",
     "\\x{2427}-\\x{2429}\\x{2FFC}-\\x{2FFF}\\x{31E4}-\\x{31E5}\\x{31EF}\\x{10D8E}-\\x{10D8F}"
     "\\x{1CC00}-\\x{1CCEF}\\x{1CD00}-\\x{1CEB3}\\x{1F6DC}\\x{1F774}-\\x{1F776}\\x{1F77B}-\\x{1F77F}"
     "\\x{1F7D9}\\x{1F8B2}-\\x{1F8BB}\\x{1F8C0}-\\x{1F8C1}\\x{1FA75}-\\x{1FA77}\\x{1FA87}-\\x{1FA89}"
     "\\x{1FA8F}\\x{1FAAD}-\\x{1FAAF}\\x{1FABB}-\\x{1FABF}\\x{1FAC6}\\x{1FACE}-\\x{1FACF}"
     "\\x{1FADA}-\\x{1FADC}\\x{1FADF}\\x{1FAE8}-\\x{1FAE9}\\x{1FAF7}-\\x{1FAF8}\\x{1FBCB}-\\x{1FBEF}"},
  {"w",
     "\\x{897}\\x{CF3}\\x{ECE}\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}"
     "\\x{105C0}-\\x{105F3}\\x{10D40}-\\x{10D65}\\x{10D69}-\\x{10D6D}\\x{10D6F}-\\x{10D85}"
     "\\x{10EC2}-\\x{10EC4}\\x{10EFC}-\\x{10EFF}\\x{1123F}-\\x{11241}\\x{11380}-\\x{11389}\\x{1138B}"
     "\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}-\\x{113C0}\\x{113C2}\\x{113C5}\\x{113C7}-\\x{113CA}"
     "\\x{113CC}-\\x{113D3}\\x{113E1}-\\x{113E2}\\x{116D0}-\\x{116E3}\\x{11BC0}-\\x{11BE0}"
     "\\x{11BF0}-\\x{11BF9}\\x{11F00}-\\x{11F10}\\x{11F12}-\\x{11F3A}\\x{11F3E}-\\x{11F42}"
     "\\x{11F50}-\\x{11F5A}\\x{1342F}\\x{13440}-\\x{13455}\\x{13460}-\\x{143FA}\\x{16100}-\\x{16139}"
     "\\x{16D40}-\\x{16D6C}\\x{16D70}-\\x{16D79}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1CCF0}-\\x{1CCF9}"
     "\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}\\x{1E08F}\\x{1E4D0}-\\x{1E4F9}\\x{1E5D0}-\\x{1E5FA}"
     "\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"},
};

static const char *unicode_extra(const char *name, size_t n) {
  for (size_t i = 0; i < sizeof UNICODE_EXTRA / sizeof *UNICODE_EXTRA; i++)
    if (strlen(UNICODE_EXTRA[i].name) == n && !memcmp(UNICODE_EXTRA[i].name, name, n)) return UNICODE_EXTRA[i].extra;
  return NULL;
}

/* Class items for an escape whose meaning Oniguruma and PCRE2 do not share:
 * \s is Unicode White_Space (PCRE2 adds U+180E), \w is Oniguruma's word
 * (Alphabetic, marks, decimal digits, connectors, and the Latin-1 digits
 * and fractions), \h a hex digit (PCRE2: horizontal space), \d and \p{..}
 * widened to Unicode 16.  NULL: the escape means the same to both. */
static int class_items(char d, const char *name, size_t n, sbuf *out) {
  const char *extra;
  switch (d) {
  case 's': return sbuf_str(out, WS_CLASS) ? -1 : 1;
  case 'w': return sbuf_str(out, ONIG_WORD_CLASS) || sbuf_str(out, (extra = unicode_extra("w", 1)) ? extra : "") ? -1 : 1;
  case 'h': return sbuf_str(out, "0-9a-fA-F") ? -1 : 1;
  case 'd': return sbuf_str(out, "\\p{Nd}") || sbuf_str(out, (extra = unicode_extra("Nd", 2)) ? extra : "") ? -1 : 1;
  case 'p':
    if (!(extra = unicode_extra(name, n))) return 0;
    return sbuf_str(out, "\\p{") || sbuf_put(out, name, n) || sbuf_str(out, "}") || sbuf_str(out, extra) ? -1 : 1;
  }
  return 0;
}

/* Rewrites an Oniguruma (Ruby syntax) pattern for PCRE2 where the two
 * disagree on a class escape; everything else passes through.  An escape
 * outside a class becomes a class ([items], or [^items] for \S, \W, \H,
 * \D, \P{..}); inside a class, only the positive ones can be widened. */
static int onig_to_pcre2(const char *p, size_t n, sbuf *out) {
  int in_class = 0;
  size_t class_start = 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c == '\\' && i + 1 < n) {
      char d = p[++i];
      size_t esc = i - 1, name = 0, namelen = 0;
      if ((d == 'p' || d == 'P') && i + 1 < n && p[i + 1] == '{') {
        const char *close = memchr(p + i + 2, '}', n - i - 2);
        if (close) {
          name = i + 2;
          namelen = (size_t)(close - p) - name;
          i = (size_t)(close - p);
        }
      }
      int negated = d == 'S' || d == 'W' || d == 'H' || d == 'D' || d == 'P';
      char lower = negated ? (char)(d - 'A' + 'a') : d;
      size_t mark = out->n;
      int r = 0;
      if (!in_class) {
        if (sbuf_str(out, negated ? "[^" : "[")) return -1;
        r = class_items(lower, p + name, namelen, out);
        if (r > 0 && sbuf_str(out, "]")) return -1;
      } else if (!negated) {
        r = class_items(lower, p + name, namelen, out);
      }
      if (r < 0) return -1;
      if (r == 0) { /* the same in both: copied as written */
        out->n = mark;
        if (sbuf_put(out, p + esc, i + 1 - esc)) return -1;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = 1;
      class_start = i + 1;
      if (class_start < n && p[class_start] == '^') class_start++;
    } else if (in_class && c == ']' && i > class_start) {
      in_class = 0;
    }
    if (sbuf_put(out, &c, 1)) return -1;
  }
  return sbuf_put(out, "", 0);
}

char *tok_pcre2_pattern(const char *pattern) {
  sbuf out = {0};
  if (onig_to_pcre2(pattern, strlen(pattern), &out)) {
    free(out.s);
    return NULL;
  }
  return out.s;
}

/* literal: a Split {"String": ..} pattern, matched as is. */
static int rx_compile(pcre2_code **out, const char *pat, size_t len, int literal, const char *what, mpu_err *e) {
  sbuf tr = {0};
  uint32_t opts = PCRE2_UTF | PCRE2_UCP;
  if (literal) {
    opts = PCRE2_UTF | PCRE2_LITERAL; /* PCRE2 takes no other options with LITERAL */
    if (sbuf_put(&tr, pat, len)) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  } else {
    /* Ruby's ^ and $ match at every line. */
    opts |= PCRE2_MULTILINE;
    if (onig_to_pcre2(pat, len, &tr)) {
      free(tr.s);
      return mpu_fail(e, MPU_EUSAGE, "out of memory");
    }
  }
  int err;
  PCRE2_SIZE off;
  *out = pcre2_compile((PCRE2_SPTR)tr.s, tr.n, opts, &err, &off, NULL);
  free(tr.s);
  if (!*out) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: %s: regex /%.*s/ does not compile: %s", what, (int)(len > 200 ? 200 : len),
                    pat, (char *)msg);
  }
  pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* without JIT it is slower, not wrong */
  return 0;
}

/* Finds the next match in s[from..n); 1 found, 0 none, -1 error. */
static int rx_find(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, size_t from, size_t *ms,
                   size_t *me, mpu_err *e) {
  int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, md, NULL);
  /* A long run can overflow the JIT stack; the interpreter keeps its
   * backtracking on the heap. */
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
  if (rc == PCRE2_ERROR_NOMATCH) return 0;
  if (rc < 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    mpu_fail(e, MPU_EUSAGE, "regex match failed: %s", (char *)msg);
    return -1;
  }
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
  *ms = ov[0];
  *me = ov[1];
  return 1;
}

/* ================================================================ the tokenizer */

enum { PT_SPLIT, PT_BYTELEVEL };
enum { SB_REMOVED, SB_ISOLATED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS };

typedef struct {
  int kind;
  pcre2_code *re;             /* Split's pattern (Digits is a Split on \p{N}) */
  int behavior, invert;
  int add_prefix_space, use_regex; /* ByteLevel */
} pretok_step;

typedef struct {
  const char *content;        /* as in tokenizer.json */
  size_t len;
  const char *text;           /* what decoding writes (see add_token) */
  size_t text_len;
  int32_t id;
  unsigned char special, lstrip, rstrip, single_word, normalized;
} added_token;

/* Byte trie of added-token patterns, for leftmost-longest matching. */
typedef struct {
  int32_t first_child, next_sibling, id;
  unsigned char byte;
} trie_node;

typedef struct {
  trie_node *node;
  size_t n, cap;
  int32_t root[256];
  int empty;
} trie;

typedef struct {
  int32_t *ids; /* a special token's ids; NULL for the sequence itself */
  size_t n;
} tpl_item;

typedef struct {
  tpl_item *item;
  size_t n;
} template;

struct tokenizer {
  arena_block *arena;
  /* model */
  strmap vocab;
  size_t vocab_entries;       /* HF's model.get_vocab_size(): distinct tokens */
  const char **vocab_r;       /* id -> token, for ids <= max_model_id */
  int32_t max_model_id;
  intmap merges;              /* (left id, right id) -> (rank, merged id) */
  int32_t byte_id[256];       /* id of byte b's symbol, -1 if not in the vocab */
  int ignore_merges, fuse_unk;
  int32_t unk_id;             /* -1: none */
  const char *unk_missing;    /* unk_token named but not in the vocab */
  uint32_t byte_cp[256];
  int16_t cp_byte[324];       /* inverse of byte_cp */
  /* added vocabulary */
  added_token *added;         /* one per id, sorted by id at the end of loading */
  size_t nadded, added_cap;
  intmap added_index;         /* id -> index into added, while loading */
  strmap added_map;           /* content -> id */
  strmap special_set;         /* contents of special tokens */
  trie raw_trie, norm_trie;   /* normalized=false / normalized=true patterns */
  pcre2_code *word_re;        /* Rust's \w, for single_word */
  /* pipeline */
  int nfc;
  pretok_step step[MAX_STEPS];
  int nsteps;
  pcre2_code *gpt2_re;
  template tpl;               /* TemplateProcessing's single template */
  int has_template;
  int byte_level_decoder;
  /* tokenizer_config.json */
  int32_t bos, eos, pad;
  char *bos_text, *chat_template;
};

/* ================================================================ added tokens */

static int trie_init(trie *tr) {
  for (int i = 0; i < 256; i++) tr->root[i] = -1;
  tr->empty = 1;
  return 0;
}

static int32_t trie_child(const trie *tr, int32_t node, unsigned char b) {
  if (node < 0) return tr->root[b];
  for (int32_t c = tr->node[node].first_child; c >= 0; c = tr->node[c].next_sibling)
    if (tr->node[c].byte == b) return c;
  return -1;
}

static int32_t trie_add_child(trie *tr, int32_t node, unsigned char b) {
  trie_node *grown = grow(tr->node, &tr->cap, tr->n + 1, sizeof *grown);
  if (!grown) return -1;
  tr->node = grown;
  int32_t c = (int32_t)tr->n++;
  tr->node[c] = (trie_node){-1, -1, -1, b};
  if (node < 0) {
    tr->root[b] = c;
  } else {
    tr->node[c].next_sibling = tr->node[node].first_child;
    tr->node[node].first_child = c;
  }
  return c;
}

/* The first pattern given wins over a later identical one, as in HF's
 * Aho-Corasick automaton. */
static int trie_add(trie *tr, const char *s, size_t n, int32_t id) {
  int32_t node = -1;
  for (size_t i = 0; i < n; i++) {
    int32_t c = trie_child(tr, node, (unsigned char)s[i]);
    if (c < 0 && (c = trie_add_child(tr, node, (unsigned char)s[i])) < 0) return -1;
    node = c;
  }
  if (node >= 0 && tr->node[node].id < 0) tr->node[node].id = id;
  tr->empty = 0;
  return 0;
}

/* The longest pattern starting at s[pos]; 0 if none. */
static int trie_longest(const trie *tr, const char *s, size_t n, size_t pos, size_t *end, int32_t *id) {
  int found = 0;
  int32_t node = -1;
  for (size_t i = pos; i < n; i++) {
    node = trie_child(tr, node, (unsigned char)s[i]);
    if (node < 0) break;
    if (tr->node[node].id >= 0) {
      found = 1;
      *end = i + 1;
      *id = tr->node[node].id;
    }
  }
  return found;
}

static const added_token *added_by_id(const tokenizer *t, int32_t id) {
  size_t lo = 0, hi = t->nadded;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (t->added[mid].id == id) return &t->added[mid];
    if (t->added[mid].id < id) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

static int32_t token_to_id(const tokenizer *t, const char *s, size_t n) {
  int32_t id;
  if (sm_get(&t->added_map, s, n, &id)) return id;
  if (sm_get(&t->vocab, s, n, &id)) return id;
  return -1;
}

/* Rust regex \w on the character at s[i] (the word test of single_word). */
static int is_word_char_at(const tokenizer *t, pcre2_match_data *md, const char *s, size_t n, size_t i) {
  int rc = pcre2_match(t->word_re, (PCRE2_SPTR)s, n, i, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, md, NULL);
  return rc >= 0;
}

typedef struct {
  size_t b, e;
  int32_t id; /* -1: text, not an added token */
} piece;

typedef struct {
  piece *v;
  size_t n, cap;
} piecevec;

static int piece_push(piecevec *pv, size_t b, size_t e, int32_t id) {
  piece *grown = grow(pv->v, &pv->cap, pv->n + 1, sizeof *grown);
  if (!grown) return -1;
  pv->v = grown;
  pv->v[pv->n++] = (piece){b, e, id};
  return 0;
}

/* HF's AddedVocabulary::find_matches: leftmost-longest matches, each
 * checked against its token's single_word and widened by lstrip/rstrip;
 * the iteration goes on after a discarded match's end, as the automaton's
 * does. */
static int find_added(const tokenizer *t, const trie *tr, pcre2_match_data *md, const char *s, size_t n, piecevec *out) {
  out->n = 0;
  size_t start_offset = 0, pos = 0;
  while (pos < n) {
    size_t stop = pos;
    int32_t id = -1;
    if (!trie_longest(tr, s, n, pos, &stop, &id)) {
      pos++;
      continue;
    }
    size_t start = pos;
    pos = stop;
    const added_token *tok = added_by_id(t, id);
    if (tok->single_word) {
      int start_space = start == 0 || !is_word_char_at(t, md, s, n, utf8_prev(s, start));
      int stop_space = stop == n || !is_word_char_at(t, md, s, n, stop);
      if (!start_space || !stop_space) continue;
    }
    if (tok->lstrip) {
      size_t ns = start;
      while (ns > 0) {
        size_t p = utf8_prev(s, ns), q = p;
        if (!is_white_space(utf8_next(s, &q))) break;
        ns = p;
      }
      start = ns > start_offset ? ns : start_offset;
    }
    if (tok->rstrip) {
      while (stop < n) {
        size_t q = stop;
        if (!is_white_space(utf8_next(s, &q))) break;
        stop = q;
      }
    }
    if (start_offset < start && piece_push(out, start_offset, start, -1)) return -1;
    if (piece_push(out, start, stop, id)) return -1;
    start_offset = stop;
  }
  if (start_offset != n && piece_push(out, start_offset, n, -1)) return -1;
  return 0;
}

/* ================================================================ encoding */

typedef struct {
  size_t b, e;
  int match;
} span;

typedef struct {
  span *v;
  size_t n, cap;
} spanvec;

typedef struct {
  int32_t id, prev, next, len;
} symbol;

typedef struct {
  uint32_t rank;
  int32_t pos, id;
} merge_cand;

typedef struct {
  const tokenizer *t;
  mpu_err *e;
  ivec out;
  pcre2_match_data *md;
  piecevec raw, norm;
  spanvec spans[MAX_STEPS];
  sbuf prefixed, mapped;
  symbol *sym;
  size_t symcap;
  merge_cand *heap;
  size_t heapn, heapcap;
} encoder;

static int oom(encoder *x) { return mpu_fail(x->e, MPU_EUSAGE, "out of memory"), -1; }

static int span_push(spanvec *v, size_t b, size_t e, int match) {
  span *grown = grow(v->v, &v->cap, v->n + 1, sizeof *grown);
  if (!grown) return -1;
  v->v = grown;
  v->v[v->n++] = (span){b, e, match};
  return 0;
}

static int cand_less(merge_cand a, merge_cand b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

static int heap_push(encoder *x, merge_cand c) {
  merge_cand *grown = grow(x->heap, &x->heapcap, x->heapn + 1, sizeof *grown);
  if (!grown) return -1;
  x->heap = grown;
  size_t i = x->heapn++;
  while (i > 0 && cand_less(c, x->heap[(i - 1) / 2])) {
    x->heap[i] = x->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  x->heap[i] = c;
  return 0;
}

static merge_cand heap_pop(encoder *x) {
  merge_cand top = x->heap[0], last = x->heap[--x->heapn];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= x->heapn) break;
    if (c + 1 < x->heapn && cand_less(x->heap[c + 1], x->heap[c])) c++;
    if (!cand_less(x->heap[c], last)) break;
    x->heap[i] = x->heap[c];
    i = c;
  }
  if (x->heapn) x->heap[i] = last;
  return top;
}

/* Queues the merge of symbol pos with the symbol after it, if there is one. */
static int queue_pair(encoder *x, int32_t pos) {
  const symbol *s = x->sym;
  if (pos < 0 || s[pos].next < 0) return 0;
  const im_slot *m = im_get(&x->t->merges, pair_key(s[pos].id, s[s[pos].next].id));
  return m ? heap_push(x, (merge_cand){m->rank, pos, m->id}) : 0;
}

/* HF's Word::merge_all: pops the best candidate, skips it if a merge since
 * queuing changed either side, merges, and queues the two new pairs. */
static int merge_symbols(encoder *x, size_t ns) {
  symbol *s = x->sym;
  x->heapn = 0;
  for (size_t i = 0; i + 1 < ns; i++)
    if (queue_pair(x, (int32_t)i)) return -1;
  while (x->heapn) {
    merge_cand top = heap_pop(x);
    symbol *cur = &s[top.pos];
    if (cur->len == 0 || cur->next < 0) continue;
    int32_t right = cur->next;
    const im_slot *m = im_get(&x->t->merges, pair_key(cur->id, s[right].id));
    if (!m || m->id != top.id) continue;
    cur->id = top.id;
    cur->len += s[right].len;
    cur->next = s[right].next;
    s[right].len = 0;
    if (cur->next >= 0) s[cur->next].prev = top.pos;
    if (queue_pair(x, cur->prev) || queue_pair(x, top.pos)) return -1;
  }
  return 0;
}

/* The word's bytes as byte-level symbols, for a vocab lookup. */
static int map_word(encoder *x, const unsigned char *w, size_t n) {
  x->mapped.n = 0;
  for (size_t i = 0; i < n; i++) {
    char u[4];
    if (sbuf_put(&x->mapped, u, utf8_put(u, x->t->byte_cp[w[i]]))) return -1;
  }
  return 0;
}

static int add_symbol(encoder *x, size_t *ns, int32_t id, int32_t len) {
  symbol *grown = grow(x->sym, &x->symcap, *ns + 1, sizeof *grown);
  if (!grown) return -1;
  x->sym = grown;
  x->sym[*ns] = (symbol){id, (int32_t)*ns - 1, -1, len};
  if (*ns) x->sym[*ns - 1].next = (int32_t)*ns;
  (*ns)++;
  return 0;
}

/* HF's BPE::merge_word: one symbol per byte; a byte whose symbol is not in
 * the vocab becomes unk_token (runs fused with fuse_unk) or is dropped. */
static int bpe_word(encoder *x, const unsigned char *w, size_t n) {
  const tokenizer *t = x->t;
  if (t->ignore_merges) {
    int32_t id;
    if (map_word(x, w, n)) return oom(x);
    if (sm_get(&t->vocab, x->mapped.s, x->mapped.n, &id)) return ivec_push(&x->out, id) ? oom(x) : 0;
  }
  size_t ns = 0;
  int32_t unk_len = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t id = t->byte_id[w[i]];
    if (id >= 0) {
      if (unk_len && add_symbol(x, &ns, t->unk_id, unk_len)) return oom(x);
      unk_len = 0;
      if (add_symbol(x, &ns, id, 1)) return oom(x);
    } else if (t->unk_missing) {
      return mpu_fail(x->e, MPU_EVERIFY, "tokenizer.json: unk_token '%s' is not in the vocab", t->unk_missing), -1;
    } else if (t->unk_id >= 0) {
      if (unk_len && !t->fuse_unk && add_symbol(x, &ns, t->unk_id, unk_len)) return oom(x);
      unk_len = unk_len && t->fuse_unk ? unk_len + 1 : 1;
    }
  }
  if (unk_len && add_symbol(x, &ns, t->unk_id, unk_len)) return oom(x);
  if (merge_symbols(x, ns)) return oom(x);
  for (size_t i = 0; i < ns; i++)
    if (x->sym[i].len && ivec_push(&x->out, x->sym[i].id)) return oom(x);
  return 0;
}

/* HF's Pattern::find_matches: the whole of s as (span, is_match) pieces. */
static int regex_spans(encoder *x, const pcre2_code *re, int invert, const char *s, size_t n, spanvec *out) {
  out->n = 0;
  size_t prev = 0, pos = 0;
  while (pos <= n) {
    size_t ms, me;
    int r = rx_find(re, x->md, s, n, pos, &ms, &me, x->e);
    if (r < 0) return -1;
    if (!r) break;
    if (prev != ms && span_push(out, prev, ms, 0)) return oom(x);
    if (span_push(out, ms, me, 1)) return oom(x);
    prev = me;
    if (me > ms) {
      pos = me;
    } else {
      if (ms >= n) break;
      pos = ms;
      utf8_next(s, &pos);
    }
  }
  if (prev != n && span_push(out, prev, n, 0)) return oom(x);
  if (invert)
    for (size_t i = 0; i < out->n; i++) out->v[i].match = !out->v[i].match;
  return 0;
}

/* HF's NormalizedString::split: what each SplitDelimiterBehavior keeps of
 * the (span, is_match) list, in place. */
static void apply_behavior(spanvec *v, int behavior) {
  size_t w = 0;
  int prev_match = 0;
  switch (behavior) {
  case SB_ISOLATED:
    return;
  case SB_REMOVED:
    for (size_t r = 0; r < v->n; r++)
      if (!v->v[r].match) v->v[w++] = v->v[r];
    break;
  case SB_CONTIGUOUS:
  case SB_MERGED_PREV:
    for (size_t r = 0; r < v->n; r++) {
      int m = v->v[r].match;
      int join = behavior == SB_CONTIGUOUS ? m == prev_match : m && !prev_match;
      if (join && w) v->v[w - 1].e = v->v[r].e;
      else v->v[w++] = v->v[r];
      prev_match = m;
    }
    break;
  case SB_MERGED_NEXT: {
    /* Walks backwards, writing from the end, then moves the result down. */
    size_t top = v->n;
    for (size_t r = v->n; r-- > 0;) {
      int m = v->v[r].match;
      if (m && !prev_match && top < v->n) v->v[top].b = v->v[r].b;
      else v->v[--top] = v->v[r];
      prev_match = m;
    }
    w = v->n - top;
    memmove(v->v, v->v + top, w * sizeof *v->v);
    break;
  }
  }
  v->n = w;
}

/* The last step: the word split of ByteLevel, then BPE on each word. */
static int byte_level_words(encoder *x, const pretok_step *st, const char *s, size_t n) {
  if (st->add_prefix_space && s[0] != ' ') {
    x->prefixed.n = 0;
    if (sbuf_put(&x->prefixed, " ", 1) || sbuf_put(&x->prefixed, s, n)) return oom(x);
    s = x->prefixed.s;
    n = x->prefixed.n;
  }
  if (!st->use_regex) return bpe_word(x, (const unsigned char *)s, n);
  /* Isolated: matches and the text between them are all words. */
  size_t prev = 0, pos = 0;
  while (pos < n) {
    size_t ms, me;
    int r = rx_find(x->t->gpt2_re, x->md, s, n, pos, &ms, &me, x->e);
    if (r < 0) return -1;
    if (!r) break;
    if (prev < ms && bpe_word(x, (const unsigned char *)s + prev, ms - prev)) return -1;
    if (me > ms && bpe_word(x, (const unsigned char *)s + ms, me - ms)) return -1;
    prev = me;
    pos = me;
    if (me == ms) utf8_next(s, &pos);
  }
  if (prev < n && bpe_word(x, (const unsigned char *)s + prev, n - prev)) return -1;
  return 0;
}

/* Runs pre-tokenizer step `depth` on a non-empty piece and recurses into the
 * pieces it keeps (HF drops empty ones). */
static int pre_tokenize(encoder *x, int depth, const char *s, size_t n) {
  const pretok_step *st = &x->t->step[depth];
  if (st->kind == PT_BYTELEVEL) return byte_level_words(x, st, s, n);
  spanvec *v = &x->spans[depth];
  if (regex_spans(x, st->re, st->invert, s, n, v)) return -1;
  apply_behavior(v, st->behavior);
  for (size_t i = 0; i < v->n; i++)
    if (v->v[i].e > v->v[i].b && pre_tokenize(x, depth + 1, s + v->v[i].b, v->v[i].e - v->v[i].b)) return -1;
  return 0;
}

/* Step 2: normalize a piece of text, split it by the normalized added
 * tokens, pre-tokenize the rest. */
static int encode_normalized(encoder *x, const char *s, size_t n) {
  const tokenizer *t = x->t;
  utf8proc_uint8_t *nfc = NULL;
  if (t->nfc) {
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &nfc,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (r < 0) return mpu_fail(x->e, MPU_EUSAGE, "NFC: %s", utf8proc_errmsg(r)), -1;
    s = (const char *)nfc;
    n = (size_t)r;
  }
  int rc = 0;
  if (t->norm_trie.empty) {
    rc = n ? pre_tokenize(x, 0, s, n) : 0;
  } else if (find_added(t, &t->norm_trie, x->md, s, n, &x->norm)) {
    rc = oom(x);
  } else {
    for (size_t i = 0; i < x->norm.n && !rc; i++) {
      piece p = x->norm.v[i];
      if (p.id >= 0) rc = ivec_push(&x->out, p.id) ? oom(x) : 0;
      else if (p.e > p.b) rc = pre_tokenize(x, 0, s + p.b, p.e - p.b);
    }
  }
  free(nfc);
  return rc;
}

static int encode_text(encoder *x, const char *s, size_t n) {
  const tokenizer *t = x->t;
  if (t->raw_trie.empty) return n ? encode_normalized(x, s, n) : 0;
  if (find_added(t, &t->raw_trie, x->md, s, n, &x->raw)) return oom(x);
  /* encode_normalized reuses x->norm, never x->raw */
  for (size_t i = 0; i < x->raw.n; i++) {
    piece p = x->raw.v[i];
    if (p.id >= 0) {
      if (ivec_push(&x->out, p.id)) return oom(x);
    } else if (p.e > p.b && encode_normalized(x, s + p.b, p.e - p.b)) {
      return -1;
    }
  }
  return 0;
}

/* TemplateProcessing: the single template's special tokens around the ids. */
static int post_process(encoder *x) {
  const template *tp = &x->t->tpl;
  ivec done = {0};
  for (size_t i = 0; i < tp->n; i++) {
    const tpl_item *it = &tp->item[i];
    const int32_t *src = it->ids ? it->ids : x->out.v;
    size_t cnt = it->ids ? it->n : x->out.n;
    for (size_t j = 0; j < cnt; j++)
      if (ivec_push(&done, src[j])) {
        free(done.v);
        return oom(x);
      }
  }
  free(x->out.v);
  x->out = done;
  return 0;
}

static void encoder_free(encoder *x) {
  free(x->out.v);
  pcre2_match_data_free(x->md);
  free(x->raw.v);
  free(x->norm.v);
  for (int i = 0; i < MAX_STEPS; i++) free(x->spans[i].v);
  free(x->prefixed.s);
  free(x->mapped.s);
  free(x->sym);
  free(x->heap);
}

int tok_encode(const tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids, size_t *n,
               size_t *cap, mpu_err *e) {
  if (!utf8_valid(text, len)) return mpu_fail(e, MPU_EVERIFY, "text to encode is not valid UTF-8");
  encoder x = {.t = t, .e = e};
  x.md = pcre2_match_data_create(1, NULL);
  if (!x.md) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  int rc = encode_text(&x, text, len) ? e->status : 0;
  if (!rc && add_special && t->has_template && post_process(&x)) rc = e->status;
  int32_t *grown = rc ? NULL : grow(*ids, cap, *n + x.out.n + 1, sizeof *grown);
  if (!rc && !grown) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  if (grown) *ids = grown;
  if (!rc && x.out.n) {
    memcpy(*ids + *n, x.out.v, x.out.n * sizeof **ids);
    *n += x.out.n;
  }
  encoder_free(&x);
  return rc;
}

/* ================================================================ decoding */

/* Rust's String::from_utf8_lossy: each maximal ill-formed subpart becomes
 * one U+FFFD. */
static int lossy_utf8(const char *s, size_t n, sbuf *out) {
  for (size_t i = 0; i < n;) {
    size_t bad, k = utf8_char((const unsigned char *)s + i, n - i, &bad);
    if (k) {
      if (sbuf_put(out, s + i, k)) return -1;
      i += k;
    } else {
      if (sbuf_put(out, "\xEF\xBF\xBD", 3)) return -1;
      i += bad;
    }
  }
  return sbuf_put(out, "", 0);
}

/* ByteLevel's decoder: a token made only of byte symbols gives those bytes,
 * any other token (a special token with a space, say) its own text. */
static int byte_level_token(const tokenizer *t, const char *tok, sbuf *raw) {
  size_t len = strlen(tok), start = raw->n;
  for (size_t i = 0; i < len;) {
    uint32_t cp = utf8_next(tok, &i);
    int b = cp < 324 ? t->cp_byte[cp] : -1;
    if (b < 0) {
      raw->n = start;
      return sbuf_put(raw, tok, len);
    }
    unsigned char c = (unsigned char)b;
    if (sbuf_put(raw, &c, 1)) return -1;
  }
  return 0;
}

const char *tok_token_text(const tokenizer *t, int32_t id) {
  const added_token *a = added_by_id(t, id);
  if (a) return a->text;
  if (id < 0 || id > t->max_model_id) return NULL;
  return t->vocab_r[id];
}

static int is_special_text(const tokenizer *t, const char *tok) {
  int32_t v;
  return sm_get(&t->special_set, tok, strlen(tok), &v);
}

int tok_is_special(const tokenizer *t, int32_t id) {
  const char *tok = tok_token_text(t, id);
  return tok && is_special_text(t, tok);
}

int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text, size_t *len,
               mpu_err *e) {
  sbuf raw = {0}, out = {0};
  int first = 1, rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    const char *tok = tok_token_text(t, ids[i]);
    if (!tok || (skip_special && is_special_text(t, tok))) continue;
    if (t->byte_level_decoder) rc = byte_level_token(t, tok, &raw);
    else rc = (!first && sbuf_put(&raw, " ", 1)) || sbuf_str(&raw, tok);
    first = 0;
  }
  if (!rc) rc = t->byte_level_decoder ? lossy_utf8(raw.s ? raw.s : "", raw.n, &out) : sbuf_put(&raw, "", 0);
  if (rc) {
    free(raw.s);
    free(out.s);
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  if (t->byte_level_decoder) {
    free(raw.s);
    raw = out;
  }
  *text = raw.s;
  *len = raw.n;
  return 0;
}

/* ================================================================ queries */

int32_t tok_token_id(const tokenizer *t, const char *token) { return token_to_id(t, token, strlen(token)); }

size_t tok_vocab_size(const tokenizer *t) {
  int32_t top = t->max_model_id;
  for (size_t i = 0; i < t->nadded; i++)
    if (t->added[i].id > top) top = t->added[i].id;
  return (size_t)top + 1;
}

int32_t tok_bos(const tokenizer *t) { return t->bos; }
int32_t tok_eos(const tokenizer *t) { return t->eos; }
int32_t tok_pad(const tokenizer *t) { return t->pad; }

/* ================================================================ loading */

static const char *type_of(json_t *o) { return json_string_value(json_object_get(o, "type")); }

static int get_flag(json_t *o, const char *key, int dflt) {
  json_t *v = json_object_get(o, key);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int load_vocab(tokenizer *t, json_t *vocab, mpu_err *e) {
  if (!json_is_object(vocab)) return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: model.vocab is not an object");
  t->vocab_entries = json_object_size(vocab);
  if (sm_init(&t->vocab, t->vocab_entries)) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  const char *key;
  size_t klen;
  json_t *v;
  t->max_model_id = -1;
  json_object_keylen_foreach(vocab, key, klen, v) {
    json_int_t id = json_integer_value(v);
    if (!json_is_integer(v) || id < 0 || id >= INT32_MAX)
      return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: vocab entry '%.100s' has no valid id", key);
    const char *s = arena_dup(&t->arena, key, klen);
    if (!s || sm_put(&t->vocab, s, klen, (int32_t)id)) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    if (id > t->max_model_id) t->max_model_id = (int32_t)id;
  }
  t->vocab_r = calloc((size_t)t->max_model_id + 1, sizeof *t->vocab_r);
  if (!t->vocab_r) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  for (size_t i = 0; i <= t->vocab.mask; i++)
    if (t->vocab.slot[i].s) t->vocab_r[t->vocab.slot[i].val] = t->vocab.slot[i].s;
  return 0;
}

/* One merge, "a b" or ["a", "b"], into (a, b) -> (rank, id of ab). */
static int load_merge(tokenizer *t, json_t *m, size_t rank, sbuf *tmp, mpu_err *e) {
  const char *a, *b;
  size_t alen, blen;
  if (json_is_string(m)) {
    a = json_string_value(m);
    const char *sp = memchr(a, ' ', json_string_length(m));
    if (!sp || memchr(sp + 1, ' ', json_string_length(m) - (size_t)(sp + 1 - a)))
      return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: merge %zu ('%.100s') is not two tokens", rank + 1, a);
    alen = (size_t)(sp - a);
    b = sp + 1;
    blen = json_string_length(m) - alen - 1;
  } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
             json_is_string(json_array_get(m, 1))) {
    a = json_string_value(json_array_get(m, 0));
    alen = json_string_length(json_array_get(m, 0));
    b = json_string_value(json_array_get(m, 1));
    blen = json_string_length(json_array_get(m, 1));
  } else {
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: merge %zu is neither \"a b\" nor [a, b]", rank + 1);
  }
  int32_t ia, ib, inew;
  tmp->n = 0;
  if (sbuf_put(tmp, a, alen) || sbuf_put(tmp, b, blen)) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  if (!sm_get(&t->vocab, a, alen, &ia) || !sm_get(&t->vocab, b, blen, &ib) || !sm_get(&t->vocab, tmp->s, tmp->n, &inew))
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: merge %zu ('%.*s' '%.*s') uses a token that is not in the vocab",
                    rank + 1, (int)(alen > 100 ? 100 : alen), a, (int)(blen > 100 ? 100 : blen), b);
  if (im_put(&t->merges, pair_key(ia, ib), (uint32_t)rank, inew)) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  return 0;
}

static int refuse_option(json_t *model, const char *key, mpu_err *e) {
  json_t *v = json_object_get(model, key);
  if (v && !json_is_null(v) && !(json_is_string(v) && !json_string_length(v)))
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: BPE %s is not supported", key);
  return 0;
}

static int load_model(tokenizer *t, json_t *model, mpu_err *e) {
  if (!json_is_object(model)) return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: no model");
  const char *type = type_of(model);
  if (type && strcmp(type, "BPE"))
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: model type '%s' is not supported (only BPE)", type);
  json_t *dropout = json_object_get(model, "dropout");
  if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0)
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: BPE dropout is not supported (it makes encoding random)");
  if (refuse_option(model, "continuing_subword_prefix", e) || refuse_option(model, "end_of_word_suffix", e)) return e->status;
  if (get_flag(model, "byte_fallback", 0))
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: BPE byte_fallback is not supported (only byte-level BPE)");
  t->ignore_merges = get_flag(model, "ignore_merges", 0);
  t->fuse_unk = get_flag(model, "fuse_unk", 0);
  if (load_vocab(t, json_object_get(model, "vocab"), e)) return e->status;

  json_t *merges = json_object_get(model, "merges");
  if (!json_is_array(merges)) return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: model.merges is not an array");
  if (im_init(&t->merges, json_array_size(merges))) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  sbuf tmp = {0};
  for (size_t i = 0; i < json_array_size(merges); i++)
    if (load_merge(t, json_array_get(merges, i), i, &tmp, e)) break;
  free(tmp.s);
  if (e->status) return e->status;

  byte_alphabet(t->byte_cp);
  for (int i = 0; i < 324; i++) t->cp_byte[i] = -1;
  for (int b = 0; b < 256; b++) {
    char u[4];
    t->cp_byte[t->byte_cp[b]] = (int16_t)b;
    if (!sm_get(&t->vocab, u, utf8_put(u, t->byte_cp[b]), &t->byte_id[b])) t->byte_id[b] = -1;
  }
  t->unk_id = -1;
  const char *unk = json_string_value(json_object_get(model, "unk_token"));
  if (unk && !sm_get(&t->vocab, unk, strlen(unk), &t->unk_id) && !(t->unk_missing = arena_dup(&t->arena, unk, strlen(unk))))
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  return 0;
}

static int load_normalizer(tokenizer *t, json_t *n, mpu_err *e) {
  if (!n || json_is_null(n)) return 0;
  const char *type = type_of(n);
  if (type && !strcmp(type, "NFC")) {
    t->nfc = 1;
    return 0;
  }
  if (type && !strcmp(type, "Sequence")) {
    json_t *list = json_object_get(n, "normalizers");
    for (size_t i = 0; i < json_array_size(list); i++)
      if (load_normalizer(t, json_array_get(list, i), e)) return e->status;
    return 0;
  }
  return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: normalizer '%s' is not supported (supported: NFC, Sequence)",
                  type ? type : "?");
}

static int split_behavior(const char *s) {
  static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
  for (int i = 0; i < 5; i++)
    if (s && !strcmp(s, names[i])) return i;
  return -1;
}

static pretok_step *new_step(tokenizer *t, int kind, mpu_err *e) {
  if (t->nsteps == MAX_STEPS) {
    mpu_fail(e, MPU_EVERIFY, "tokenizer.json: more than %d pre-tokenizer steps", MAX_STEPS);
    return NULL;
  }
  pretok_step *st = &t->step[t->nsteps++];
  st->kind = kind;
  return st;
}

static int load_split(tokenizer *t, json_t *p, mpu_err *e) {
  json_t *pat = json_object_get(p, "pattern");
  json_t *rx = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
  int behavior = split_behavior(json_string_value(json_object_get(p, "behavior")));
  if (!json_is_string(rx) && !json_is_string(lit))
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: Split pattern is neither {\"Regex\": ..} nor {\"String\": ..}");
  if (behavior < 0) return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: Split behavior is not one HF knows");
  pretok_step *st = new_step(t, PT_SPLIT, e);
  if (!st) return e->status;
  st->behavior = behavior;
  st->invert = get_flag(p, "invert", 0);
  json_t *src = rx ? rx : lit;
  return rx_compile(&st->re, json_string_value(src), json_string_length(src), !rx, "Split", e);
}

static int load_pre_tokenizer(tokenizer *t, json_t *p, mpu_err *e) {
  const char *type = type_of(p);
  if (!type) return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: a pre_tokenizer has no type");
  if (!strcmp(type, "Sequence")) {
    json_t *list = json_object_get(p, "pretokenizers");
    for (size_t i = 0; i < json_array_size(list); i++)
      if (load_pre_tokenizer(t, json_array_get(list, i), e)) return e->status;
    return 0;
  }
  if (!strcmp(type, "Split")) return load_split(t, p, e);
  if (!strcmp(type, "Digits")) {
    /* HF splits on char::is_numeric, one character per match: \p{N}. */
    pretok_step *st = new_step(t, PT_SPLIT, e);
    if (!st) return e->status;
    st->behavior = get_flag(p, "individual_digits", 0) ? SB_ISOLATED : SB_CONTIGUOUS;
    return rx_compile(&st->re, "\\p{N}", 5, 0, "Digits", e);
  }
  if (!strcmp(type, "ByteLevel")) {
    pretok_step *st = new_step(t, PT_BYTELEVEL, e);
    if (!st) return e->status;
    st->add_prefix_space = get_flag(p, "add_prefix_space", 1);
    st->use_regex = get_flag(p, "use_regex", 1);
    if (st->use_regex && !t->gpt2_re) return rx_compile(&t->gpt2_re, GPT2_REGEX, strlen(GPT2_REGEX), 0, "ByteLevel", e);
    return 0;
  }
  return mpu_fail(e, MPU_EVERIFY,
                  "tokenizer.json: pre_tokenizer '%s' is not supported (supported: ByteLevel, Split, Digits, Sequence)", type);
}

/* The model sees byte symbols only if ByteLevel runs last, and only there. */
static int check_pre_tokenizers(const tokenizer *t, mpu_err *e) {
  if (!t->nsteps || t->step[t->nsteps - 1].kind != PT_BYTELEVEL)
    return mpu_fail(e, MPU_EVERIFY,
                    "tokenizer.json: the pre_tokenizer does not end with ByteLevel; only byte-level BPE is supported");
  for (int i = 0; i + 1 < t->nsteps; i++)
    if (t->step[i].kind == PT_BYTELEVEL)
      return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: ByteLevel must be the last pre_tokenizer step");
  return 0;
}

static int same_token(const added_token *a, const added_token *b) {
  return a->len == b->len && !memcmp(a->content, b->content, a->len) && a->special == b->special &&
         a->lstrip == b->lstrip && a->rstrip == b->rstrip && a->single_word == b->single_word &&
         a->normalized == b->normalized;
}

/* NFC of s as a malloc'd string (*out_len bytes). */
static char *nfc_of(const char *s, size_t n, size_t *out_len) {
  utf8proc_uint8_t *out = NULL;
  utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &out, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  if (r < 0) return NULL;
  *out_len = (size_t)r;
  return (char *)out;
}

/* HF's AddedVocabulary::add_tokens, which loading calls once with every
 * token: a token keeps the id it already has (added or in the vocab), a new
 * one takes the next id counting from the vocab's number of entries; an
 * identical repeat is ignored, a changed one replaces the old.  A
 * normalized=true token decodes to its normalized form when that differs
 * (HF's normalized_cache, which only grows). */
static int add_token(tokenizer *t, const added_token *tok, int32_t *next_id) {
  if (!tok->len) return 0;
  int32_t id;
  const im_slot *at;
  if (sm_get(&t->added_map, tok->content, tok->len, &id) && (at = im_get(&t->added_index, (uint64_t)id)) &&
      same_token(&t->added[at->id], tok))
    return 0;
  id = token_to_id(t, tok->content, tok->len);
  if (id < 0) id = (*next_id)++;
  const char *text = NULL;
  size_t text_len = 0;
  if (tok->normalized && t->nfc) {
    char *nfc = nfc_of(tok->content, tok->len, &text_len);
    if (!nfc) return -1;
    if (text_len != tok->len || memcmp(nfc, tok->content, text_len)) text = arena_dup(&t->arena, nfc, text_len);
    free(nfc);
  }
  if (sm_put(&t->added_map, tok->content, tok->len, id)) return -1;
  if (tok->special && sm_put(&t->special_set, tok->content, tok->len, 1)) return -1;
  added_token *slot;
  if ((at = im_get(&t->added_index, (uint64_t)id))) {
    slot = &t->added[at->id];
    if (!text) { /* the cache keeps an earlier normalized form */
      text = slot->text != slot->content ? slot->text : NULL;
      text_len = slot->text_len;
    }
  } else {
    added_token *grown = grow(t->added, &t->added_cap, t->nadded + 1, sizeof *grown);
    if (!grown) return -1;
    t->added = grown;
    if (im_put(&t->added_index, (uint64_t)id, 0, (int32_t)t->nadded)) return -1; /* id -> index */
    slot = &t->added[t->nadded++];
  }
  *slot = *tok;
  slot->id = id;
  slot->text = text ? text : tok->content;
  slot->text_len = text ? text_len : tok->len;
  return 0;
}

/* A normalized=true token is matched in its normalized form, in the
 * normalized text. */
static int trie_add_token(tokenizer *t, const added_token *tok) {
  if (!tok->normalized) return trie_add(&t->raw_trie, tok->content, tok->len, tok->id);
  if (!t->nfc) return trie_add(&t->norm_trie, tok->content, tok->len, tok->id);
  size_t n;
  char *nfc = nfc_of(tok->content, tok->len, &n);
  int rc = nfc ? trie_add(&t->norm_trie, nfc, n, tok->id) : -1;
  free(nfc);
  return rc;
}

static int cmp_added(const void *a, const void *b) {
  int32_t x = ((const added_token *)a)->id, y = ((const added_token *)b)->id;
  return (x > y) - (x < y);
}

static int parse_added(tokenizer *t, json_t *o, size_t i, added_token *tok, mpu_err *e) {
  json_t *content = json_object_get(o, "content");
  if (!json_is_string(content))
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: added_tokens[%zu] has no content", i);
  tok->len = json_string_length(content);
  tok->content = arena_dup(&t->arena, json_string_value(content), tok->len);
  if (!tok->content) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  tok->special = (unsigned char)get_flag(o, "special", 0);
  tok->lstrip = (unsigned char)get_flag(o, "lstrip", 0);
  tok->rstrip = (unsigned char)get_flag(o, "rstrip", 0);
  tok->single_word = (unsigned char)get_flag(o, "single_word", 0);
  tok->normalized = (unsigned char)get_flag(o, "normalized", !tok->special);
  return 0;
}

static int compile_word_re(tokenizer *t, mpu_err *e) {
  sbuf pat = {0};
  const char *extra = unicode_extra("w", 1);
  if (sbuf_str(&pat, "[" RUST_WORD_CLASS) || sbuf_str(&pat, extra ? extra : "") || sbuf_str(&pat, "]")) {
    free(pat.s);
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  int rc = rx_compile(&t->word_re, pat.s, pat.n, 0, "single_word", e);
  free(pat.s);
  return rc;
}

static int load_added_tokens(tokenizer *t, json_t *list, mpu_err *e) {
  int32_t next_id = (int32_t)t->vocab_entries;
  trie_init(&t->raw_trie);
  trie_init(&t->norm_trie);
  if (sm_init(&t->added_map, 16) || sm_init(&t->special_set, 16) || im_init(&t->added_index, 16))
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  for (size_t i = 0; i < json_array_size(list); i++) {
    added_token tok = {0};
    if (parse_added(t, json_array_get(list, i), i, &tok, e)) return e->status;
    if (add_token(t, &tok, &next_id)) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  int single_word = 0;
  for (size_t i = 0; i < t->nadded; i++) {
    if (trie_add_token(t, &t->added[i])) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    single_word |= t->added[i].single_word;
  }
  if (t->nadded) qsort(t->added, t->nadded, sizeof *t->added, cmp_added);
  free(t->added_index.slot); /* its indices were those before sorting */
  t->added_index = (intmap){0};
  return single_word ? compile_word_re(t, e) : 0;
}

/* HF hands a second template the pieces of the first as a pair of
 * sequences; no tokenizer does that, so it is refused rather than mimicked. */
static int load_template(tokenizer *t, json_t *p, mpu_err *e) {
  if (t->has_template)
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: more than one TemplateProcessing is not supported");
  json_t *single = json_object_get(p, "single"), *specials = json_object_get(p, "special_tokens");
  if (!json_is_array(single)) return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: TemplateProcessing has no single template");
  t->has_template = 1;
  template *tp = &t->tpl;
  tp->n = json_array_size(single);
  tp->item = calloc(tp->n ? tp->n : 1, sizeof *tp->item);
  if (!tp->item) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  for (size_t i = 0; i < tp->n; i++) {
    json_t *item = json_array_get(single, i), *seq = json_object_get(item, "Sequence");
    json_t *sp = json_object_get(item, "SpecialToken");
    if (seq) {
      const char *which = json_string_value(json_object_get(seq, "id"));
      if (!which || strcmp(which, "A"))
        return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: the single template may only hold sequence A");
      continue;
    }
    const char *name = json_string_value(json_object_get(sp, "id"));
    json_t *ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
    if (!name || !json_is_array(ids))
      return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: TemplateProcessing uses special token '%s' without ids",
                      name ? name : "?");
    tpl_item *it = &tp->item[i];
    it->n = json_array_size(ids);
    it->ids = malloc((it->n ? it->n : 1) * sizeof *it->ids);
    if (!it->ids) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    for (size_t k = 0; k < it->n; k++) it->ids[k] = (int32_t)json_integer_value(json_array_get(ids, k));
  }
  return 0;
}

static int load_post_processor(tokenizer *t, json_t *p, mpu_err *e) {
  if (!p || json_is_null(p)) return 0;
  const char *type = type_of(p);
  if (type && !strcmp(type, "ByteLevel")) return 0;
  if (type && !strcmp(type, "TemplateProcessing")) return load_template(t, p, e);
  if (type && !strcmp(type, "Sequence")) {
    json_t *list = json_object_get(p, "processors");
    for (size_t i = 0; i < json_array_size(list); i++)
      if (load_post_processor(t, json_array_get(list, i), e)) return e->status;
    return 0;
  }
  return mpu_fail(e, MPU_EVERIFY,
                  "tokenizer.json: post_processor '%s' is not supported (supported: TemplateProcessing, ByteLevel, Sequence)",
                  type ? type : "?");
}

static int load_decoder(tokenizer *t, json_t *d, mpu_err *e) {
  if (!d || json_is_null(d)) return 0;
  const char *type = type_of(d);
  if (type && !strcmp(type, "ByteLevel")) {
    t->byte_level_decoder = 1;
    return 0;
  }
  return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: decoder '%s' is not supported (only ByteLevel)", type ? type : "?");
}

/* HF refuses what it does not know here, and truncation or a padding that
 * pads a single sequence would change the ids, so they are refused too. */
static int check_header(json_t *root, mpu_err *e) {
  json_t *version = json_object_get(root, "version");
  if (version && (!json_is_string(version) || strcmp(json_string_value(version), "1.0")))
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: unknown version (HF reads version 1.0)");
  json_t *trunc = json_object_get(root, "truncation"), *pad = json_object_get(root, "padding");
  if (trunc && !json_is_null(trunc))
    return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: truncation is not supported (set it to null)");
  if (pad && !json_is_null(pad)) {
    json_t *strategy = json_object_get(pad, "strategy"), *multiple = json_object_get(pad, "pad_to_multiple_of");
    if (json_is_object(strategy) || (multiple && !json_is_null(multiple)))
      return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: padding to a length is not supported (set padding to null)");
  }
  return 0;
}

/* A token in tokenizer_config.json: "text" or {"content": "text", ..}. */
static const char *config_token(json_t *cfg, const char *key, int *named) {
  json_t *v = json_object_get(cfg, key);
  *named = v != NULL;
  if (json_is_object(v)) v = json_object_get(v, "content");
  return json_string_value(v);
}

static int32_t special_role(const tokenizer *t, json_t *cfg, const char *key, const char *fallback) {
  int named = 0;
  const char *text = cfg ? config_token(cfg, key, &named) : NULL;
  if (text) return tok_token_id(t, text);
  if (named) return -1;
  return tok_is_special(t, tok_token_id(t, fallback)) ? tok_token_id(t, fallback) : -1;
}

static int load_config(tokenizer *t, const char *cfgtext, size_t len, mpu_err *e) {
  json_t *cfg = NULL;
  if (cfgtext) {
    json_error_t je;
    cfg = json_loadb(cfgtext, len, JSON_ALLOW_NUL, &je);
    if (!json_is_object(cfg)) {
      json_decref(cfg);
      return mpu_fail(e, MPU_EVERIFY, "tokenizer_config.json: %s", cfg ? "not a JSON object" : je.text);
    }
  }
  t->bos = special_role(t, cfg, "bos_token", "<|bos|>");
  t->eos = special_role(t, cfg, "eos_token", "<|eos|>");
  t->pad = special_role(t, cfg, "pad_token", "<|pad|>");
  int named;
  const char *bos = cfg ? config_token(cfg, "bos_token", &named) : NULL;
  json_t *tpl = json_object_get(cfg, "chat_template");
  /* A list of named templates: the "default" one, else the first. */
  if (json_is_array(tpl)) {
    json_t *pick = json_object_get(json_array_get(tpl, 0), "template");
    for (size_t i = 0; i < json_array_size(tpl); i++) {
      const char *name = json_string_value(json_object_get(json_array_get(tpl, i), "name"));
      if (name && !strcmp(name, "default")) pick = json_object_get(json_array_get(tpl, i), "template");
    }
    tpl = pick;
  }
  int rc = 0;
  if ((bos && !(t->bos_text = strdup(bos))) || (json_is_string(tpl) && !(t->chat_template = strdup(json_string_value(tpl)))))
    rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  json_decref(cfg);
  return rc;
}

int tok_load(tokenizer **out, const char *json, size_t len, const char *tokenizer_config, size_t config_len,
             mpu_err *e) {
  *out = NULL;
  json_error_t je;
  json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &je);
  if (!root) return mpu_fail(e, MPU_EVERIFY, "tokenizer.json: bad JSON: %s (line %d)", je.text, je.line);
  tokenizer *t = calloc(1, sizeof *t);
  if (!t) {
    json_decref(root);
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  int rc = !json_is_object(root) ? mpu_fail(e, MPU_EVERIFY, "tokenizer.json: not a JSON object") : 0;
  if (!rc) rc = check_header(root, e);
  if (!rc) rc = load_model(t, json_object_get(root, "model"), e);
  if (!rc) rc = load_normalizer(t, json_object_get(root, "normalizer"), e);
  json_t *pre = json_object_get(root, "pre_tokenizer");
  if (!rc && (!pre || json_is_null(pre)))
    rc = mpu_fail(e, MPU_EVERIFY, "tokenizer.json: no pre_tokenizer; only byte-level BPE is supported");
  if (!rc) rc = load_pre_tokenizer(t, pre, e);
  if (!rc) rc = check_pre_tokenizers(t, e);
  if (!rc) rc = load_added_tokens(t, json_object_get(root, "added_tokens"), e);
  if (!rc) rc = load_post_processor(t, json_object_get(root, "post_processor"), e);
  if (!rc) rc = load_decoder(t, json_object_get(root, "decoder"), e);
  if (!rc) rc = load_config(t, tokenizer_config, config_len, e);
  json_decref(root);
  if (rc) {
    tok_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void tok_free(tokenizer *t) {
  if (!t) return;
  free(t->vocab.slot);
  free((void *)t->vocab_r);
  free(t->merges.slot);
  free(t->added);
  free(t->added_index.slot);
  free(t->added_map.slot);
  free(t->special_set.slot);
  free(t->raw_trie.node);
  free(t->norm_trie.node);
  pcre2_code_free(t->word_re);
  for (int i = 0; i < t->nsteps; i++) pcre2_code_free(t->step[i].re);
  pcre2_code_free(t->gpt2_re);
  for (size_t i = 0; i < t->tpl.n; i++) free(t->tpl.item[i].ids);
  free(t->tpl.item);
  free(t->bos_text);
  free(t->chat_template);
  arena_free(t->arena);
  free(t);
}

/* ================================================================ byte-level tokenizer.json */

static json_t *special_piece(const char *name, int type_id) {
  return json_pack("{s:{s:s,s:i}}", "SpecialToken", "id", name, "type_id", type_id);
}

static json_t *sequence_piece(const char *name, int type_id) {
  return json_pack("{s:{s:s,s:i}}", "Sequence", "id", name, "type_id", type_id);
}

static json_t *byte_level_vocab(void) {
  uint32_t cp[256];
  byte_alphabet(cp);
  json_t *vocab = json_object();
  for (int b = 0; vocab && b < 256; b++) {
    char u[5];
    u[utf8_put(u, cp[b])] = 0;
    if (json_object_set_new(vocab, u, json_integer(b))) {
      json_decref(vocab);
      return NULL;
    }
  }
  return vocab;
}

char *tok_byte_level_json(void) {
  static const char *special[3] = {"<|bos|>", "<|eos|>", "<|pad|>"};
  json_t *added = json_array();
  for (int i = 0; added && i < 3; i++)
    json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", 256 + i, "content", special[i],
                                           "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
  json_t *post = json_pack(
      "{s:s,s:[o,o],s:[o,o,o,o],s:{s:{s:s,s:[i],s:[s]}}}", "type", "TemplateProcessing", "single",
      special_piece(special[0], 0), sequence_piece("A", 0), "pair", special_piece(special[0], 0), sequence_piece("A", 0),
      special_piece(special[0], 1), sequence_piece("B", 1), "special_tokens", special[0], "id", special[0], "ids", 256,
      "tokens", special[0]);
  json_t *model = json_pack("{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:b,s:o,s:[]}", "type", "BPE", "dropout", "unk_token",
                            "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                            "ignore_merges", 0, "vocab", byte_level_vocab(), "merges");
  json_t *root = json_pack(
      "{s:s,s:n,s:n,s:o,s:n,s:{s:s,s:b,s:b,s:b},s:o,s:{s:s,s:b,s:b,s:b},s:o}", "version", "1.0", "truncation",
      "padding", "added_tokens", added, "normalizer", "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0,
      "trim_offsets", 1, "use_regex", 0, "post_processor", post, "decoder", "type", "ByteLevel", "add_prefix_space", 1,
      "trim_offsets", 1, "use_regex", 1, "model", model);
  if (!root) return NULL;
  char *text = json_dumps(root, JSON_INDENT(2));
  json_decref(root);
  return text;
}

/* ================================================================ chat prompts */

/* Jinja's trim: Python's str.strip(). */
static void py_trim(const char *s, size_t *b, size_t *e) {
  size_t n = strlen(s), i = 0;
  while (i < n) {
    size_t j = i;
    if (!is_py_space(utf8_next(s, &j))) break;
    i = j;
  }
  while (n > i) {
    size_t p = utf8_prev(s, n), j = p;
    if (!is_py_space(utf8_next(s, &j))) break;
    n = p;
  }
  *b = i;
  *e = n;
}

static int put_trimmed(sbuf *out, const char *s) {
  size_t b, e;
  py_trim(s, &b, &e);
  return sbuf_put(out, s + b, e - b);
}

static int llama3_prompt(const tokenizer *t, const char *system, const char *user, const char *date, sbuf *out) {
  const char *tpl = t->chat_template;
  int dated = strstr(tpl, "Cutting Knowledge Date") != NULL;
  int rc = 0;
  if (strstr(tpl, "bos_token") && t->bos_text) rc |= sbuf_str(out, t->bos_text);
  /* Llama-3.1 and later write the system block even without a system message. */
  if (system || dated) {
    rc |= sbuf_str(out, "<|start_header_id|>system<|end_header_id|>\n\n");
    if (dated) {
      rc |= sbuf_str(out, "Cutting Knowledge Date: December 2023\nToday Date: ");
      rc |= sbuf_str(out, date ? date : DEFAULT_DATE);
      rc |= sbuf_str(out, "\n\n");
    }
    rc |= put_trimmed(out, system ? system : "");
    rc |= sbuf_str(out, "<|eot_id|>");
  }
  rc |= sbuf_str(out, "<|start_header_id|>user<|end_header_id|>\n\n");
  rc |= put_trimmed(out, user);
  rc |= sbuf_str(out, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  return rc;
}

/* The system text a ChatML template writes when the conversation has none:
 * a string literal '<|im_start|>system\n...<|im_end|>' with nothing but
 * text inside (Qwen2's "You are a helpful assistant."). */
static int chatml_default_system(const char *tpl, sbuf *out) {
  static const char *opens[2] = {"<|im_start|>system\\n", "<|im_start|>system\n"};
  for (int k = 0; k < 2; k++) {
    for (const char *p = strstr(tpl, opens[k]); p; p = strstr(p + 1, opens[k])) {
      const char *text = p + strlen(opens[k]), *end = strstr(text, "<|im_end|>");
      if (!end || strcspn(text, "'\"{}+") < (size_t)(end - text)) continue;
      /* Jinja's escapes inside the literal. */
      for (const char *c = text; c < end; c++) {
        char ch = *c;
        if (ch == '\\' && c + 1 < end) {
          ch = *++c;
          if (ch == 'n') ch = '\n';
          else if (ch == 't') ch = '\t';
        }
        if (sbuf_put(out, &ch, 1)) return -1;
      }
      return 1;
    }
  }
  return 0;
}

static int chatml_prompt(const tokenizer *t, const char *system, const char *user, sbuf *out) {
  int rc = 0;
  if (system) {
    rc |= sbuf_str(out, "<|im_start|>system\n") || sbuf_str(out, system) || sbuf_str(out, "<|im_end|>\n");
  } else {
    sbuf dflt = {0};
    int found = chatml_default_system(t->chat_template, &dflt);
    if (found < 0) rc = -1;
    if (found > 0) rc |= sbuf_str(out, "<|im_start|>system\n") || sbuf_put(out, dflt.s, dflt.n) || sbuf_str(out, "<|im_end|>\n");
    free(dflt.s);
  }
  rc |= sbuf_str(out, "<|im_start|>user\n") || sbuf_str(out, user) || sbuf_str(out, "<|im_end|>\n<|im_start|>assistant\n");
  return rc;
}

int tok_chat_format_dated(const tokenizer *t, const char *system, const char *user, const char *date, char **prompt,
                          mpu_err *e) {
  *prompt = NULL;
  if (!t->chat_template)
    return mpu_fail(e, MPU_EUSAGE, "no chat_template: tokenizer_config.json was not given or has none");
  if (!user) return mpu_fail(e, MPU_EUSAGE, "a chat prompt needs a user message");
  if ((system && !utf8_valid(system, strlen(system))) || !utf8_valid(user, strlen(user)))
    return mpu_fail(e, MPU_EVERIFY, "chat message is not valid UTF-8");
  sbuf out = {0};
  int rc;
  if (strstr(t->chat_template, "<|start_header_id|>")) rc = llama3_prompt(t, system, user, date, &out);
  else if (strstr(t->chat_template, "<|im_start|>")) rc = chatml_prompt(t, system, user, &out);
  else
    return mpu_fail(e, MPU_EUSAGE,
                    "chat_template not recognised: mpu renders Llama-3 (<|start_header_id|>) and ChatML (<|im_start|>) "
                    "templates only");
  if (rc || sbuf_put(&out, "", 0)) {
    free(out.s);
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  *prompt = out.s;
  return 0;
}

int tok_chat_format(const tokenizer *t, const char *system, const char *user, char **prompt, mpu_err *e) {
  return tok_chat_format_dated(t, system, user, NULL, prompt, e);
}
