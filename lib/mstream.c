/*
 * mstream.c -- .mpuc streams over file descriptors.
 */
#include "mstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "streamsig.h"

/* ---------------------------------------------------------------- reading */
static int reader_error(ms_reader *m, mpuc_status st, mpu_err *e) {
  return mpu_fail(e, mpuc_status_is_verification(st) ? MPU_EVERIFY : MPU_EUSAGE, "%s: %s", m->name,
                  mpuc_reader_message(m->r));
}

/* Reads more of the stream straight into the reader's own buffer (no copy
 * through one of ours); sets eof at end of input.  A single read(2): waiting
 * for a full buffer would make this stage and the one writing the pipe take
 * turns instead of running side by side. */
static int fill(ms_reader *m, mpu_err *e) {
  size_t room;
  void *p = mpuc_reader_input_space(m->r, &room);
  if (!p) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  ssize_t n;
  do n = read(m->fd, p, room);
  while (n < 0 && errno == EINTR);
  if (n < 0) return mpu_fail(e, MPU_EUSAGE, "%s: read error: %s", m->name, strerror(errno));
  if (n == 0) m->eof = 1;
  if (n > 0 && m->tap && m->tap(m->tap_ctx, p, (size_t)n, e)) return e->status;
  mpuc_reader_input_commit(m->r, (size_t)n);
  return 0;
}

/* Runs the reader until it returns an event other than NEED_INPUT (with out
 * as its output buffer).  At end of input returns MPUC_EV_END only after
 * mpuc_reader_finish has accepted the stream. */
static int pump(ms_reader *m, mpuc_out *out, mpuc_event *ev, mpu_err *e) {
  size_t start = out ? out->pos : 0;
  for (;;) {
    mpuc_status st = mpuc_reader_next(m->r, NULL, out, ev);
    if (st) return reader_error(m, st, e);
    if (*ev == MPUC_EV_NEED_INPUT) {
      /* Hand over what this call produced; if it produced nothing, read on
       * (returning would have the caller call again with nothing new). */
      if (out && out->dst && out->pos > start) return 0;
      if (m->eof) {
        if ((st = mpuc_reader_finish(m->r))) return reader_error(m, st, e);
        *ev = MPUC_EV_END;
        return 0;
      }
      if (fill(m, e)) return e->status;
      continue;
    }
    if (*ev == MPUC_EV_END) {
      /* Nothing may follow the trailer: read to the end and let the reader judge. */
      while (!m->eof) {
        if (fill(m, e)) return e->status;
        if ((st = mpuc_reader_next(m->r, NULL, NULL, ev))) return reader_error(m, st, e);
      }
      if ((st = mpuc_reader_finish(m->r))) return reader_error(m, st, e);
      *ev = MPUC_EV_END;
    }
    return 0;
  }
}

int ms_reader_open_fd(ms_reader *m, int fd, const char *name, mpu_err *e) {
  return ms_reader_open_fd_tap(m, fd, name, NULL, NULL, e);
}

static void signed_hash_update(void *ctx, const void *p, size_t n) { crypto_generichash_update(ctx, p, n); }

/* libsodium's hash state wants 64-byte alignment, more than malloc's. */
static void *signed_hash_new(void) {
  size_t n = (sizeof(crypto_generichash_state) + 63) / 64 * 64;
  return aligned_alloc(64, n);
}

static int open_fd(ms_reader *m, int fd, const char *name, ms_tap tap, void *ctx, int signed_digest, mpu_err *e) {
  memset(m, 0, sizeof *m);
  m->fd = fd;
  m->name = name;
  m->tap = tap;
  m->tap_ctx = ctx;
  m->r = mpuc_reader_create();
  if (!m->r) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  if (signed_digest) {
    /* only on request: BLAKE2b runs at a fraction of the reader's speed */
    m->signed_hash = signed_hash_new();
    if (!m->signed_hash || sodium_init() < 0) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    crypto_generichash_init(m->signed_hash, NULL, 0, STREAMSIG_DIGEST_BYTES);
    mpuc_reader_set_tap(m->r, signed_hash_update, m->signed_hash);
  }
  mpuc_event ev;
  if (pump(m, NULL, &ev, e)) return e->status;
  if (ev != MPUC_EV_HEADER) return mpu_fail(e, MPU_EVERIFY, "%s: no header", name);
  size_t len;
  const char *h = mpuc_reader_header_json(m->r, &len);
  m->header = json_loadb(h, len, 0, NULL);
  if (!m->header) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  /* Announced bytes, for progress. */
  json_t *t;
  size_t i;
  uint32_t copies = mpuc_reader_copies(m->r);
  json_array_foreach(json_object_get(m->header, "tensors"), i, t) {
    uint64_t dims[MPUC_MAX_NDIM], bytes;
    json_t *shape = json_object_get(t, "shape");
    unsigned nd = (unsigned)json_array_size(shape);
    for (unsigned d = 0; d < nd && d < MPUC_MAX_NDIM; d++) dims[d] = (uint64_t)json_integer_value(json_array_get(shape, d));
    if (!mpuc_tensor_bytes(mpuc_dtype_from_name(json_string_value(json_object_get(t, "dtype"))), nd, dims, &bytes))
      m->total_raw += bytes * (json_is_true(json_object_get(t, "shared")) ? 1 : copies);
  }
  return 0;
}

