/*
 * chunk.c -- the bytes of a chunk frame: the byte-grouping filter, the
 * uncompressed ("store") zstd frame, and finding where a frame ends.
 *
 * A chunk is always a standard zstd frame (RFC 8878), so stock zstd tools
 * accept every stream.  The store codec writes raw blocks by hand: copying
 * bytes and an XXH64 is all it costs, and libzstd decodes it like any frame.
 */
#include <xxhash.h>

#include "internal.h"

/* ---------------------------------------------------------------- byte grouping */
/* Floats keep their exponent in the high byte; putting every element's byte j
 * together (plane j) gives zstd long runs of similar exponent bytes. */
void bytegroup_encode(uint8_t *dst, const uint8_t *src, size_t n, unsigned w) {
  size_t m = n / w;
  switch (w) {
  case 2:
    for (size_t i = 0; i < m; i++) {
      dst[i] = src[2 * i];
      dst[m + i] = src[2 * i + 1];
    }
    break;
  case 4:
    for (size_t i = 0; i < m; i++) {
      dst[i] = src[4 * i];
      dst[m + i] = src[4 * i + 1];
      dst[2 * m + i] = src[4 * i + 2];
      dst[3 * m + i] = src[4 * i + 3];
    }
    break;
  default:
    for (size_t i = 0; i < m; i++)
      for (unsigned j = 0; j < w; j++) dst[j * m + i] = src[w * i + j];
  }
  memcpy(dst + m * w, src + m * w, n - m * w); /* a ragged tail stays as is */
}

void bytegroup_decode(uint8_t *dst, const uint8_t *src, size_t n, unsigned w) {
  size_t m = n / w;
  switch (w) {
  case 2:
    for (size_t i = 0; i < m; i++) {
      dst[2 * i] = src[i];
      dst[2 * i + 1] = src[m + i];
    }
    break;
  case 4:
    for (size_t i = 0; i < m; i++) {
      dst[4 * i] = src[i];
      dst[4 * i + 1] = src[m + i];
      dst[4 * i + 2] = src[2 * m + i];
      dst[4 * i + 3] = src[3 * m + i];
    }
    break;
  default:
    for (size_t i = 0; i < m; i++)
      for (unsigned j = 0; j < w; j++) dst[w * i + j] = src[j * m + i];
  }
  memcpy(dst + m * w, src + m * w, n - m * w);
}

/* ---------------------------------------------------------------- store frames */
#define ZBLOCK_MAX (128u << 10)

size_t store_frame_bound(size_t n) { return 4 + 1 + 4 + n + 3 * (n / ZBLOCK_MAX + 1) + 4; }

size_t store_frame_write(uint8_t *dst, const uint8_t *src, size_t n) {
  uint8_t *p = dst;
  put_u32(p, MPUC_ZSTD_MAGIC);
  /* Frame_Header_Descriptor: 4-byte content size, single segment, checksum. */
  p[4] = 0xA4;
  put_u32(p + 5, (uint32_t)n);
  p += 9;
  size_t done = 0;
  do {
    size_t b = n - done < ZBLOCK_MAX ? n - done : ZBLOCK_MAX;
    uint32_t last = done + b == n;
    uint32_t h = last | (0u << 1) | (uint32_t)b << 3; /* Raw_Block */
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
    p[2] = (uint8_t)(h >> 16);
    memcpy(p + 3, src + done, b);
    p += 3 + b;
    done += b;
  } while (done < n);
  put_u32(p, (uint32_t)XXH64(src, n, 0));
  return (size_t)(p + 4 - dst);
}

/* ---------------------------------------------------------------- frame scanning */
int frame_scan_step(frame_scan *s, const uint8_t *p, size_t avail, char *msg) {
#define NEED(n) do { if (avail < (n)) { s->need = (n); return 0; } } while (0)
  if (!s->header_done) {
    NEED(5);
    if (get_u32(p) != MPUC_ZSTD_MAGIC) {
      msg_set(msg, "expected a zstd frame");
      return -1;
    }
    uint8_t fhd = p[4];
    unsigned fcs_flag = fhd >> 6, single = (fhd >> 5) & 1, dict_flag = fhd & 3;
    if (fhd & 0x08) {
      msg_set(msg, "zstd frame header: reserved bit set");
      return -1;
    }
    if (dict_flag) {
      msg_set(msg, "zstd frame uses a dictionary (not allowed in .mpuc)");
      return -1;
    }
    size_t fcs_len = fcs_flag == 0 ? (single ? 1 : 0) : (size_t)1 << fcs_flag;
    size_t hlen = 5 + (single ? 0 : 1) + fcs_len;
    NEED(hlen);
    if (!fcs_len) {
      msg_set(msg, "zstd frame lacks its content size");
      return -1;
    }
    const uint8_t *f = p + 5 + (single ? 0 : 1);
    uint64_t fcs = fcs_len == 1 ? f[0] : fcs_len == 2 ? (uint64_t)get_u16(f) + 256
                 : fcs_len == 4 ? get_u32(f) : get_u64(f);
    s->content = fcs;
    s->checksum = (fhd >> 2) & 1;
    s->pos = hlen;
    s->header_done = 1;
  }
  while (!s->last_block) {
    NEED(s->pos + 3);
    const uint8_t *b = p + s->pos;
    uint32_t h = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16;
    unsigned type = (h >> 1) & 3;
    size_t size = h >> 3;
    if (type == 3) {
      msg_set(msg, "zstd block of reserved type");
      return -1;
    }
    if (size > ZBLOCK_MAX) {
      msg_set(msg, "zstd block of %zu bytes exceeds 128 KiB", size);
      return -1;
    }
    size_t body = type == 1 ? 1 : size;
    NEED(s->pos + 3 + body);
    s->pos += 3 + body;
    s->last_block = h & 1;
  }
  if (s->checksum && !s->done) {
    NEED(s->pos + 4);
    s->pos += 4;
  }
  s->done = 1;
  return 1;
#undef NEED
}
