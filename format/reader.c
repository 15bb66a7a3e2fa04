/*
 * reader.c -- reads an .mpuc stream front to back, checking as it goes.
 *
 * Bytes arrive in whatever pieces the caller has.  A unit (record or chunk
 * frame) is processed only once it is whole: straight from the caller's
 * buffer when it lies there complete, else gathered in a FIFO.  Every unit's
 * size is bounded before any byte of it is buffered, so hostile input cannot
 * make the reader hold more than one chunk frame or one metadata record.
 *
 * Checks, in stream order: signature and version; every record's XXH3-64;
 * the grammar against the header's listing; every chunk frame's zstd XXH64
 * and content size; every entry's XXH3-128 and chunk count; finally the
 * trailer's counts, content digest, stream digest and index.
 */
#include <stdlib.h>

#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "internal.h"

enum { R_START, R_BETWEEN, R_ENTRY, R_DELIVER, R_DONE, R_FAILED };

#define MAX_ANCILLARY (16u << 20)

typedef struct {
  const uint8_t *p;
  size_t n;
  int direct; /* the bytes lie in the caller's input, not the FIFO */
} view;

struct mpuc_reader {
  int state;
  mbuf q;                         /* stream bytes received but not consumed */
  size_t qpos;
  uint64_t offset;                /* stream bytes consumed */
  layout L;
  char *header_json;
  size_t header_len;
  unsigned minor;
  char stream_id[33], header_digest[33], content_digest[33], stream_digest[33];
  XXH3_state_t *stream_hash, *content_hash, *entry_hash, *index_hash;
  mpuc_tap_fn tap;                /* sees the bytes stream_hash covers */
  void *tap_ctx;
  /* the current entry */
  mpuc_entry cur;
  uint8_t cur_rec[MAX_ENTRY_RECORD];
  char label[300];
  uint32_t chunks_expected;
  uint64_t decoded;
  frame_scan scan;
  uint8_t *chunk, *tmp;
  size_t chunk_cap;
  const uint8_t *deliver;
  size_t deliver_left;
  ZSTD_DCtx *dctx;
  uint64_t n_entries, n_tensors, n_blobs, n_chunks, raw_bytes, stored_bytes;
  char *trailer_json;
  size_t trailer_len;
  char msg[MPUC_MSG_LEN];
};

mpuc_reader *mpuc_reader_create(void) {
  mpuc_reader *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->stream_hash = XXH3_createState();
  r->content_hash = XXH3_createState();
  r->entry_hash = XXH3_createState();
  r->index_hash = XXH3_createState();
  r->dctx = ZSTD_createDCtx();
  if (!r->stream_hash || !r->content_hash || !r->entry_hash || !r->index_hash || !r->dctx) {
    mpuc_reader_free(r);
    return NULL;
  }
  XXH3_128bits_reset(r->stream_hash);
  XXH3_64bits_reset(r->index_hash);
  return r;
}

void mpuc_reader_free(mpuc_reader *r) {
  if (!r) return;
  mbuf_free(&r->q);
  layout_free(&r->L);
  free(r->header_json);
  free(r->trailer_json);
  XXH3_freeState(r->stream_hash);
  XXH3_freeState(r->content_hash);
  XXH3_freeState(r->entry_hash);
  XXH3_freeState(r->index_hash);
  free(r->chunk);
  free(r->tmp);
  ZSTD_freeDCtx(r->dctx);
  free(r);
}

static mpuc_status fail(mpuc_reader *r, mpuc_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static mpuc_status fail(mpuc_reader *r, mpuc_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->msg, sizeof r->msg, fmt, ap);
  va_end(ap);
  r->state = R_FAILED;
  return st;
}

/* ---------------------------------------------------------------- input */
/* Makes `need` contiguous bytes visible in *v if it can; else absorbs the
 * caller's input into the FIFO and returns 0 (more input needed). */
static int ensure(mpuc_reader *r, mpuc_in *in, size_t need, view *v) {
  size_t qa = r->q.len - r->qpos;
  size_t ia = in->size - in->pos;
  if (qa == 0 && ia >= need) {
    v->p = (const uint8_t *)in->src + in->pos;
    v->n = ia;
    v->direct = 1;
    return 1;
  }
  if (qa < need && ia) {
    size_t take = need - qa < ia ? need - qa : ia;
    if (r->qpos && r->qpos >= r->q.len / 2) { /* slide the FIFO back to its start */
      memmove(r->q.p, r->q.p + r->qpos, qa);
      r->q.len = qa;
      r->qpos = 0;
    }
    if (mbuf_append(&r->q, (const uint8_t *)in->src + in->pos, take)) return -1;
    in->pos += take;
    qa += take;
  }
  if (qa < need) return 0;
  v->p = r->q.p + r->qpos;
  v->n = qa;
  v->direct = 0;
  return 1;
}

static void consume(mpuc_reader *r, mpuc_in *in, const view *v, size_t n, int hash) {
  if (hash) {
    XXH3_128bits_update(r->stream_hash, v->p, n);
    if (r->tap) r->tap(r->tap_ctx, v->p, n);
  }
  r->offset += n;
  if (v->direct) {
    in->pos += n;
  } else {
    r->qpos += n;
    if (r->qpos == r->q.len) r->qpos = r->q.len = 0;
  }
}

