/*
 * writer.c -- produces an .mpuc stream front to back.
 *
 * The header goes out first, then each entry as it arrives, chunk by chunk;
 * nothing is ever back-patched, so the writer can feed a pipe while its
 * producer is still reading its own input.  Everything the reader will check
 * (record checksums, frame checksums, entry hashes, content digest, index,
 * stream digest) is computed here in the same pass.
 */
#include <stdlib.h>

#include <xxhash.h>
#include <zstd.h>

#include "internal.h"

enum { W_NEW, W_READY, W_ENTRY, W_ENDED, W_FAILED };

struct mpuc_writer {
  int state;
  int level, bytegroup;
  uint32_t chunk_size;
  layout L;
  char *header_json;
  size_t header_len;
  char stream_id[33], header_digest[33], content_digest[33];
  /* pending output: bytes [out_pos, out.len) of out */
  mbuf out;
  size_t out_pos;
  uint64_t offset;                /* stream bytes produced */
  XXH3_state_t *stream_hash, *content_hash, *entry_hash;
  /* the entry being written */
  mpuc_entry cur;
  char *cur_name;
  uint64_t cur_in;                /* raw bytes received */
  uint8_t *chunk, *grouped;       /* chunk_size bytes each */
  size_t chunk_fill;
  /* store codec: frames are written straight from the input */
  int in_frame;
  size_t frame_left, block_left;
  XXH64_state_t *frame_hash;
  ZSTD_CCtx *cctx;
  /* trailer material */
  json_t *index;
  uint64_t n_entries, n_tensors, n_blobs, n_chunks, raw_bytes, stored_bytes;
  char msg[MPUC_MSG_LEN];
};

/* Keeps content_digest current after every entry, so that it is the
 * stream's own once the last entry has ended -- before the trailer, where a
 * signer needs it (spec/mpuc.md 9.1). */
static void content_digest_now(mpuc_writer *w) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(w->content_hash));
  mpuc_hex128(c.digest, w->content_digest);
}

mpuc_writer *mpuc_writer_create(void) {
  mpuc_writer *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->level = 1;
  w->bytegroup = 1;
  w->chunk_size = MPUC_DEFAULT_CHUNK;
  w->stream_hash = XXH3_createState();
  w->content_hash = XXH3_createState();
  w->entry_hash = XXH3_createState();
  w->frame_hash = XXH64_createState();
  w->index = json_array();
  if (!w->stream_hash || !w->content_hash || !w->entry_hash || !w->frame_hash || !w->index) {
    mpuc_writer_free(w);
    return NULL;
  }
  XXH3_128bits_reset(w->stream_hash);
  return w;
}

void mpuc_writer_free(mpuc_writer *w) {
  if (!w) return;
  layout_free(&w->L);
  free(w->header_json);
  mbuf_free(&w->out);
  XXH3_freeState(w->stream_hash);
  XXH3_freeState(w->content_hash);
  XXH3_freeState(w->entry_hash);
  XXH64_freeState(w->frame_hash);
  free(w->cur_name);
  free(w->chunk);
  free(w->grouped);
  ZSTD_freeCCtx(w->cctx);
  json_decref(w->index);
  free(w);
}

static mpuc_status fail(mpuc_writer *w, mpuc_status st) {
  w->state = W_FAILED;
  return st;
}

static mpuc_status nomem(mpuc_writer *w) {
  msg_set(w->msg, "out of memory");
  return fail(w, MPUC_ERR_NOMEM);
}

