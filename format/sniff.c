/*
 * sniff.c -- what an input that should be an .mpuc stream looks like.
 *
 * The usual wrong inputs are a model in another format, a git-lfs pointer
 * left by a clone without LFS, an HTML error page saved by a failed
 * download, and nothing at all from a stage that crashed.  Saying which one
 * turns a cryptic failure into a fix.
 */
#include <ctype.h>

#include "internal.h"

static int starts(const uint8_t *b, size_t n, const char *s) {
  size_t k = strlen(s);
  return n >= k && memcmp(b, s, k) == 0;
}

/* Case-insensitive search for an ASCII word in the first bytes. */
static int has_word(const uint8_t *b, size_t n, const char *w) {
  size_t k = strlen(w);
  if (n > 1024) n = 1024;
  for (size_t i = 0; i + k <= n; i++) {
    size_t j = 0;
    while (j < k && tolower(b[i + j]) == w[j]) j++;
    if (j == k) return 1;
  }
  return 0;
}

/* Printable ASCII or well-formed UTF-8 in the first 256 bytes. */
static int looks_like_text(const uint8_t *b, size_t n) {
  if (n > 256) n = 256;
  for (size_t k = 0; k < n;) {
    uint8_t c = b[k];
    if (c < 0x80) {
      if (c < 0x09 || (c > 0x0d && c < 0x20)) return 0;
      k++;
      continue;
    }
    size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!len) return 0;
    for (size_t j = 1; j < len && k + j < n; j++)
      if ((b[k + j] & 0xC0) != 0x80) return 0;
    k += len;
  }
  return 1;
}

const char *mpuc_sniff(const void *buf, size_t n) {
  const uint8_t *b = buf;
  if (n == 0) return "nothing (empty input)";
  if (n >= STREAM_PREFIX && get_u32(b) == MPUC_SKIP_MAGIC && memcmp(b + MPUC_FRAME_HDR, MPUC_SIGNATURE, MPUC_SIG_LEN) == 0)
    return NULL;
  if (starts(b, n, "GGUF")) return "a GGUF file (llama.cpp)";
  if (starts(b, n, "version https://git-lfs"))
    return "a git-lfs pointer, not the file itself; fetch it with 'git lfs pull'";
  size_t i = 0;
  while (i < n && i < 64 && isspace(b[i])) i++;
  if (has_word(b + i, n - i, "<!doctype html") || has_word(b + i, n - i, "<html"))
    return "an HTML page (a failed download or an error page?)";
  if (n >= 9 && b[8] == '{' && get_u64(b) > 1 && get_u64(b) < (1ull << 40))
    return "a safetensors file; convert it with 'mpu import'";
  if (get_u32(b) == MPUC_ZSTD_MAGIC && n >= 4)
    return "a zstd-compressed file";
  if (n >= 4 && (get_u32(b) & 0xFFFFFFF0u) == 0x184D2A50u)
    return "zstd skippable frames that do not start an .mpuc stream";
  if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) return "a gzip file";
  if (starts(b, n, "PK\x03\x04")) return "a zip archive (a PyTorch .bin/.pt checkpoint?)";
  if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) return "a Python pickle (a PyTorch checkpoint?)";
  if (n >= 262 && memcmp(b + 257, "ustar", 5) == 0) return "a tar archive";
  if (i < n && (b[i] == '{' || b[i] == '[')) return "JSON text";
  return looks_like_text(b, n) ? "text" : "unrecognised binary data";
}