static int out_discards(const mpuc_out *out) { return !out || !out->dst; }

/* ---------------------------------------------------------------- records */
/* Checks a record's trailing XXH3-64; payload covers type .. check. */
static int record_check_ok(const uint8_t *payload, size_t len) {
  return len >= MPUC_CHECK_LEN &&
         XXH3_64bits(payload, len - MPUC_CHECK_LEN) == get_u64(payload + len - MPUC_CHECK_LEN);
}

static void hex_of(const uint8_t d[16], char out[33]) { mpuc_hex128(d, out); }

static mpuc_status read_header(mpuc_reader *r, const uint8_t *payload, size_t len) {
  if (len < HDR_JSON + MPUC_CHECK_LEN)
    return fail(r, MPUC_ERR_CORRUPT, "header record too short (%zu bytes)", len);
  if (!record_check_ok(payload, len))
    return fail(r, MPUC_ERR_CHECKSUM, "header record: checksum mismatch (the header is damaged)");
  unsigned major = get_u16(payload + HDR_MAJOR);
  r->minor = get_u16(payload + HDR_MINOR);
  uint32_t jlen = get_u32(payload + HDR_JLEN);
  if (major != MPUC_FORMAT_MAJOR)
    return fail(r, MPUC_ERR_VERSION,
                "format version %u.%u is not readable by this mpu (reads %d.x); %s", major, r->minor,
                MPUC_FORMAT_MAJOR, major > MPUC_FORMAT_MAJOR ? "upgrade mpu" : "convert it with an older mpu");
  if ((size_t)jlen + HDR_JSON + MPUC_CHECK_LEN != len)
    return fail(r, MPUC_ERR_CORRUPT, "header record: JSON length %u does not match the record", jlen);
  json_error_t jerr;
  json_t *h = json_loadb((const char *)payload + HDR_JSON, jlen, JSON_REJECT_DUPLICATES, &jerr);
  if (!h) return fail(r, MPUC_ERR_CORRUPT, "header JSON: %s (column %d)", jerr.text, jerr.column);
  char lmsg[MPUC_MSG_LEN];
  mpuc_status st = layout_init(&r->L, h, lmsg);
  if (st) return fail(r, st, "%s", lmsg);
  r->header_json = malloc(jlen + 1);
  if (!r->header_json) return fail(r, MPUC_ERR_NOMEM, "out of memory");
  memcpy(r->header_json, payload + HDR_JSON, jlen);
  r->header_json[jlen] = 0;
  r->header_len = jlen;
  snprintf(r->stream_id, sizeof r->stream_id, "%s", json_string_value(json_object_get(h, "stream_id")));
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(payload, len));
  hex_of(c.digest, r->header_digest);
  XXH3_128bits_reset(r->content_hash);
  XXH3_128bits_update(r->content_hash, c.digest, 16);
  return MPUC_OK;
}

static mpuc_status read_entry(mpuc_reader *r, const uint8_t *payload, size_t len) {
  if (!record_check_ok(payload, len))
    return fail(r, MPUC_ERR_CHECKSUM, "entry record at offset %llu: checksum mismatch (the tensor record is damaged)",
                (unsigned long long)r->offset);
  memcpy(r->cur_rec, payload, len - MPUC_CHECK_LEN);
  char dmsg[MPUC_MSG_LEN];
  mpuc_entry e;
  mpuc_status st = entry_decode(r->cur_rec, len - MPUC_CHECK_LEN, &e, dmsg);
  if (st) return fail(r, st, "offset %llu: %s", (unsigned long long)r->offset, dmsg);
  e.offset = r->offset;
  entry_label(r->label, sizeof r->label, &e);
  if (e.kind != MPUC_KIND_TENSOR && e.kind != MPUC_KIND_BLOB)
    return fail(r, MPUC_ERR_VERSION, "%s: unknown entry kind %d (written by a newer mpu?)", r->label, e.kind);
  if (e.codec != MPUC_CODEC_STORE && e.codec != MPUC_CODEC_ZSTD)
    return fail(r, MPUC_ERR_VERSION, "%s: unknown codec %d (written by a newer mpu?)", r->label, e.codec);
  if (e.filter != MPUC_FILTER_NONE && e.filter != MPUC_FILTER_BYTEGROUP)
    return fail(r, MPUC_ERR_VERSION, "%s: unknown filter %d (written by a newer mpu?)", r->label, e.filter);
  if (!mpuc_dtype_name(e.dtype))
    return fail(r, MPUC_ERR_VERSION, "%s: unknown dtype code %d (written by a newer mpu?)", r->label, e.dtype);
  if (e.raw_size && (e.chunk_size < MPUC_MIN_CHUNK || e.chunk_size > MPUC_MAX_CHUNK || e.chunk_size % 64))
    return fail(r, MPUC_ERR_LIMIT, "%s: chunk size %u outside %u..%u or not a multiple of 64", r->label,
                e.chunk_size, MPUC_MIN_CHUNK, MPUC_MAX_CHUNK);
  if (r->n_entries >= MPUC_MAX_ENTRIES)
    return fail(r, MPUC_ERR_LIMIT, "more than %u entries", MPUC_MAX_ENTRIES);
  uint64_t bytes;
  if (e.kind == MPUC_KIND_TENSOR &&
      (mpuc_tensor_bytes(e.dtype, e.ndim, e.dims, &bytes) || bytes != e.raw_size))
    return fail(r, MPUC_ERR_CORRUPT, "%s: size %llu does not match its dtype and shape", r->label,
                (unsigned long long)e.raw_size);
  char lmsg[MPUC_MSG_LEN];
  st = layout_accept(&r->L, &e, lmsg);
  if (st) return fail(r, st, "%s", lmsg);
  r->cur = e;
  r->chunks_expected = e.raw_size ? (uint32_t)((e.raw_size + e.chunk_size - 1) / e.chunk_size) : 0;
  if (e.raw_size && (e.raw_size - 1) / e.chunk_size >= UINT32_MAX)
    return fail(r, MPUC_ERR_LIMIT, "%s: too many chunks", r->label);
  r->decoded = 0;
  memset(&r->scan, 0, sizeof r->scan);
  size_t cap = e.raw_size < e.chunk_size ? (size_t)e.raw_size : e.chunk_size;
  if (cap > r->chunk_cap) {
    free(r->chunk);
    free(r->tmp);
    r->chunk = malloc(cap);
    r->tmp = malloc(cap);
    r->chunk_cap = r->chunk && r->tmp ? cap : 0;
    if (!r->chunk_cap) return fail(r, MPUC_ERR_NOMEM, "out of memory for a %zu-byte chunk", cap);
  }
  XXH3_128bits_reset(r->entry_hash);
  return MPUC_OK;
}

