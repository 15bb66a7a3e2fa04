/*
 * internal.h -- what format/'s modules share and nobody else sees.
 * Record layouts are defined in spec/mpuc.md ("Records"); the constants and
 * offsets here must match it byte for byte.
 */
#ifndef MPUC_INTERNAL_H
#define MPUC_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>
#define XXH_STATIC_LINKING_ONLY /* stack-allocated hash states */
#include <xxhash.h>

#include "mpuc.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mpuc: only little-endian hosts are supported (the format is little-endian)"
#endif

/* ---------------------------------------------------------------- constants */
#define MPUC_SKIP_MAGIC 0x184D2A5Bu      /* every metadata record */
#define MPUC_ZSTD_MAGIC 0xFD2FB528u      /* every chunk frame */
#define MPUC_SIGNATURE "\x89MPUC\r\n\x1a\n" /* first 9 payload bytes of the header */
#define MPUC_END_MAGIC "MPUC-END"       /* last 8 bytes of the trailer body */
#define MPUC_SIG_LEN 9
/* Header payload layout: signature, u16 major, u16 minor, u32 JSON length, JSON. */
#define HDR_MAJOR MPUC_SIG_LEN
#define HDR_MINOR (MPUC_SIG_LEN + 2)
#define HDR_JLEN (MPUC_SIG_LEN + 4)
#define HDR_JSON (MPUC_SIG_LEN + 8)
#define STREAM_PREFIX (MPUC_FRAME_HDR + MPUC_SIG_LEN) /* bytes that identify a stream */
#define MPUC_FRAME_HDR 8                 /* skippable magic + u32 size */
#define MPUC_CHECK_LEN 8                 /* XXH3-64 at the end of every record */

/* Record type: the first payload byte.  Upper case = critical, lower case =
 * ancillary (readers skip unknown ancillary records).  The header's type byte
 * is 0x89, the first byte of its signature. */
#define REC_HEADER 0x89
#define REC_ENTRY 'T'
#define REC_ENTRY_END 'E'
#define REC_TRAILER 'Z'

#define ENTRY_FIXED 24                   /* entry body bytes before dims */
#define ENTRY_END_BODY (16 + 4 + 8)
#define TRAILER_TAIL (8 + 8)             /* trailer_offset + end magic */
#define MAX_ENTRY_RECORD (1 + ENTRY_FIXED + 8 * MPUC_MAX_NDIM + 2 + MPUC_MAX_NAME + MPUC_CHECK_LEN)

/* ---------------------------------------------------------------- bytes */
static inline void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_u64(const uint8_t *p) {
  return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* ---------------------------------------------------------------- buffers */
typedef struct {
  uint8_t *p;
  size_t len, cap;
} mbuf;

int mbuf_reserve(mbuf *b, size_t extra);           /* 0 ok, -1 out of memory */
int mbuf_append(mbuf *b, const void *src, size_t n);
void mbuf_free(mbuf *b);

/* ---------------------------------------------------------------- messages */
#define MPUC_MSG_LEN 512
void msg_set(char *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints an entry's identity ("tensor 'x' copy 2") into buf. */
void entry_label(char *buf, size_t n, const mpuc_entry *e);

/* ---------------------------------------------------------------- json */
/* Canonical (style 0) or pretty (style 1) JSON of a jansson value; malloc'd. */
char *json_format_value(const json_t *v, int style, size_t *len);

/* ---------------------------------------------------------------- records */
/* Appends a complete skippable record frame (magic, size, payload, check). */
int record_emit(mbuf *out, const uint8_t *payload, size_t len_without_check);
/* Serialized entry-begin body (type byte included, check excluded). */
size_t entry_encode(uint8_t *dst, const mpuc_entry *e);
/* Parses an entry-begin payload (type .. check); fills e (name points into p). */
mpuc_status entry_decode(const uint8_t *p, size_t len, mpuc_entry *e, char *msg);
/* Bytes an entry contributes to the content digest (before its hash). */
size_t entry_descriptor(uint8_t *dst, const mpuc_entry *e);

/* ---------------------------------------------------------------- layout */
/* The announced listing ("tensors", "blobs" of the header) and the position
 * reached in it.  Writer and reader run the same checks on every entry. */
typedef struct {
  const char *name;
  size_t name_len;
  int dtype;
  unsigned ndim;
  uint64_t dims[MPUC_MAX_NDIM];
  uint64_t bytes;
  int shared;
} layout_item;

typedef struct {
  json_t *header;             /* the parsed header (owned) */
  uint32_t copies;
  layout_item *blobs, *tensors;
  size_t nblobs, ntensors;
  size_t pos;                 /* next listing item: blobs first, then tensors */
  uint32_t next_copy;         /* next copy expected within the current tensor */
  int in_group;               /* a tensor's copies are being read */
} layout;

/* Parses and checks a header JSON object; on success the layout owns it. */
mpuc_status layout_init(layout *L, json_t *header, char *msg);
void layout_free(layout *L);
/* Checks that e is the entry the listing expects next; advances. */
mpuc_status layout_accept(layout *L, const mpuc_entry *e, char *msg);
/* Checks that every announced entry has been seen. */
mpuc_status layout_complete(const layout *L, char *msg);
size_t layout_total_entries(const layout *L);

/* ---------------------------------------------------------------- chunks */
/* Reorders n bytes into w planes (plane j holds byte j of every element). */
void bytegroup_encode(uint8_t *dst, const uint8_t *src, size_t n, unsigned w);
void bytegroup_decode(uint8_t *dst, const uint8_t *src, size_t n, unsigned w);
/* Writes src as an uncompressed zstd frame (raw blocks, content size and
 * checksum present).  dst needs store_frame_bound(n) bytes. */
size_t store_frame_bound(size_t n);
size_t store_frame_write(uint8_t *dst, const uint8_t *src, size_t n);

/* Reads a complete, scanned frame made only of raw blocks: checks its XXH64,
 * feeds the content to h (may be NULL) and copies it to dst (may be NULL).
 * Returns 0, -1 on a checksum mismatch, or 1 if a block is not raw (the
 * caller then decodes the frame with libzstd; nothing was hashed). */
int store_frame_read(const uint8_t *f, size_t len, size_t hdr_len, uint8_t *dst, XXH3_state_t *h);

/* Incremental discovery of where a zstd frame ends, without decoding it. */
typedef struct {
  size_t pos;           /* bytes of the frame examined so far */
  size_t need;          /* after a 0 return: bytes of the frame needed to go on */
  size_t hdr_len;       /* bytes of the frame header */
  uint64_t content;     /* Frame_Content_Size */
  int header_done, last_block, checksum, done;
} frame_scan;
/* Scans p[0..avail) (the frame's first avail bytes).  Returns 1 when the frame
 * is complete (its length in s->pos), 0 when more bytes are needed, or a
 * negative value on a malformed frame (message in msg). */
int frame_scan_step(frame_scan *s, const uint8_t *p, size_t avail, char *msg);

#endif /* MPUC_INTERNAL_H */