int ms_reader_open_fd_tap(ms_reader *m, int fd, const char *name, ms_tap tap, void *ctx, mpu_err *e) {
  return open_fd(m, fd, name, tap, ctx, 0, e);
}

int ms_reader_open_signed(ms_reader *m, const char *path, mpu_err *e) {
  int fd;
  memset(m, 0, sizeof *m);
  m->fd = -1;
  if (cli_open_input(path, &fd, e)) return e->status;
  return open_fd(m, fd, cli_input_name(path), NULL, NULL, 1, e);
}

const uint8_t *ms_signed_digest(ms_reader *m) {
  if (!m->signed_hash || !m->ended) return NULL;
  if (!m->signed_done) {
    crypto_generichash_final(m->signed_hash, m->signed_digest, sizeof m->signed_digest);
    m->signed_done = 1;
  }
  return m->signed_digest;
}

int ms_reader_open(ms_reader *m, const char *path, mpu_err *e) {
  int fd;
  memset(m, 0, sizeof *m);
  m->fd = -1;
  if (cli_open_input(path, &fd, e)) return e->status;
  return ms_reader_open_fd(m, fd, cli_input_name(path), e);
}

void ms_reader_progress(ms_reader *m, int mode, const char *what) {
  cli_progress_start(&m->progress, mode, what, m->total_raw);
}

void ms_reader_close(ms_reader *m) {
  cli_progress_end(&m->progress);
  if (m->fd > 0) close(m->fd);
  mpuc_reader_free(m->r);
  if (m->header) json_decref(m->header);
  free(m->signed_hash);
  memset(m, 0, sizeof *m);
  m->fd = -1;
}

int ms_entry_verify(ms_reader *m, mpu_err *e) {
  if (!m->in_entry || m->entry_done) return 0;
  uint8_t sink[1 << 16];
  for (;;) {
    mpuc_out out = {sink, sizeof sink, 0};
    mpuc_event ev;
    if (pump(m, m->entry_left ? &out : NULL, &ev, e)) return e->status;
    m->entry_left -= out.pos;
    if (ev == MPUC_EV_ENTRY_END) break;
    if (ev == MPUC_EV_END)
      return mpu_fail(e, MPU_EVERIFY, "%s: stream ended inside an entry", m->name);
  }
  m->entry_done = 1;
  m->raw_done += mpuc_reader_entry(m->r)->raw_size;
  cli_progress_update(&m->progress, m->raw_done);
  return 0;
}

int ms_next_entry(ms_reader *m, const mpuc_entry **entry, mpu_err *e) {
  if (m->ended) return 0;
  if (m->in_entry && !m->entry_done && ms_entry_verify(m, e)) return -1;
  mpuc_event ev;
  if (pump(m, NULL, &ev, e)) return -1;
  if (ev == MPUC_EV_END) {
    m->ended = 1;
    m->in_entry = 0;
    return 0;
  }
  if (ev != MPUC_EV_ENTRY) {
    mpu_fail(e, MPU_EVERIFY, "%s: unexpected reader event %d", m->name, (int)ev);
    return -1;
  }
  m->in_entry = 1;
  m->entry_done = 0;
  *entry = mpuc_reader_entry(m->r);
  m->entry_left = (*entry)->raw_size;
  return 1;
}

int ms_read(ms_reader *m, void *dst, size_t n, size_t *got, mpu_err *e) {
  *got = 0;
  if (!m->in_entry || m->entry_done || !m->entry_left) return 0;
  if (n > m->entry_left) n = (size_t)m->entry_left;
  mpuc_out out = {dst, n, 0};
  while (out.pos < out.size) {
    mpuc_event ev;
    if (pump(m, &out, &ev, e)) return e->status;
    if (ev == MPUC_EV_ENTRY_END) {
      m->entry_done = 1;
      m->raw_done += mpuc_reader_entry(m->r)->raw_size;
      cli_progress_update(&m->progress, m->raw_done);
      break;
    }
    if (ev == MPUC_EV_END) return mpu_fail(e, MPU_EVERIFY, "%s: stream ended inside an entry", m->name);
  }
  m->entry_left -= out.pos;
  *got = out.pos;
  return 0;
}

int ms_read_entry(ms_reader *m, void *dst, mpu_err *e) {
  uint8_t *p = dst;
  while (m->entry_left) {
    size_t got;
    if (ms_read(m, p, (size_t)m->entry_left, &got, e)) return e->status;
    if (!got) break;
    p += got;
  }
  return ms_entry_verify(m, e);
}

const char *ms_trailer_json(ms_reader *m) { return mpuc_reader_trailer_json(m->r, NULL); }

int ms_verify_rest(ms_reader *m, mpu_err *e) {
  const mpuc_entry *en;
  int more;
  while ((more = ms_next_entry(m, &en, e)) == 1)
    if (ms_entry_verify(m, e)) return e->status;
  return more < 0 ? e->status : 0;
}