/* Hash of one index item, the same from the entries seen and from the trailer. */
static void index_item_hash(XXH3_state_t *h, uint64_t offset, uint32_t copy, int kind, uint64_t bytes,
                            const uint8_t xxh3[16], const char *name, size_t name_len) {
  uint8_t b[8 + 4 + 1 + 8 + 16 + 2];
  put_u64(b, offset);
  put_u32(b + 8, copy);
  b[12] = (uint8_t)kind;
  put_u64(b + 13, bytes);
  memcpy(b + 21, xxh3, 16);
  put_u16(b + 37, (uint16_t)name_len);
  XXH3_64bits_update(h, b, sizeof b);
  XXH3_64bits_update(h, name, name_len);
}

static mpuc_status read_entry_end(mpuc_reader *r, const uint8_t *payload, size_t len) {
  if (len != 1 + ENTRY_END_BODY + MPUC_CHECK_LEN)
    return fail(r, MPUC_ERR_CORRUPT, "%s: end record of %zu bytes (expected %d)", r->label, len,
                1 + ENTRY_END_BODY + MPUC_CHECK_LEN);
  if (!record_check_ok(payload, len))
    return fail(r, MPUC_ERR_CHECKSUM, "%s: end record checksum mismatch", r->label);
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(r->entry_hash));
  if (memcmp(c.digest, payload + 1, 16) != 0) {
    char want[33], got[33];
    hex_of(payload + 1, want);
    hex_of(c.digest, got);
    return fail(r, MPUC_ERR_CHECKSUM, "%s: XXH3-128 mismatch (data %s, recorded %s)", r->label, got, want);
  }
  if (get_u32(payload + 17) != r->cur.chunks || get_u64(payload + 21) != r->cur.stored_size)
    return fail(r, MPUC_ERR_CORRUPT, "%s: end record counts %u chunks / %llu bytes, stream had %u / %llu",
                r->label, get_u32(payload + 17), (unsigned long long)get_u64(payload + 21), r->cur.chunks,
                (unsigned long long)r->cur.stored_size);
  memcpy(r->cur.xxh3, c.digest, 16);
  uint8_t desc[MAX_ENTRY_RECORD];
  XXH3_128bits_update(r->content_hash, desc, entry_descriptor(desc, &r->cur));
  XXH3_128bits_update(r->content_hash, c.digest, 16);
  index_item_hash(r->index_hash, r->cur.offset, r->cur.copy, r->cur.kind, r->cur.raw_size, c.digest,
                  r->cur.name, r->cur.name_len);
  r->n_entries++;
  if (r->cur.kind == MPUC_KIND_BLOB) r->n_blobs++;
  else r->n_tensors++;
  r->n_chunks += r->cur.chunks;
  r->raw_bytes += r->cur.raw_size;
  r->stored_bytes += r->cur.stored_size;
  return MPUC_OK;
}