mpuc_status mpuc_writer_set(mpuc_writer *w, mpuc_wparam p, int64_t v) {
  if (w->state != W_NEW) {
    msg_set(w->msg, "parameters must be set before mpuc_writer_begin");
    return MPUC_ERR_USAGE;
  }
  switch (p) {
  case MPUC_W_LEVEL:
    if (v < 0 || v > ZSTD_maxCLevel()) break;
    w->level = (int)v;
    return MPUC_OK;
  case MPUC_W_BYTEGROUP:
    w->bytegroup = v != 0;
    return MPUC_OK;
  case MPUC_W_CHUNK_SIZE:
    if (v < MPUC_MIN_CHUNK || v > MPUC_MAX_CHUNK || v % 64) break;
    w->chunk_size = (uint32_t)v;
    return MPUC_OK;
  }
  msg_set(w->msg, "writer parameter %d: value %lld out of range", (int)p, (long long)v);
  return MPUC_ERR_USAGE;
}

/* Appends finished stream bytes to the pending output, hashing them. */
static int emit_hashed(mpuc_writer *w, size_t start) {
  XXH3_128bits_update(w->stream_hash, w->out.p + start, w->out.len - start);
  w->offset += w->out.len - start;
  return 0;
}

/* Appends stream bytes that are not yet in the pending output. */
static mpuc_status out_append(mpuc_writer *w, const void *src, size_t n) {
  if (mbuf_append(&w->out, src, n)) {
    msg_set(w->msg, "out of memory");
    w->state = W_FAILED;
    return MPUC_ERR_NOMEM;
  }
  XXH3_128bits_update(w->stream_hash, src, n);
  w->offset += n;
  w->cur.stored_size += n;
  return MPUC_OK;
}

static void compact_output(mpuc_writer *w) {
  if (w->out_pos == w->out.len) w->out_pos = w->out.len = 0;
}

mpuc_status mpuc_writer_begin(mpuc_writer *w, const char *json, size_t len) {
  if (w->state != W_NEW) {
    msg_set(w->msg, "mpuc_writer_begin called twice");
    return MPUC_ERR_USAGE;
  }
  json_error_t jerr;
  json_t *h = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!h) {
    msg_set(w->msg, "header JSON: %s (line %d)", jerr.text, jerr.line);
    return fail(w, MPUC_ERR_USAGE);
  }
  if (json_is_object(h) && !json_object_get(h, "stream_id")) {
    /* A stream is named by what its header says: the same stage with the same
     * parameters on the same parents gets the same id, so reruns reproduce. */
    size_t n;
    char *canon = json_format_value(h, MPUC_JSON_CANONICAL, &n);
    if (!canon) {
      json_decref(h);
      return nomem(w);
    }
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(canon, n));
    free(canon);
    char hex[33];
    mpuc_hex128(c.digest, hex);
    json_object_set_new(h, "stream_id", json_string(hex));
  }
  char lmsg[MPUC_MSG_LEN];
  mpuc_status st = layout_init(&w->L, h, lmsg); /* owns h from here on */
  if (st) {
    msg_set(w->msg, "%s", lmsg);
    return fail(w, MPUC_ERR_USAGE);
  }
  w->header_json = json_format_value(h, MPUC_JSON_CANONICAL, &w->header_len);
  if (!w->header_json) return nomem(w);
  if (w->header_len > MPUC_MAX_HEADER_JSON) {
    msg_set(w->msg, "header JSON is %zu bytes (limit %u)", w->header_len, MPUC_MAX_HEADER_JSON);
    return fail(w, MPUC_ERR_LIMIT);
  }
  snprintf(w->stream_id, sizeof w->stream_id, "%s", json_string_value(json_object_get(h, "stream_id")));

  size_t plen = HDR_JSON + w->header_len;
  uint8_t *payload = malloc(plen);
  if (!payload) return nomem(w);
  memcpy(payload, MPUC_SIGNATURE, MPUC_SIG_LEN);
  put_u16(payload + HDR_MAJOR, MPUC_FORMAT_MAJOR);
  put_u16(payload + HDR_MINOR, MPUC_FORMAT_MINOR);
  put_u32(payload + HDR_JLEN, (uint32_t)w->header_len);
  memcpy(payload + HDR_JSON, w->header_json, w->header_len);
  size_t start = w->out.len;
  int rc = record_emit(&w->out, payload, plen);
  free(payload);
  if (rc) return nomem(w);
  /* The header digest covers the whole payload, check included. */
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(w->out.p + start + MPUC_FRAME_HDR,
                                            w->out.len - start - MPUC_FRAME_HDR));
  mpuc_hex128(c.digest, w->header_digest);
  XXH3_128bits_reset(w->content_hash);
  XXH3_128bits_update(w->content_hash, c.digest, 16);
  content_digest_now(w);
  emit_hashed(w, start);

  w->chunk = malloc(w->chunk_size);
  w->grouped = malloc(w->chunk_size);
  if (!w->chunk || !w->grouped) return nomem(w);
  if (w->level > 0) {
    w->cctx = ZSTD_createCCtx();
    if (!w->cctx) return nomem(w);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, w->level);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_dictIDFlag, 0);
  }
  w->state = W_READY;
  return MPUC_OK;
}

