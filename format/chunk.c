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
 * together (plane j) gives zstd long runs of similar exponent bytes.  Widths
 * 2 and 4 (bf16/f16, f32) have SSE2 paths; the scalar loops define the result
 * and finish the tails. */
#ifdef __SSE2__
#include <emmintrin.h>

/* Splits 16-bit lanes: the low bytes of a and b, then their high bytes. */
static inline void split16(__m128i a, __m128i b, __m128i *lo, __m128i *hi) {
  const __m128i m = _mm_set1_epi16(0x00ff);
  *lo = _mm_packus_epi16(_mm_and_si128(a, m), _mm_and_si128(b, m));
  *hi = _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8));
}

static size_t group2_sse2(uint8_t *dst, const uint8_t *src, size_t m) {
  size_t i = 0;
  for (; i + 16 <= m; i += 16) {
    __m128i a = _mm_loadu_si128((const __m128i *)(src + 2 * i)), b = _mm_loadu_si128((const __m128i *)(src + 2 * i + 16));
    __m128i lo, hi;
    split16(a, b, &lo, &hi);
    _mm_storeu_si128((__m128i *)(dst + i), lo);
    _mm_storeu_si128((__m128i *)(dst + m + i), hi);
  }
  return i;
}

static size_t group4_sse2(uint8_t *dst, const uint8_t *src, size_t m) {
  size_t i = 0;
  for (; i + 16 <= m; i += 16) {
    const __m128i *s = (const __m128i *)(src + 4 * i);
    __m128i l01, h01, l23, h23, p0, p1, p2, p3;
    split16(_mm_loadu_si128(s), _mm_loadu_si128(s + 1), &l01, &h01); /* (b0 b2)..., (b1 b3)... */
    split16(_mm_loadu_si128(s + 2), _mm_loadu_si128(s + 3), &l23, &h23);
    split16(l01, l23, &p0, &p2);
    split16(h01, h23, &p1, &p3);
    _mm_storeu_si128((__m128i *)(dst + i), p0);
    _mm_storeu_si128((__m128i *)(dst + m + i), p1);
    _mm_storeu_si128((__m128i *)(dst + 2 * m + i), p2);
    _mm_storeu_si128((__m128i *)(dst + 3 * m + i), p3);
  }
  return i;
}

static size_t ungroup2_sse2(uint8_t *dst, const uint8_t *src, size_t m) {
  size_t i = 0;
  for (; i + 16 <= m; i += 16) {
    __m128i a = _mm_loadu_si128((const __m128i *)(src + i)), b = _mm_loadu_si128((const __m128i *)(src + m + i));
    _mm_storeu_si128((__m128i *)(dst + 2 * i), _mm_unpacklo_epi8(a, b));
    _mm_storeu_si128((__m128i *)(dst + 2 * i + 16), _mm_unpackhi_epi8(a, b));
  }
  return i;
}

static size_t ungroup4_sse2(uint8_t *dst, const uint8_t *src, size_t m) {
  size_t i = 0;
  for (; i + 16 <= m; i += 16) {
    __m128i p0 = _mm_loadu_si128((const __m128i *)(src + i)), p1 = _mm_loadu_si128((const __m128i *)(src + m + i));
    __m128i p2 = _mm_loadu_si128((const __m128i *)(src + 2 * m + i)), p3 = _mm_loadu_si128((const __m128i *)(src + 3 * m + i));
    __m128i lo02 = _mm_unpacklo_epi8(p0, p2), hi02 = _mm_unpackhi_epi8(p0, p2);
    __m128i lo13 = _mm_unpacklo_epi8(p1, p3), hi13 = _mm_unpackhi_epi8(p1, p3);
    __m128i *d = (__m128i *)(dst + 4 * i);
    _mm_storeu_si128(d, _mm_unpacklo_epi8(lo02, lo13));
    _mm_storeu_si128(d + 1, _mm_unpackhi_epi8(lo02, lo13));
    _mm_storeu_si128(d + 2, _mm_unpacklo_epi8(hi02, hi13));
    _mm_storeu_si128(d + 3, _mm_unpackhi_epi8(hi02, hi13));
  }
  return i;
}
#endif

void bytegroup_encode(uint8_t *dst, const uint8_t *src, size_t n, unsigned w) {
  size_t m = n / w, i = 0;
#ifdef __SSE2__
  if (w == 2) i = group2_sse2(dst, src, m);
  if (w == 4) i = group4_sse2(dst, src, m);
#endif
  for (; i < m; i++)
    for (unsigned j = 0; j < w; j++) dst[j * m + i] = src[w * i + j];
  memcpy(dst + m * w, src + m * w, n - m * w); /* a ragged tail stays as is */
}

void bytegroup_decode(uint8_t *dst, const uint8_t *src, size_t n, unsigned w) {
  size_t m = n / w, i = 0;
#ifdef __SSE2__
  if (w == 2) i = ungroup2_sse2(dst, src, m);
  if (w == 4) i = ungroup4_sse2(dst, src, m);
#endif
  for (; i < m; i++)
    for (unsigned j = 0; j < w; j++) dst[w * i + j] = src[j * m + i];
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

/* ---------------------------------------------------------------- raw frames */
int store_frame_read(const uint8_t *f, size_t len, size_t hdr_len, uint8_t *dst, XXH3_state_t *h) {
  /* Block headers first: a frame with any compressed block goes to libzstd
   * before anything is hashed. */
  size_t pos = hdr_len;
  for (;;) {
    uint32_t bh = (uint32_t)f[pos] | (uint32_t)f[pos + 1] << 8 | (uint32_t)f[pos + 2] << 16;
    if (((bh >> 1) & 3) != 0) return 1;
    pos += 3 + (bh >> 3);
    if (bh & 1) break;
  }
  XXH64_state_t x;
  XXH64_reset(&x, 0);
  size_t out = 0;
  pos = hdr_len;
  for (;;) {
    uint32_t bh = (uint32_t)f[pos] | (uint32_t)f[pos + 1] << 8 | (uint32_t)f[pos + 2] << 16;
    size_t size = bh >> 3;
    const uint8_t *data = f + pos + 3;
    XXH64_update(&x, data, size);
    if (h) XXH3_128bits_update(h, data, size);
    if (dst) memcpy(dst + out, data, size);
    out += size;
    pos += 3 + size;
    if (bh & 1) break;
  }
  if (pos + 4 != len || get_u32(f + pos) != (uint32_t)XXH64_digest(&x)) return -1;
  return 0;
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
    if (!s->checksum) {
      msg_set(msg, "zstd frame without its content checksum");
      return -1;
    }
    s->pos = s->hdr_len = hlen;
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