static int hex_to_bytes(const char *s, uint8_t out[16]) {
  if (!s || strlen(s) != 32) return -1;
  for (int i = 0; i < 16; i++) {
    int v = 0;
    for (int k = 0; k < 2; k++) {
      char ch = s[2 * i + k];
      int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    out[i] = (uint8_t)v;
  }
  return 0;
}

static const char *digest_of(json_t *t, const char *key) {
  return json_string_value(json_object_get(json_object_get(t, key), "xxh3_128"));
}

static mpuc_status check_trailer_json(mpuc_reader *r, json_t *t) {
  if (!json_is_object(t)) return fail(r, MPUC_ERR_CORRUPT, "trailer: not a JSON object");
  json_t *counts = json_object_get(t, "counts");
  static const char *const names[] = {"entries", "tensors", "blobs", "chunks", "raw_bytes", "stored_bytes"};
  const uint64_t seen[] = {r->n_entries, r->n_tensors, r->n_blobs, r->n_chunks, r->raw_bytes, r->stored_bytes};
  for (int i = 0; i < 6; i++) {
    json_t *v = json_object_get(counts, names[i]);
    if (!json_is_integer(v) || (uint64_t)json_integer_value(v) != seen[i])
      return fail(r, MPUC_ERR_CORRUPT, "trailer: counts.%s is not the %llu the stream holds", names[i],
                  (unsigned long long)seen[i]);
  }
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(r->content_hash));
  hex_of(c.digest, r->content_digest);
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(r->stream_hash));
  hex_of(c.digest, r->stream_digest);
  const char *cd = digest_of(t, "content_digest"), *sd = digest_of(t, "stream_digest");
  if (!cd || strcmp(cd, r->content_digest) != 0)
    return fail(r, MPUC_ERR_CHECKSUM, "trailer: content digest %s, stream has %s", cd ? cd : "(missing)",
                r->content_digest);
  if (!sd || strcmp(sd, r->stream_digest) != 0)
    return fail(r, MPUC_ERR_CHECKSUM, "trailer: stream digest %s, stream has %s", sd ? sd : "(missing)",
                r->stream_digest);
  json_t *index = json_object_get(t, "index");
  if (!json_is_array(index) || json_array_size(index) != r->n_entries)
    return fail(r, MPUC_ERR_CORRUPT, "trailer: index does not list the %llu entries",
                (unsigned long long)r->n_entries);
  XXH3_state_t *h = XXH3_createState();
  if (!h) return fail(r, MPUC_ERR_NOMEM, "out of memory");
  XXH3_64bits_reset(h);
  size_t i;
  json_t *it;
  int ok = 1;
  json_array_foreach(index, i, it) {
    json_t *name = json_object_get(it, "name"), *copy = json_object_get(it, "copy");
    json_t *kind = json_object_get(it, "kind"), *off = json_object_get(it, "offset");
    json_t *bytes = json_object_get(it, "bytes");
    uint8_t d[16];
    if (!json_is_string(name) || !json_is_integer(copy) || !json_is_string(kind) || !json_is_integer(off) ||
        !json_is_integer(bytes) || hex_to_bytes(json_string_value(json_object_get(it, "xxh3_128")), d)) {
      ok = 0;
      break;
    }
    json_int_t cp = json_integer_value(copy);
    index_item_hash(h, (uint64_t)json_integer_value(off), cp == -1 ? MPUC_COPY_SHARED : (uint32_t)cp,
                    strcmp(json_string_value(kind), "blob") == 0 ? MPUC_KIND_BLOB : MPUC_KIND_TENSOR,
                    (uint64_t)json_integer_value(bytes), d, json_string_value(name), json_string_length(name));
  }
  ok = ok && XXH3_64bits_digest(h) == XXH3_64bits_digest(r->index_hash);
  XXH3_freeState(h);
  if (!ok) return fail(r, MPUC_ERR_CORRUPT, "trailer: the index does not match the entries read");
  return MPUC_OK;
}

static mpuc_status read_trailer(mpuc_reader *r, const uint8_t *payload, size_t len) {
  if (len < 1 + 4 + TRAILER_TAIL + MPUC_CHECK_LEN)
    return fail(r, MPUC_ERR_CORRUPT, "trailer record too short");
  if (!record_check_ok(payload, len))
    return fail(r, MPUC_ERR_CHECKSUM, "trailer record: checksum mismatch (the trailer is damaged)");
  uint32_t jlen = get_u32(payload + 1);
  if ((size_t)jlen + 1 + 4 + TRAILER_TAIL + MPUC_CHECK_LEN != len)
    return fail(r, MPUC_ERR_CORRUPT, "trailer record: JSON length %u does not match the record", jlen);
  const uint8_t *tail = payload + 5 + jlen;
  if (memcmp(tail + 8, MPUC_END_MAGIC, 8) != 0)
    return fail(r, MPUC_ERR_CORRUPT, "trailer record: end marker missing");
  if (get_u64(tail) != r->offset)
    return fail(r, MPUC_ERR_CORRUPT, "trailer record: says it starts at %llu, found at %llu",
                (unsigned long long)get_u64(tail), (unsigned long long)r->offset);
  char lmsg[MPUC_MSG_LEN];
  mpuc_status st = layout_complete(&r->L, lmsg);
  if (st) return fail(r, st, "%s", lmsg);
  json_error_t jerr;
  json_t *t = json_loadb((const char *)payload + 5, jlen, JSON_REJECT_DUPLICATES, &jerr);
  if (!t) return fail(r, MPUC_ERR_CORRUPT, "trailer JSON: %s", jerr.text);
  st = check_trailer_json(r, t);
  json_decref(t);
  if (st) return st;
  r->trailer_json = malloc(jlen + 1);
  if (!r->trailer_json) return fail(r, MPUC_ERR_NOMEM, "out of memory");
  memcpy(r->trailer_json, payload + 5, jlen);
  r->trailer_json[jlen] = 0;
  r->trailer_len = jlen;
  return MPUC_OK;
}