const char *mpuc_writer_header_json(const mpuc_writer *w, size_t *len) {
  if (len) *len = w->header_len;
  return w->header_json;
}
const char *mpuc_writer_stream_id(const mpuc_writer *w) { return w->stream_id; }
const char *mpuc_writer_header_digest(const mpuc_writer *w) { return w->header_digest; }
const char *mpuc_writer_content_digest(const mpuc_writer *w) { return w->content_digest; }
uint64_t mpuc_writer_offset(const mpuc_writer *w) { return w->offset; }
const char *mpuc_writer_message(const mpuc_writer *w) { return w->msg; }

mpuc_status mpuc_writer_entry_begin(mpuc_writer *w, const mpuc_entry *in) {
  if (w->state != W_READY) {
    msg_set(w->msg, w->state == W_ENTRY ? "entry_begin inside an entry" : "entry_begin out of order");
    return MPUC_ERR_USAGE;
  }
  mpuc_entry e = *in;
  if (e.kind == MPUC_KIND_BLOB) {
    e.dtype = MPUC_DT_U8;
    e.ndim = 1;
    e.dims[0] = e.raw_size;
    e.copy = 0;
  } else if (mpuc_tensor_bytes(e.dtype, e.ndim, e.dims, &e.raw_size) != MPUC_OK) {
    msg_set(w->msg, "tensor '%.*s': bad dtype or shape", (int)e.name_len, e.name);
    return fail(w, MPUC_ERR_USAGE);
  }
  char lmsg[MPUC_MSG_LEN];
  if (layout_accept(&w->L, &e, lmsg)) {
    msg_set(w->msg, "%s", lmsg);
    return fail(w, MPUC_ERR_USAGE);
  }
  unsigned gw = mpuc_dtype_group_width(e.dtype);
  e.codec = w->level > 0 ? MPUC_CODEC_ZSTD : MPUC_CODEC_STORE;
  e.filter = w->level > 0 && w->bytegroup && e.kind == MPUC_KIND_TENSOR && gw > 1
                 ? MPUC_FILTER_BYTEGROUP : MPUC_FILTER_NONE;
  e.chunk_size = w->chunk_size;
  e.offset = w->offset;
  free(w->cur_name);
  w->cur_name = malloc(e.name_len + 1);
  if (!w->cur_name) return nomem(w);
  memcpy(w->cur_name, e.name, e.name_len);
  w->cur_name[e.name_len] = 0;
  e.name = w->cur_name;
  e.chunks = 0;
  e.stored_size = 0;
  w->cur = e;
  w->cur_in = 0;
  w->chunk_fill = 0;
  w->in_frame = 0;
  XXH3_128bits_reset(w->entry_hash);

  uint8_t rec[MAX_ENTRY_RECORD];
  size_t n = entry_encode(rec, &e);
  size_t start = w->out.len;
  if (record_emit(&w->out, rec, n)) return nomem(w);
  emit_hashed(w, start);
  w->state = W_ENTRY;
  return MPUC_OK;
}