const char *ms_entry_name(const mpuc_entry *entry, char *buf, size_t n) {
  size_t k = entry->name_len < n - 1 ? entry->name_len : n - 1;
  memcpy(buf, entry->name, k);
  buf[k] = 0;
  return buf;
}

/* ---------------------------------------------------------------- writing */
static int writer_error(ms_writer *m, mpuc_status st, mpu_err *e) {
  return mpu_fail(e, MPU_EUSAGE, "writing the stream: %s (%s)", mpuc_writer_message(m->w), mpuc_status_name(st));
}

static int drain(ms_writer *m, mpu_err *e) {
  const void *p;
  size_t n = mpuc_writer_pending(m->w, &p);
  if (n && cli_output_write(&m->out, p, n, e)) return e->status;
  if (n && m->signed_hash) crypto_generichash_update(m->signed_hash, p, n);
  mpuc_writer_consume(m->w, n);
  return 0;
}

int ms_writer_open(ms_writer *m, const char *path, const stream_options *o, const char *header_json, mpu_err *e) {
  memset(m, 0, sizeof *m);
  m->out.fd = -1;
  m->w = mpuc_writer_create();
  if (!m->w) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  mpuc_status st = mpuc_writer_set(m->w, MPUC_W_LEVEL, o->level);
  if (!st) st = mpuc_writer_set(m->w, MPUC_W_BYTEGROUP, o->bytegroup);
  if (!st) st = mpuc_writer_set(m->w, MPUC_W_CHUNK_SIZE, o->chunk);
  if (st) return writer_error(m, st, e);
  st = mpuc_writer_begin(m->w, header_json, strlen(header_json));
  if (st) return writer_error(m, st, e);
  if (o->sign) {
    m->sign = o->sign;
    m->signed_hash = signed_hash_new();
    if (!m->signed_hash || sodium_init() < 0) return mpu_fail(e, MPU_EUSAGE, "out of memory");
    crypto_generichash_init(m->signed_hash, NULL, 0, STREAMSIG_DIGEST_BYTES);
  }
  if (o->volume && path && strcmp(path, "-") ? cli_output_open_volumes(&m->out, path, o->volume, o->force, e)
                                             : cli_output_open(&m->out, path, o->force, e))
    return e->status;
  return drain(m, e);
}

int ms_write_begin(ms_writer *m, const mpuc_entry *entry, mpu_err *e) {
  mpuc_status st = mpuc_writer_entry_begin(m->w, entry);
  if (st) return writer_error(m, st, e);
  return drain(m, e);
}

int ms_write_data(ms_writer *m, const void *p, size_t n, mpu_err *e) {
  mpuc_in in = {p, n, 0};
  while (in.pos < in.size) {
    mpuc_status st = mpuc_writer_data(m->w, &in);
    if (st) return writer_error(m, st, e);
    if (drain(m, e)) return e->status;
  }
  return 0;
}

int ms_write_end(ms_writer *m, mpu_err *e) {
  mpuc_status st = mpuc_writer_entry_end(m->w);
  if (st) return writer_error(m, st, e);
  return drain(m, e);
}

int ms_write_entry(ms_writer *m, const mpuc_entry *entry, const void *p, mpu_err *e) {
  if (ms_write_begin(m, entry, e)) return e->status;
  uint64_t size = entry->kind == MPUC_KIND_BLOB ? entry->raw_size : 0;
  if (entry->kind != MPUC_KIND_BLOB && mpuc_tensor_bytes(entry->dtype, entry->ndim, entry->dims, &size))
    return mpu_fail(e, MPU_EUSAGE, "bad tensor shape");
  if (ms_write_data(m, p, (size_t)size, e)) return e->status;
  return ms_write_end(m, e);
}

/* The trailer extras with this stream's signature: every byte before the
 * trailer has been drained (each call above drains), so the hash is over
 * exactly the bytes a reader's stream digest covers. */
static char *signed_extras(ms_writer *m, const char *extra_json, mpu_err *e) {
  uint8_t d[STREAMSIG_DIGEST_BYTES];
  crypto_generichash_final(m->signed_hash, d, sizeof d);
  free(m->signed_hash);
  m->signed_hash = NULL;
  return streamsig_sign(m->sign, d, mpuc_writer_content_digest(m->w), extra_json, e);
}

int ms_writer_close(ms_writer *m, const char *extra_json, mpu_err *e) {
  char *signed_json = NULL;
  if (m->signed_hash && !(extra_json = signed_json = signed_extras(m, extra_json, e))) return e->status;
  mpuc_status st = mpuc_writer_end(m->w, extra_json, extra_json ? strlen(extra_json) : 0);
  free(signed_json);
  if (st) return writer_error(m, st, e);
  if (drain(m, e)) return e->status;
  int rc = cli_output_commit(&m->out, e);
  mpuc_writer_free(m->w);
  m->w = NULL;
  return rc;
}

void ms_writer_abort(ms_writer *m) {
  cli_output_abort(&m->out);
  mpuc_writer_free(m->w);
  m->w = NULL;
  free(m->signed_hash);
  m->signed_hash = NULL;
}