/* ---------------------------------------------------------------- chunks */
static uint64_t chunk_raw_size(const mpuc_reader *r) {
  uint64_t left = r->cur.raw_size - (uint64_t)r->cur.chunks * r->cur.chunk_size;
  return left < r->cur.chunk_size ? left : r->cur.chunk_size;
}

/* Decodes one complete chunk frame; returns where its raw bytes are. */
static mpuc_status decode_chunk(mpuc_reader *r, const uint8_t *frame, size_t flen, uint8_t *dst,
                                size_t n) {
  if (r->cur.filter == MPUC_FILTER_NONE) {
    /* Raw blocks are checked and hashed where they lie: no decoder, and no
     * copy at all when the caller discards the bytes. */
    int raw = store_frame_read(frame, flen, r->scan.hdr_len, dst, r->entry_hash);
    if (raw < 0)
      return fail(r, MPUC_ERR_CHECKSUM, "%s, chunk %u (offset %llu): checksum mismatch (the chunk is damaged)",
                  r->label, r->cur.chunks + 1, (unsigned long long)r->offset);
    if (raw == 0) return MPUC_OK;
  }
  if (!dst) dst = r->chunk;
  uint8_t *target = r->cur.filter == MPUC_FILTER_BYTEGROUP ? r->tmp : dst;
  size_t got = ZSTD_decompressDCtx(r->dctx, target, n, frame, flen);
  if (ZSTD_isError(got)) {
    ZSTD_ErrorCode code = ZSTD_getErrorCode(got);
    return fail(r, code == ZSTD_error_checksum_wrong ? MPUC_ERR_CHECKSUM : MPUC_ERR_CORRUPT,
                "%s, chunk %u (offset %llu): %s", r->label, r->cur.chunks + 1,
                (unsigned long long)r->offset, ZSTD_getErrorName(got));
  }
  if (got != n)
    return fail(r, MPUC_ERR_CORRUPT, "%s, chunk %u: decoded %zu bytes, expected %zu", r->label,
                r->cur.chunks + 1, got, n);
  if (target != dst) bytegroup_decode(dst, target, n, mpuc_dtype_group_width(r->cur.dtype));
  XXH3_128bits_update(r->entry_hash, dst, n);
  return MPUC_OK;
}

/* ---------------------------------------------------------------- the machine */
static mpuc_status step_start(mpuc_reader *r, mpuc_in *in, int *ready) {
  view v;
  int got = ensure(r, in, STREAM_PREFIX, &v);
  if (got < 0) return fail(r, MPUC_ERR_NOMEM, "out of memory");
  if (!got) return MPUC_OK;
  if (get_u32(v.p) != MPUC_SKIP_MAGIC || memcmp(v.p + MPUC_FRAME_HDR, MPUC_SIGNATURE, MPUC_SIG_LEN) != 0) {
    const char *what = mpuc_sniff(v.p, v.n);
    return fail(r, MPUC_ERR_NOT_MPUC, "not an .mpuc stream: the input looks like %s",
                what ? what : "an .mpuc stream with a damaged signature");
  }
  uint32_t size = get_u32(v.p + 4);
  if (size > MPUC_MAX_HEADER_JSON + HDR_JSON + MPUC_CHECK_LEN)
    return fail(r, MPUC_ERR_LIMIT, "header record of %u bytes (limit %u)", size, MPUC_MAX_HEADER_JSON);
  got = ensure(r, in, MPUC_FRAME_HDR + (size_t)size, &v);
  if (got < 0) return fail(r, MPUC_ERR_NOMEM, "out of memory");
  if (!got) return MPUC_OK;
  mpuc_status st = read_header(r, v.p + MPUC_FRAME_HDR, size);
  if (st) return st;
  consume(r, in, &v, MPUC_FRAME_HDR + (size_t)size, 1);
  r->state = R_BETWEEN;
  *ready = 1;
  return MPUC_OK;
}

/* Reads the next record frame's header; returns its type byte in *type and
 * its payload size, or *ready = 0 when more input is needed. */