/* Encodes the filled chunk as one zstd frame onto the pending output. */
static mpuc_status emit_chunk(mpuc_writer *w) {
  size_t n = w->chunk_fill;
  const uint8_t *src = w->chunk;
  size_t start = w->out.len;
  if (w->cur.codec == MPUC_CODEC_STORE) {
    if (mbuf_reserve(&w->out, store_frame_bound(n))) return nomem(w);
    w->out.len += store_frame_write(w->out.p + w->out.len, src, n);
  } else {
    if (w->cur.filter == MPUC_FILTER_BYTEGROUP) {
      bytegroup_encode(w->grouped, src, n, mpuc_dtype_group_width(w->cur.dtype));
      src = w->grouped;
    }
    size_t bound = ZSTD_compressBound(n);
    if (mbuf_reserve(&w->out, bound)) return nomem(w);
    size_t z = ZSTD_compress2(w->cctx, w->out.p + w->out.len, bound, src, n);
    if (ZSTD_isError(z)) {
      msg_set(w->msg, "zstd: %s", ZSTD_getErrorName(z));
      return fail(w, MPUC_ERR_INTERNAL);
    }
    w->out.len += z;
  }
  w->cur.stored_size += w->out.len - start;
  w->cur.chunks++;
  w->chunk_fill = 0;
  emit_hashed(w, start);
  return MPUC_OK;
}

/* The store codec: a raw-block zstd frame per chunk, written as the bytes
 * arrive (frame header, 3-byte block headers, XXH64 checksum at the end):
 * one copy from the caller's buffer into the output, none into a chunk. */
static mpuc_status store_data(mpuc_writer *w, mpuc_in *in) {
  while (in->pos < in->size) {
    if (w->out.len - w->out_pos >= (1u << 20)) return MPUC_OK; /* let the caller flush */
    uint8_t hdr[9];
    mpuc_status st;
    if (!w->in_frame) {
      uint64_t left = w->cur.raw_size - w->cur_in;
      w->frame_left = left < w->chunk_size ? (size_t)left : w->chunk_size;
      put_u32(hdr, MPUC_ZSTD_MAGIC);
      hdr[4] = 0xA4; /* 4-byte content size, single segment, checksum */
      put_u32(hdr + 5, (uint32_t)w->frame_left);
      if ((st = out_append(w, hdr, 9))) return st;
      XXH64_reset(w->frame_hash, 0);
      w->in_frame = 1;
      w->block_left = 0;
    }
    if (!w->block_left) {
      size_t b = w->frame_left < (128u << 10) ? w->frame_left : (128u << 10);
      uint32_t h = (uint32_t)(b == w->frame_left) | (uint32_t)b << 3; /* Raw_Block */
      hdr[0] = (uint8_t)h;
      hdr[1] = (uint8_t)(h >> 8);
      hdr[2] = (uint8_t)(h >> 16);
      if ((st = out_append(w, hdr, 3))) return st;
      w->block_left = b;
    }
    size_t take = in->size - in->pos < w->block_left ? in->size - in->pos : w->block_left;
    const uint8_t *src = (const uint8_t *)in->src + in->pos;
    if ((st = out_append(w, src, take))) return st;
    XXH64_update(w->frame_hash, src, take);
    XXH3_128bits_update(w->entry_hash, src, take);
    in->pos += take;
    w->cur_in += take;
    w->block_left -= take;
    w->frame_left -= take;
    if (!w->frame_left) {
      put_u32(hdr, (uint32_t)XXH64_digest(w->frame_hash));
      if ((st = out_append(w, hdr, 4))) return st;
      w->in_frame = 0;
      w->cur.chunks++;
    }
  }
  return MPUC_OK;
}

