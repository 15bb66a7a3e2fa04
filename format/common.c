/*
 * common.c -- status names, the dtype registry, buffers and the binary
 * records shared by the writer and the reader.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* ---------------------------------------------------------------- status */
const char *mpuc_status_name(mpuc_status s) {
  switch (s) {
  case MPUC_OK: return "ok";
  case MPUC_ERR_NOT_MPUC: return "not an .mpuc stream";
  case MPUC_ERR_TRUNCATED: return "truncated";
  case MPUC_ERR_CORRUPT: return "corrupt";
  case MPUC_ERR_CHECKSUM: return "checksum mismatch";
  case MPUC_ERR_LAYOUT: return "layout violation";
  case MPUC_ERR_LIMIT: return "limit exceeded";
  case MPUC_ERR_VERSION: return "unsupported version";
  case MPUC_ERR_USAGE: return "usage error";
  case MPUC_ERR_NOMEM: return "out of memory";
  case MPUC_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

int mpuc_status_is_verification(mpuc_status s) {
  return s >= MPUC_ERR_NOT_MPUC && s <= MPUC_ERR_VERSION;
}

/* ---------------------------------------------------------------- dtypes */
static const struct {
  const char *name;
  unsigned bits, group;
} dtypes[MPUC_DT_COUNT] = {
  [MPUC_DT_BOOL] = {"BOOL", 8, 1},       [MPUC_DT_U8] = {"U8", 8, 1},
  [MPUC_DT_I8] = {"I8", 8, 1},           [MPUC_DT_I16] = {"I16", 16, 2},
  [MPUC_DT_U16] = {"U16", 16, 2},        [MPUC_DT_F16] = {"F16", 16, 2},
  [MPUC_DT_BF16] = {"BF16", 16, 2},      [MPUC_DT_I32] = {"I32", 32, 4},
  [MPUC_DT_U32] = {"U32", 32, 4},        [MPUC_DT_F32] = {"F32", 32, 4},
  [MPUC_DT_F64] = {"F64", 64, 8},        [MPUC_DT_I64] = {"I64", 64, 8},
  [MPUC_DT_U64] = {"U64", 64, 8},        [MPUC_DT_C64] = {"C64", 64, 4},
  [MPUC_DT_F8_E5M2] = {"F8_E5M2", 8, 1}, [MPUC_DT_F8_E4M3] = {"F8_E4M3", 8, 1},
  [MPUC_DT_F8_E8M0] = {"F8_E8M0", 8, 1}, [MPUC_DT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8, 1},
  [MPUC_DT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8, 1},
  [MPUC_DT_F4] = {"F4", 4, 1},           [MPUC_DT_F6_E2M3] = {"F6_E2M3", 6, 1},
  [MPUC_DT_F6_E3M2] = {"F6_E3M2", 6, 1},
};

const char *mpuc_dtype_name(int dt) {
  return dt > 0 && dt < MPUC_DT_COUNT ? dtypes[dt].name : NULL;
}

int mpuc_dtype_from_name(const char *name) {
  for (int i = 1; i < MPUC_DT_COUNT; i++)
    if (strcmp(dtypes[i].name, name) == 0) return i;
  return MPUC_DT_INVALID;
}

unsigned mpuc_dtype_bits(int dt) { return dt > 0 && dt < MPUC_DT_COUNT ? dtypes[dt].bits : 0; }

unsigned mpuc_dtype_group_width(int dt) {
  return dt > 0 && dt < MPUC_DT_COUNT ? dtypes[dt].group : 1;
}

mpuc_status mpuc_tensor_bytes(int dtype, unsigned ndim, const uint64_t *dims, uint64_t *bytes) {
  unsigned bits = mpuc_dtype_bits(dtype);
  if (!bits || ndim > MPUC_MAX_NDIM) return MPUC_ERR_LIMIT;
  /* Count elements with an overflow check; the limit keeps bits*n in range. */
  uint64_t n = 1;
  for (unsigned i = 0; i < ndim; i++) {
    if (dims[i] == 0) { n = 0; break; }
    if (n > MPUC_MAX_RAW_SIZE * 8 / dims[i]) return MPUC_ERR_LIMIT;
    n *= dims[i];
  }
  if (n > MPUC_MAX_RAW_SIZE * 8 / bits) return MPUC_ERR_LIMIT;
  uint64_t total_bits = n * bits;
  if (total_bits % 8) return MPUC_ERR_LIMIT; /* sub-byte tensors must fill whole bytes */
  if (total_bits / 8 > MPUC_MAX_RAW_SIZE) return MPUC_ERR_LIMIT;
  *bytes = total_bits / 8;
  return MPUC_OK;
}

void mpuc_hex128(const uint8_t d[16], char out[33]) {
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    out[2 * i] = hx[d[i] >> 4];
    out[2 * i + 1] = hx[d[i] & 15];
  }
  out[32] = 0;
}

/* ---------------------------------------------------------------- buffers */
int mbuf_reserve(mbuf *b, size_t extra) {
  if (b->cap - b->len >= extra) return 0;
  size_t need = b->len + extra;
  if (need < b->len) return -1;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *p = realloc(b->p, cap);
  if (!p) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

int mbuf_append(mbuf *b, const void *src, size_t n) {
  if (mbuf_reserve(b, n)) return -1;
  if (n) memcpy(b->p + b->len, src, n);
  b->len += n;
  return 0;
}

void mbuf_free(mbuf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---------------------------------------------------------------- messages */
void msg_set(char *msg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, MPUC_MSG_LEN, fmt, ap);
  va_end(ap);
}

void entry_label(char *buf, size_t n, const mpuc_entry *e) {
  int nl = e->name_len > 200 ? 200 : (int)e->name_len;
  const char *more = e->name_len > 200 ? "..." : "";
  if (e->kind == MPUC_KIND_BLOB)
    snprintf(buf, n, "blob '%.*s%s'", nl, e->name, more);
  else if (e->copy == MPUC_COPY_SHARED)
    snprintf(buf, n, "tensor '%.*s%s' (shared)", nl, e->name, more);
  else
    snprintf(buf, n, "tensor '%.*s%s' copy %u", nl, e->name, more, (unsigned)e->copy + 1);
}

/* ---------------------------------------------------------------- records */
int record_emit(mbuf *out, const uint8_t *payload, size_t len) {
  uint8_t hdr[MPUC_FRAME_HDR], check[MPUC_CHECK_LEN];
  put_u32(hdr, MPUC_SKIP_MAGIC);
  put_u32(hdr + 4, (uint32_t)(len + MPUC_CHECK_LEN));
  put_u64(check, XXH3_64bits(payload, len));
  if (mbuf_reserve(out, sizeof hdr + len + sizeof check)) return -1;
  mbuf_append(out, hdr, sizeof hdr);
  mbuf_append(out, payload, len);
  mbuf_append(out, check, sizeof check);
  return 0;
}

size_t entry_encode(uint8_t *dst, const mpuc_entry *e) {
  uint8_t *p = dst;
  *p++ = REC_ENTRY;
  p[0] = (uint8_t)e->kind;
  p[1] = (uint8_t)e->dtype;
  p[2] = (uint8_t)e->ndim;
  p[3] = (uint8_t)e->codec;
  p[4] = (uint8_t)e->filter;
  p[5] = p[6] = p[7] = 0;
  put_u32(p + 8, e->copy);
  put_u32(p + 12, e->chunk_size);
  put_u64(p + 16, e->raw_size);
  p += ENTRY_FIXED;
  for (unsigned i = 0; i < e->ndim; i++, p += 8) put_u64(p, e->dims[i]);
  put_u16(p, (uint16_t)e->name_len);
  memcpy(p + 2, e->name, e->name_len);
  p += 2 + e->name_len;
  return (size_t)(p - dst);
}

size_t entry_descriptor(uint8_t *dst, const mpuc_entry *e) {
  uint8_t *p = dst;
  p[0] = (uint8_t)e->kind;
  p[1] = (uint8_t)e->dtype;
  p[2] = (uint8_t)e->ndim;
  put_u32(p + 3, e->copy);
  put_u64(p + 7, e->raw_size);
  p += 15;
  for (unsigned i = 0; i < e->ndim; i++, p += 8) put_u64(p, e->dims[i]);
  put_u16(p, (uint16_t)e->name_len);
  memcpy(p + 2, e->name, e->name_len);
  return (size_t)(p + 2 + e->name_len - dst);
}

mpuc_status entry_decode(const uint8_t *p, size_t len, mpuc_entry *e, char *msg) {
  /* p: payload from the type byte; len excludes the check. */
  if (len < 1 + ENTRY_FIXED + 2) {
    msg_set(msg, "entry record too short (%zu bytes)", len);
    return MPUC_ERR_CORRUPT;
  }
  const uint8_t *b = p + 1;
  memset(e, 0, sizeof *e);
  e->kind = b[0];
  e->dtype = b[1];
  e->ndim = b[2];
  e->codec = b[3];
  e->filter = b[4];
  e->copy = get_u32(b + 8);
  e->chunk_size = get_u32(b + 12);
  e->raw_size = get_u64(b + 16);
  if (b[5] | b[6] | b[7]) {
    msg_set(msg, "entry record: reserved bytes are not zero");
    return MPUC_ERR_CORRUPT;
  }
  if (e->ndim > MPUC_MAX_NDIM) {
    msg_set(msg, "entry record: %u dimensions (limit %d)", e->ndim, MPUC_MAX_NDIM);
    return MPUC_ERR_LIMIT;
  }
  size_t need = 1 + ENTRY_FIXED + 8 * (size_t)e->ndim + 2;
  if (len < need) {
    msg_set(msg, "entry record too short for %u dimensions", e->ndim);
    return MPUC_ERR_CORRUPT;
  }
  for (unsigned i = 0; i < e->ndim; i++) e->dims[i] = get_u64(b + ENTRY_FIXED + 8 * i);
  e->name_len = get_u16(p + need - 2);
  e->name = (const char *)p + need;
  if (e->name_len == 0 || e->name_len > MPUC_MAX_NAME) {
    msg_set(msg, "entry record: name length %zu (must be 1..%d)", e->name_len, MPUC_MAX_NAME);
    return MPUC_ERR_LIMIT;
  }
  if (need + e->name_len != len) {
    msg_set(msg, "entry record: size %zu does not match its contents (%zu)", len, need + e->name_len);
    return MPUC_ERR_CORRUPT;
  }
  if (memchr(e->name, 0, e->name_len)) {
    msg_set(msg, "entry record: name contains a NUL byte");
    return MPUC_ERR_CORRUPT;
  }
  return MPUC_OK;
}

/* ---------------------------------------------------------------- digests */
struct mpuc_digest {
  XXH3_state_t *h;
};

static int unhex(const char *s, uint8_t out[16]) {
  for (int i = 0; i < 16; i++) {
    unsigned v = 0;
    for (int k = 0; k < 2; k++) {
      char c = s[2 * i + k];
      v = v * 16 + (unsigned)(c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0);
    }
    out[i] = (uint8_t)v;
  }
  return 0;
}

mpuc_digest *mpuc_digest_create(const char *header_digest_hex) {
  mpuc_digest *d = malloc(sizeof *d);
  if (!d) return NULL;
  d->h = XXH3_createState();
  if (!d->h) {
    free(d);
    return NULL;
  }
  uint8_t hd[16];
  unhex(header_digest_hex, hd);
  XXH3_128bits_reset(d->h);
  XXH3_128bits_update(d->h, hd, 16);
  return d;
}

void mpuc_digest_add(mpuc_digest *d, const mpuc_entry *e) {
  uint8_t desc[MAX_ENTRY_RECORD];
  XXH3_128bits_update(d->h, desc, entry_descriptor(desc, e));
  XXH3_128bits_update(d->h, e->xxh3, 16);
}

void mpuc_digest_final(mpuc_digest *d, char hex[33]) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(d->h));
  mpuc_hex128(c.digest, hex);
  XXH3_freeState(d->h);
  free(d);
}