static mpuc_status peek_record(mpuc_reader *r, mpuc_in *in, view *v, int *type, uint32_t *size, int *ready) {
  *ready = 0;
  int got = ensure(r, in, MPUC_FRAME_HDR + 1, v);
  if (got < 0) return fail(r, MPUC_ERR_NOMEM, "out of memory");
  if (!got) return MPUC_OK;
  uint32_t magic = get_u32(v->p);
  if (magic == MPUC_ZSTD_MAGIC) {
    *type = -1;
    *ready = 1;
    return MPUC_OK;
  }
  if (magic != MPUC_SKIP_MAGIC) {
    if ((magic & 0xFFFFFFF0u) == 0x184D2A50u)
      return fail(r, MPUC_ERR_CORRUPT, "offset %llu: a skippable frame (0x%08x) that is not an .mpuc record",
                  (unsigned long long)r->offset, magic);
    return fail(r, MPUC_ERR_CORRUPT, "offset %llu: expected a record or chunk frame, found bytes %02x %02x %02x %02x",
                (unsigned long long)r->offset, v->p[0], v->p[1], v->p[2], v->p[3]);
  }
  *size = get_u32(v->p + 4);
  *type = v->p[8];
  if (*size == 0) return fail(r, MPUC_ERR_CORRUPT, "offset %llu: empty record", (unsigned long long)r->offset);
  *ready = 1;
  return MPUC_OK;
}

static mpuc_status step_between(mpuc_reader *r, mpuc_in *in, mpuc_event *ev, int *ready) {
  view v;
  int type, got;
  uint32_t size = 0;
  mpuc_status st = peek_record(r, in, &v, &type, &size, ready);
  if (st || !*ready) return st;
  *ready = 0;
  uint32_t limit;
  const char *what;
  if (type == REC_ENTRY) {
    limit = MAX_ENTRY_RECORD;
    what = "entry";
  } else if (type == REC_TRAILER) {
    limit = MPUC_MAX_TRAILER_JSON + 1 + 4 + TRAILER_TAIL + MPUC_CHECK_LEN;
    what = "trailer";
  } else if (type >= 'a' && type <= 'z') {
    limit = MAX_ANCILLARY;
    what = "ancillary";
  } else if (type == -1) {
    return fail(r, MPUC_ERR_LAYOUT, "offset %llu: a chunk frame outside any entry", (unsigned long long)r->offset);
  } else if (type == REC_ENTRY_END) {
    return fail(r, MPUC_ERR_LAYOUT, "offset %llu: an entry end record without its entry", (unsigned long long)r->offset);
  } else if (type == REC_HEADER) {
    return fail(r, MPUC_ERR_LAYOUT, "offset %llu: a second header (concatenated streams?)", (unsigned long long)r->offset);
  } else {
    return fail(r, MPUC_ERR_VERSION, "offset %llu: unknown critical record type 0x%02x (written by a newer mpu?)",
                (unsigned long long)r->offset, type);
  }
  if (size > limit)
    return fail(r, MPUC_ERR_LIMIT, "offset %llu: %s record of %u bytes (limit %u)", (unsigned long long)r->offset,
                what, size, limit);
  got = ensure(r, in, MPUC_FRAME_HDR + (size_t)size, &v);
  if (got < 0) return fail(r, MPUC_ERR_NOMEM, "out of memory");
  if (!got) return MPUC_OK;
  const uint8_t *payload = v.p + MPUC_FRAME_HDR;
  if (type == REC_ENTRY) {
    st = read_entry(r, payload, size);
    if (st) return st;
    consume(r, in, &v, MPUC_FRAME_HDR + (size_t)size, 1);
    r->state = R_ENTRY;
    *ev = MPUC_EV_ENTRY;
  } else if (type == REC_TRAILER) {
    st = read_trailer(r, payload, size);
    if (st) return st;
    consume(r, in, &v, MPUC_FRAME_HDR + (size_t)size, 0);
    r->state = R_DONE;
    *ev = MPUC_EV_END;
  } else {
    /* An ancillary record this reader does not know: checked, then skipped. */
    if (!record_check_ok(payload, size))
      return fail(r, MPUC_ERR_CHECKSUM, "offset %llu: ancillary record checksum mismatch", (unsigned long long)r->offset);
    consume(r, in, &v, MPUC_FRAME_HDR + (size_t)size, 1);
    return MPUC_OK;
  }
  *ready = 1;
  return MPUC_OK;
}