mpuc_status mpuc_writer_data(mpuc_writer *w, mpuc_in *in) {
  if (w->state != W_ENTRY) {
    msg_set(w->msg, "data outside an entry");
    return MPUC_ERR_USAGE;
  }
  compact_output(w);
  if (in->size - in->pos > w->cur.raw_size - w->cur_in) {
    msg_set(w->msg, "%s: more than its %llu bytes", w->cur_name, (unsigned long long)w->cur.raw_size);
    return fail(w, MPUC_ERR_USAGE);
  }
  if (w->cur.codec == MPUC_CODEC_STORE) return store_data(w, in);
  while (in->pos < in->size) {
    size_t avail = in->size - in->pos;
    /* Hold at most about one chunk of pending output: the caller flushes. */
    if (w->chunk_fill == w->chunk_size) {
      if (w->out.len - w->out_pos >= w->chunk_size) return MPUC_OK;
      mpuc_status st = emit_chunk(w);
      if (st) return st;
      continue;
    }
    size_t take = w->chunk_size - w->chunk_fill;
    if (take > avail) take = avail;
    const uint8_t *src = (const uint8_t *)in->src + in->pos;
    memcpy(w->chunk + w->chunk_fill, src, take);
    XXH3_128bits_update(w->entry_hash, src, take);
    w->chunk_fill += take;
    w->cur_in += take;
    in->pos += take;
  }
  return MPUC_OK;
}

mpuc_status mpuc_writer_entry_end(mpuc_writer *w) {
  if (w->state != W_ENTRY) {
    msg_set(w->msg, "entry_end outside an entry");
    return MPUC_ERR_USAGE;
  }
  if (w->cur_in != w->cur.raw_size) {
    msg_set(w->msg, "%s: got %llu of its %llu bytes", w->cur_name, (unsigned long long)w->cur_in,
            (unsigned long long)w->cur.raw_size);
    return fail(w, MPUC_ERR_USAGE);
  }
  if (w->chunk_fill) {
    mpuc_status st = emit_chunk(w);
    if (st) return st;
  }
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(w->entry_hash));
  memcpy(w->cur.xxh3, c.digest, 16);

  uint8_t rec[1 + ENTRY_END_BODY];
  rec[0] = REC_ENTRY_END;
  memcpy(rec + 1, c.digest, 16);
  put_u32(rec + 17, w->cur.chunks);
  put_u64(rec + 21, w->cur.stored_size);
  size_t start = w->out.len;
  if (record_emit(&w->out, rec, sizeof rec)) return nomem(w);
  emit_hashed(w, start);

  uint8_t desc[MAX_ENTRY_RECORD];
  XXH3_128bits_update(w->content_hash, desc, entry_descriptor(desc, &w->cur));
  XXH3_128bits_update(w->content_hash, c.digest, 16);
  content_digest_now(w);

  char hex[33];
  mpuc_hex128(c.digest, hex);
  json_t *item = json_pack("{s:s%, s:I, s:s, s:I, s:I, s:s}", "name", w->cur.name, w->cur.name_len,
                           "copy", (json_int_t)(w->cur.copy == MPUC_COPY_SHARED ? -1 : (json_int_t)w->cur.copy),
                           "kind", w->cur.kind == MPUC_KIND_BLOB ? "blob" : "tensor",
                           "offset", (json_int_t)w->cur.offset, "bytes", (json_int_t)w->cur.raw_size,
                           "xxh3_128", hex);
  if (!item || json_array_append_new(w->index, item)) return nomem(w);
  w->n_entries++;
  if (w->cur.kind == MPUC_KIND_BLOB) w->n_blobs++;
  else w->n_tensors++;
  w->n_chunks += w->cur.chunks;
  w->raw_bytes += w->cur.raw_size;
  w->stored_bytes += w->cur.stored_size;
  w->state = W_READY;
  return MPUC_OK;
}

static const char *const reserved_trailer_keys[] = {"counts", "content_digest", "stream_digest", "index"};