static mpuc_status step_entry(mpuc_reader *r, mpuc_in *in, mpuc_out *out, mpuc_event *ev, int *ready) {
  view v;
  int got;
  *ready = 0;
  if (r->cur.chunks == r->chunks_expected) {
    int type;
    uint32_t size = 0;
    mpuc_status st = peek_record(r, in, &v, &type, &size, ready);
    if (st || !*ready) return st;
    *ready = 0;
    if (type != REC_ENTRY_END)
      return fail(r, MPUC_ERR_LAYOUT, "%s: expected its end record after %u chunks, found %s", r->label,
                  r->chunks_expected, type == -1 ? "another chunk frame" : "another record");
    if (size > 64) return fail(r, MPUC_ERR_CORRUPT, "%s: end record of %u bytes", r->label, size);
    got = ensure(r, in, MPUC_FRAME_HDR + (size_t)size, &v);
    if (got < 0) return fail(r, MPUC_ERR_NOMEM, "out of memory");
    if (!got) return MPUC_OK;
    st = read_entry_end(r, v.p + MPUC_FRAME_HDR, size);
    if (st) return st;
    consume(r, in, &v, MPUC_FRAME_HDR + (size_t)size, 1);
    r->state = R_BETWEEN;
    *ev = MPUC_EV_ENTRY_END;
    *ready = 1;
    return MPUC_OK;
  }
  if (!out_discards(out) && out->pos == out->size) { /* the caller must drain first */
    *ev = MPUC_EV_DATA;
    *ready = 1;
    return MPUC_OK;
  }
  size_t n = (size_t)chunk_raw_size(r);
  size_t bound = r->cur.codec == MPUC_CODEC_STORE ? store_frame_bound(n) : ZSTD_compressBound(n);
  char smsg[MPUC_MSG_LEN];
  for (;;) {
    size_t need = r->scan.need ? r->scan.need : 18; /* 18: the largest frame header */
    if (need > bound) need = bound;
    got = ensure(r, in, need, &v);
    if (got < 0) return fail(r, MPUC_ERR_NOMEM, "out of memory");
    if (!got) return MPUC_OK;
    if (get_u32(v.p) != MPUC_ZSTD_MAGIC)
      return fail(r, MPUC_ERR_LAYOUT, "%s: found a record after %u of its %u chunks", r->label, r->cur.chunks,
                  r->chunks_expected);
    int done = frame_scan_step(&r->scan, v.p, v.n < bound ? v.n : bound, smsg);
    if (done < 0) return fail(r, MPUC_ERR_CORRUPT, "%s, chunk %u (offset %llu): %s", r->label, r->cur.chunks + 1,
                              (unsigned long long)r->offset, smsg);
    if (done) break;
    if (r->scan.need > bound)
      return fail(r, MPUC_ERR_CORRUPT, "%s, chunk %u: frame larger than its %zu-byte bound", r->label,
                  r->cur.chunks + 1, bound);
  }
  if (r->scan.content != n)
    return fail(r, MPUC_ERR_CORRUPT, "%s, chunk %u: frame holds %llu bytes, expected %zu", r->label,
                r->cur.chunks + 1, (unsigned long long)r->scan.content, n);
  size_t flen = r->scan.pos;
  int direct = !out_discards(out) && r->cur.filter == MPUC_FILTER_NONE && out->size - out->pos >= n;
  uint8_t *dst = out_discards(out) ? NULL : direct ? (uint8_t *)out->dst + out->pos : r->chunk;
  mpuc_status st = decode_chunk(r, v.p, flen, dst, n);
  if (st) return st;
  consume(r, in, &v, flen, 1);
  r->cur.chunks++;
  r->cur.stored_size += flen;
  memset(&r->scan, 0, sizeof r->scan);
  if (direct) {
    out->pos += n;
  } else if (!out_discards(out)) {
    r->deliver = r->chunk;
    r->deliver_left = n;
    r->state = R_DELIVER;
  }
  return MPUC_OK;
}

mpuc_status mpuc_reader_next(mpuc_reader *r, mpuc_in *in, mpuc_out *out, mpuc_event *ev) {
  mpuc_in none = {0};
  if (!in) in = &none;
  for (;;) {
    int ready = 0;
    mpuc_status st = MPUC_OK;
    switch (r->state) {
    case R_FAILED:
      return MPUC_ERR_USAGE;
    case R_START:
      st = step_start(r, in, &ready);
      if (!st && ready) {
        *ev = MPUC_EV_HEADER;
        return MPUC_OK;
      }
      break;
    case R_BETWEEN:
      st = step_between(r, in, ev, &ready);
      if (!st && ready) return MPUC_OK;
      if (!st && r->state == R_BETWEEN && in->pos < in->size) continue; /* skipped a record */
      break;
    case R_ENTRY:
      st = step_entry(r, in, out, ev, &ready);
      if (!st && ready) return MPUC_OK;
      if (!st && r->state != R_ENTRY) continue;
      if (!st && in->pos < in->size) continue; /* decoded a chunk straight into out */
      break;
    case R_DELIVER: {
      if (out_discards(out)) { /* the caller no longer wants the rest of this chunk */
        r->deliver_left = 0;
        r->state = R_ENTRY;
        continue;
      }
      size_t room = out->size - out->pos;
      size_t n = r->deliver_left < room ? r->deliver_left : room;
      memcpy((uint8_t *)out->dst + out->pos, r->deliver, n);
      out->pos += n;
      r->deliver += n;
      r->deliver_left -= n;
      if (r->deliver_left == 0) {
        r->state = R_ENTRY;
        continue;
      }
      *ev = MPUC_EV_DATA;
      return MPUC_OK;
    }
    case R_DONE:
      if (in->pos < in->size || r->q.len > r->qpos) {
        const uint8_t *p = r->q.len > r->qpos ? r->q.p + r->qpos : (const uint8_t *)in->src + in->pos;
        size_t n = r->q.len > r->qpos ? r->q.len - r->qpos : in->size - in->pos;
        return fail(r, MPUC_ERR_CORRUPT, "trailing data after the end of the stream (offset %llu)%s",
                    (unsigned long long)r->offset,
                    n >= 4 && get_u32(p) == MPUC_SKIP_MAGIC ? ": another stream follows (concatenated streams?)" : "");
      }
      break;
    }
    if (st) return st;
    if (r->state == R_BETWEEN || r->state == R_ENTRY || r->state == R_START || r->state == R_DONE) {
      /* No event: either every input byte is absorbed or we must loop. */
      if (in->pos < in->size && r->state != R_DONE) continue;
      *ev = MPUC_EV_NEED_INPUT;
      return MPUC_OK;
    }
  }
}