mpuc_status mpuc_writer_end(mpuc_writer *w, const char *extra, size_t extra_len) {
  if (w->state != W_READY) {
    msg_set(w->msg, w->state == W_ENTRY ? "stream ended inside an entry" : "mpuc_writer_end out of order");
    return fail(w, MPUC_ERR_USAGE);
  }
  char lmsg[MPUC_MSG_LEN];
  if (layout_complete(&w->L, lmsg)) {
    msg_set(w->msg, "%s", lmsg);
    return fail(w, MPUC_ERR_USAGE);
  }
  json_t *t;
  if (extra) {
    json_error_t jerr;
    t = json_loadb(extra, extra_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(t)) {
      json_decref(t);
      msg_set(w->msg, "trailer extras must be a JSON object");
      return fail(w, MPUC_ERR_USAGE);
    }
    for (size_t i = 0; i < sizeof reserved_trailer_keys / sizeof *reserved_trailer_keys; i++)
      if (json_object_get(t, reserved_trailer_keys[i])) {
        json_decref(t);
        msg_set(w->msg, "trailer extras may not set '%s'", reserved_trailer_keys[i]);
        return fail(w, MPUC_ERR_USAGE);
      }
  } else {
    t = json_object();
  }
  XXH128_canonical_t c;
  char content[33], stream[33];
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(w->content_hash));
  mpuc_hex128(c.digest, content);
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(w->stream_hash));
  mpuc_hex128(c.digest, stream);
  memcpy(w->content_digest, content, sizeof content);
  json_object_set_new(t, "counts", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}",
      "entries", (json_int_t)w->n_entries, "tensors", (json_int_t)w->n_tensors,
      "blobs", (json_int_t)w->n_blobs, "chunks", (json_int_t)w->n_chunks,
      "raw_bytes", (json_int_t)w->raw_bytes, "stored_bytes", (json_int_t)w->stored_bytes));
  json_object_set_new(t, "content_digest", json_pack("{s:s}", "xxh3_128", content));
  json_object_set_new(t, "stream_digest", json_pack("{s:s}", "xxh3_128", stream));
  json_object_set(t, "index", w->index);
  size_t jlen;
  char *j = json_format_value(t, MPUC_JSON_CANONICAL, &jlen);
  json_decref(t);
  if (!j) return nomem(w);
  if (jlen > MPUC_MAX_TRAILER_JSON) {
    free(j);
    msg_set(w->msg, "trailer JSON is %zu bytes (limit %u)", jlen, MPUC_MAX_TRAILER_JSON);
    return fail(w, MPUC_ERR_LIMIT);
  }
  size_t plen = 1 + 4 + jlen + TRAILER_TAIL;
  uint8_t *p = malloc(plen);
  if (!p) {
    free(j);
    return nomem(w);
  }
  p[0] = REC_TRAILER;
  put_u32(p + 1, (uint32_t)jlen);
  memcpy(p + 5, j, jlen);
  put_u64(p + 5 + jlen, w->offset);
  memcpy(p + 13 + jlen, MPUC_END_MAGIC, 8);
  free(j);
  size_t start = w->out.len;
  int rc = record_emit(&w->out, p, plen);
  free(p);
  if (rc) return nomem(w);
  w->offset += w->out.len - start; /* the trailer is not part of the stream digest */
  w->state = W_ENDED;
  return MPUC_OK;
}

size_t mpuc_writer_pending(const mpuc_writer *w, const void **p) {
  *p = w->out.p + w->out_pos;
  return w->out.len - w->out_pos;
}

void mpuc_writer_consume(mpuc_writer *w, size_t n) {
  size_t pending = w->out.len - w->out_pos;
  w->out_pos += n < pending ? n : pending;
  compact_output(w);
}

size_t mpuc_writer_flush(mpuc_writer *w, mpuc_out *out) {
  size_t pending = w->out.len - w->out_pos;
  size_t room = out->size - out->pos;
  size_t n = pending < room ? pending : room;
  if (n) {
    memcpy((uint8_t *)out->dst + out->pos, w->out.p + w->out_pos, n);
    out->pos += n;
    w->out_pos += n;
  }
  compact_output(w);
  return pending - n;
}