/* Whether p[0..n) could be the start of an .mpuc header. */
static int header_prefix(const uint8_t *p, size_t n) {
  static const uint8_t magic[4] = {0x5B, 0x2A, 0x4D, 0x18};
  for (size_t i = 0; i < n && i < STREAM_PREFIX; i++) {
    if (i < 4 && p[i] != magic[i]) return 0;
    if (i >= MPUC_FRAME_HDR && p[i] != (uint8_t)MPUC_SIGNATURE[i - MPUC_FRAME_HDR]) return 0;
  }
  return 1;
}

void *mpuc_reader_input_space(mpuc_reader *r, size_t *room) {
  /* What the unit being gathered still needs, or a generous read. */
  size_t held = r->q.len - r->qpos, want = 1u << 20;
  if (r->qpos && (r->q.cap - r->q.len < want || r->qpos == r->q.len)) {
    memmove(r->q.p, r->q.p + r->qpos, held); /* only a partial unit moves */
    r->q.len = held;
    r->qpos = 0;
  }
  if (mbuf_reserve(&r->q, want)) {
    *room = 0;
    return NULL;
  }
  *room = r->q.cap - r->q.len;
  return r->q.p + r->q.len;
}

void mpuc_reader_input_commit(mpuc_reader *r, size_t n) { r->q.len += n; }

mpuc_status mpuc_reader_finish(mpuc_reader *r) {
  if (r->state == R_DONE) {
    if (r->q.len > r->qpos)
      return fail(r, MPUC_ERR_CORRUPT, "trailing data after the end of the stream (offset %llu)",
                  (unsigned long long)r->offset);
    return MPUC_OK;
  }
  if (r->state == R_FAILED) return MPUC_ERR_USAGE;
  size_t held = r->q.len - r->qpos;
  unsigned long long at = (unsigned long long)(r->offset + held);
  switch (r->state) {
  case R_START:
    if (held == 0) return fail(r, MPUC_ERR_NOT_MPUC, "empty input (did the stage before it fail?)");
    if (header_prefix(r->q.p + r->qpos, held))
      return fail(r, MPUC_ERR_TRUNCATED, "truncated: the stream ends inside its header (%llu bytes)", at);
    {
      const char *what = mpuc_sniff(r->q.p + r->qpos, held);
      return fail(r, MPUC_ERR_NOT_MPUC, "not an .mpuc stream: the input looks like %s",
                  what ? what : "a fragment of an .mpuc stream");
    }
  case R_BETWEEN:
    if (held >= MPUC_FRAME_HDR + 1 && r->q.p[r->qpos + 8] == REC_TRAILER)
      return fail(r, MPUC_ERR_TRUNCATED, "truncated: the stream ends inside its trailer (at byte %llu)", at);
    return fail(r, MPUC_ERR_TRUNCATED,
                "truncated: the stream ends after %llu entries, before its trailer (at byte %llu; did the stage before it fail?)",
                (unsigned long long)r->n_entries, at);
  default:
    return fail(r, MPUC_ERR_TRUNCATED, "truncated: the stream ends inside %s, after %u of its %u chunks (at byte %llu)",
                r->label, r->cur.chunks, r->chunks_expected, at);
  }
}

const char *mpuc_reader_header_json(const mpuc_reader *r, size_t *len) {
  if (len) *len = r->header_len;
  return r->header_json;
}
const char *mpuc_reader_stream_id(const mpuc_reader *r) { return r->stream_id; }
const char *mpuc_reader_header_digest(const mpuc_reader *r) { return r->header_digest; }
unsigned mpuc_reader_format_minor(const mpuc_reader *r) { return r->minor; }
uint32_t mpuc_reader_copies(const mpuc_reader *r) { return r->L.copies; }
const mpuc_entry *mpuc_reader_entry(const mpuc_reader *r) { return &r->cur; }
const char *mpuc_reader_trailer_json(const mpuc_reader *r, size_t *len) {
  if (len) *len = r->trailer_len;
  return r->trailer_json;
}
const char *mpuc_reader_content_digest(const mpuc_reader *r) { return r->content_digest; }
const char *mpuc_reader_stream_digest(const mpuc_reader *r) { return r->stream_digest; }
void mpuc_reader_set_tap(mpuc_reader *r, mpuc_tap_fn fn, void *ctx) {
  r->tap = fn;
  r->tap_ctx = ctx;
}
uint64_t mpuc_reader_offset(const mpuc_reader *r) { return r->offset; }
const char *mpuc_reader_message(const mpuc_reader *r) { return r->msg; }
