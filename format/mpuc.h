/*
 * mpuc.h -- the .mpuc streamed container: the whole public interface of format/.
 *
 * An .mpuc stream is a sequence of zstd frames: metadata records live in zstd
 * skippable frames, tensor and blob bytes in ordinary zstd frames ("chunks").
 * spec/mpuc.md is normative; this header is the library's contract.
 *
 *   stream  := header  blob*  group*  trailer
 *   group   := entry{copies} | entry (one "shared" entry standing for every copy)
 *   entry   := begin-record  chunk-frame*  end-record
 *
 * The library never touches a file descriptor, never prints and never exits.
 * Work happens in context objects the caller owns; bytes move through
 * caller-owned buffers (mpuc_in / mpuc_out), in the manner of zstd's streaming
 * API, so the same code serves pipes, files and sockets.
 *
 * Writer:  mpuc_writer_begin(header JSON) -> { entry_begin, data..., entry_end }*
 *          -> mpuc_writer_end(trailer extras).  After every call, drain the
 *          output with mpuc_writer_flush() until it returns 0 bytes pending.
 * Reader:  feed bytes to mpuc_reader_next(); it returns events (HEADER, ENTRY,
 *          DATA, ENTRY_END, END).  Every checksum and hash is verified as the
 *          stream passes; an entry's bytes are trustworthy only once its
 *          ENTRY_END event has been returned.  At end of input call
 *          mpuc_reader_finish(): a stream without its trailer is "truncated".
 *
 * Errors are mpuc_status values; each context keeps a one-line message saying
 * what failed and where (mpuc_writer_message / mpuc_reader_message).
 */
#ifndef MPUC_H
#define MPUC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Format version this library writes; it reads every 1.x up to this minor. */
#define MPUC_FORMAT_MAJOR 1
#define MPUC_FORMAT_MINOR 0

/* ------------------------------------------------------------------ limits */
#define MPUC_MAX_NDIM 8
#define MPUC_MAX_NAME 4096                     /* bytes of UTF-8 */
#define MPUC_MAX_COPIES 1024
#define MPUC_MAX_ENTRIES (1u << 20)            /* per stream */
#define MPUC_MAX_RAW_SIZE (1ull << 48)         /* bytes per entry */
#define MPUC_MAX_HEADER_JSON (64u << 20)
#define MPUC_MAX_TRAILER_JSON (256u << 20)
#define MPUC_MIN_CHUNK (4u << 10)
#define MPUC_MAX_CHUNK (64u << 20)
#define MPUC_DEFAULT_CHUNK (4u << 20)
#define MPUC_COPY_SHARED 0xFFFFFFFFu           /* entry stands for every copy */

/* ------------------------------------------------------------------ status */
typedef enum {
  MPUC_OK = 0,
  /* The input failed verification (programs exit with status 1). */
  MPUC_ERR_NOT_MPUC,   /* not an .mpuc stream; the message says what it looks like */
  MPUC_ERR_TRUNCATED,  /* the stream ended before its trailer */
  MPUC_ERR_CORRUPT,    /* a malformed record or frame */
  MPUC_ERR_CHECKSUM,   /* a record checksum, frame checksum or hash mismatch */
  MPUC_ERR_LAYOUT,     /* records out of order, wrong copies, not as announced */
  MPUC_ERR_LIMIT,      /* a length or count beyond the format's limits */
  MPUC_ERR_VERSION,    /* a newer major version or an unknown critical feature */
  /* The caller or the machine failed (programs exit with status 2). */
  MPUC_ERR_USAGE,      /* an API call out of order or with bad arguments */
  MPUC_ERR_NOMEM,
  MPUC_ERR_INTERNAL,   /* the compressor failed */
} mpuc_status;

/* Short name of a status ("truncated", "checksum mismatch", ...). */
const char *mpuc_status_name(mpuc_status s);
/* 1 if the status means the input is bad (exit 1), 0 otherwise (exit 2). */
int mpuc_status_is_verification(mpuc_status s);

/* ------------------------------------------------------------------ dtypes */
/* Codes are never reused; names are safetensors' dtype names. */
typedef enum {
  MPUC_DT_INVALID = 0,
  MPUC_DT_BOOL = 1, MPUC_DT_U8 = 2, MPUC_DT_I8 = 3, MPUC_DT_I16 = 4,
  MPUC_DT_U16 = 5, MPUC_DT_F16 = 6, MPUC_DT_BF16 = 7, MPUC_DT_I32 = 8,
  MPUC_DT_U32 = 9, MPUC_DT_F32 = 10, MPUC_DT_F64 = 11, MPUC_DT_I64 = 12,
  MPUC_DT_U64 = 13, MPUC_DT_C64 = 14, MPUC_DT_F8_E5M2 = 15, MPUC_DT_F8_E4M3 = 16,
  MPUC_DT_F8_E8M0 = 17, MPUC_DT_F8_E4M3FNUZ = 18, MPUC_DT_F8_E5M2FNUZ = 19,
  MPUC_DT_F4 = 20, MPUC_DT_F6_E2M3 = 21, MPUC_DT_F6_E3M2 = 22,
  MPUC_DT_COUNT
} mpuc_dtype;

const char *mpuc_dtype_name(int dtype);       /* NULL if unknown */
int mpuc_dtype_from_name(const char *name);   /* MPUC_DT_INVALID if unknown */
unsigned mpuc_dtype_bits(int dtype);          /* bits per element; 0 if unknown */
/* Width of the byte-grouping filter for a dtype (2, 4, 8) or 1 (no grouping). */
unsigned mpuc_dtype_group_width(int dtype);
/* Raw byte size of a tensor; MPUC_ERR_LIMIT on overflow or a partial byte. */
mpuc_status mpuc_tensor_bytes(int dtype, unsigned ndim, const uint64_t *dims,
                              uint64_t *bytes);

/* ------------------------------------------------------------------ entries */
enum { MPUC_KIND_TENSOR = 0, MPUC_KIND_BLOB = 1 };
enum { MPUC_CODEC_STORE = 0, MPUC_CODEC_ZSTD = 1 };
enum { MPUC_FILTER_NONE = 0, MPUC_FILTER_BYTEGROUP = 1 };

typedef struct {
  const char *name;          /* UTF-8; not NUL-terminated in general: use name_len */
  size_t name_len;
  int kind;                  /* MPUC_KIND_* */
  int dtype;                 /* MPUC_DT_*; blobs are U8 with one dimension */
  unsigned ndim;
  uint64_t dims[MPUC_MAX_NDIM];
  uint32_t copy;             /* 0..copies-1, or MPUC_COPY_SHARED; blobs: 0 */
  uint64_t raw_size;         /* bytes of data */
  /* How the bytes are stored (chosen by the writer, reported by the reader). */
  int codec, filter;
  uint32_t chunk_size;
  /* Reported by the reader; valid after ENTRY (offset) or ENTRY_END (rest). */
  uint64_t offset;           /* stream offset of the entry's begin record */
  uint8_t xxh3[16];          /* XXH3-128 of the raw bytes, canonical (big-endian) */
  uint64_t stored_size;      /* bytes of its chunk frames */
  uint32_t chunks;
} mpuc_entry;

/* ------------------------------------------------------------------ buffers */
typedef struct { const void *src; size_t size; size_t pos; } mpuc_in;
typedef struct { void *dst; size_t size; size_t pos; } mpuc_out;

/* ------------------------------------------------------------------ writer */
typedef struct mpuc_writer mpuc_writer;

typedef enum {
  MPUC_W_LEVEL,        /* 0 = store (uncompressed frames), 1..19 zstd level; default 1 */
  MPUC_W_BYTEGROUP,    /* 1 = byte-group float data before zstd (default), 0 = off */
  MPUC_W_CHUNK_SIZE,   /* raw bytes per chunk frame; default MPUC_DEFAULT_CHUNK */
} mpuc_wparam;

mpuc_writer *mpuc_writer_create(void);
void mpuc_writer_free(mpuc_writer *w);
mpuc_status mpuc_writer_set(mpuc_writer *w, mpuc_wparam p, int64_t value);

/* Starts the stream.  header_json is a JSON object with at least "copies",
 * "tensors", "blobs", "parents" and "stage" (see spec/mpuc.md); the writer
 * derives "stream_id" when it is absent and writes the header canonically. */
mpuc_status mpuc_writer_begin(mpuc_writer *w, const char *header_json, size_t len);
/* The canonical header as written (valid after begin) and its stream id. */
const char *mpuc_writer_header_json(const mpuc_writer *w, size_t *len);
const char *mpuc_writer_stream_id(const mpuc_writer *w);
/* XXH3-128 of the header record, as a child names this stream (hex). */
const char *mpuc_writer_header_digest(const mpuc_writer *w);

/* Begins the next entry.  name, kind, dtype, ndim, dims, copy (and raw_size
 * for blobs) are read from e; the order must follow the header's listing. */
mpuc_status mpuc_writer_entry_begin(mpuc_writer *w, const mpuc_entry *e);
/* Consumes entry bytes from in.  It may stop before in is empty when output
 * is pending: flush, then call again. */
mpuc_status mpuc_writer_data(mpuc_writer *w, mpuc_in *in);
/* Ends the entry; it must have received exactly raw_size bytes. */
mpuc_status mpuc_writer_entry_end(mpuc_writer *w);
/* Ends the stream.  extra_json (may be NULL) is a JSON object whose members
 * join the trailer, e.g. "parents_verified"; reserved keys are refused. */
mpuc_status mpuc_writer_end(mpuc_writer *w, const char *extra_json, size_t len);
/* Content digest (hex) of the header and the entries ended so far: after
 * the last entry it is the stream's, before mpuc_writer_end writes it. */
const char *mpuc_writer_content_digest(const mpuc_writer *w);

/* Moves pending output into out.  Returns the number of bytes still pending
 * after the move (0 when drained). */
size_t mpuc_writer_flush(mpuc_writer *w, mpuc_out *out);
/* The same without a copy: a view of the pending output (valid until the
 * next call on w), and how much of it the caller has written out. */
size_t mpuc_writer_pending(const mpuc_writer *w, const void **p);
void mpuc_writer_consume(mpuc_writer *w, size_t n);
/* Stream bytes produced so far (flushed or pending). */
uint64_t mpuc_writer_offset(const mpuc_writer *w);
const char *mpuc_writer_message(const mpuc_writer *w);

/* ------------------------------------------------------------------ reader */
typedef struct mpuc_reader mpuc_reader;

typedef enum {
  MPUC_EV_NEED_INPUT,  /* every input byte is consumed; supply more (or finish) */
  MPUC_EV_HEADER,      /* the header is read and checked */
  MPUC_EV_ENTRY,       /* an entry begins: mpuc_reader_entry() */
  MPUC_EV_DATA,        /* bytes were written to out (out is full or the entry's data is done) */
  MPUC_EV_ENTRY_END,   /* the entry's hash is verified */
  MPUC_EV_END,         /* the trailer is read and every stream-level check passed */
} mpuc_event;

mpuc_reader *mpuc_reader_create(void);
void mpuc_reader_free(mpuc_reader *r);

/* Advances the reader.  Consumes from in; writes entry bytes to out (out may
 * be NULL or have a NULL dst to discard them: they are still verified).
 * On success returns MPUC_OK and sets *ev. */
mpuc_status mpuc_reader_next(mpuc_reader *r, mpuc_in *in, mpuc_out *out, mpuc_event *ev);
/* Zero-copy input: room in the reader's own buffer for the caller to read
 * into (at least 1 MiB; NULL if out of memory), then the number of bytes put
 * there.  Call mpuc_reader_next with in = NULL to process them. */
void *mpuc_reader_input_space(mpuc_reader *r, size_t *room);
void mpuc_reader_input_commit(mpuc_reader *r, size_t n);
/* Call at end of input: MPUC_OK if the stream ended cleanly, else truncated. */
mpuc_status mpuc_reader_finish(mpuc_reader *r);

/* Valid after the HEADER event. */
const char *mpuc_reader_header_json(const mpuc_reader *r, size_t *len);
const char *mpuc_reader_stream_id(const mpuc_reader *r);
const char *mpuc_reader_header_digest(const mpuc_reader *r);   /* hex */
unsigned mpuc_reader_format_minor(const mpuc_reader *r);
uint32_t mpuc_reader_copies(const mpuc_reader *r);
/* The current entry: valid from ENTRY until the next ENTRY or END. */
const mpuc_entry *mpuc_reader_entry(const mpuc_reader *r);
/* Valid after END. */
const char *mpuc_reader_trailer_json(const mpuc_reader *r, size_t *len);
const char *mpuc_reader_content_digest(const mpuc_reader *r);  /* hex */
const char *mpuc_reader_stream_digest(const mpuc_reader *r);   /* hex */
/* Stream bytes consumed so far. */
uint64_t mpuc_reader_offset(const mpuc_reader *r);
/* Hands every stream byte before the trailer frame -- the bytes the stream
 * digest covers -- to fn, in order, as the reader consumes them, so that a
 * caller can compute a digest of its own over them (a cryptographic one for
 * signatures, spec/mpuc.md 9.1).  Set it before the first input. */
typedef void (*mpuc_tap_fn)(void *ctx, const void *p, size_t n);
void mpuc_reader_set_tap(mpuc_reader *r, mpuc_tap_fn fn, void *ctx);
const char *mpuc_reader_message(const mpuc_reader *r);

/* ------------------------------------------------------------------ digests */
/* The content digest (spec/mpuc.md 7.1) of a stream known only by its parts:
 * its header digest, then each entry's name, kind, dtype, shape, copy,
 * raw_size and xxh3 in stream order.  For checking that a stream descends
 * from bytes one can regenerate, without writing them. */
typedef struct mpuc_digest mpuc_digest;
mpuc_digest *mpuc_digest_create(const char *header_digest_hex);
void mpuc_digest_add(mpuc_digest *d, const mpuc_entry *e);
/* Writes the hex digest and frees d. */
void mpuc_digest_final(mpuc_digest *d, char hex[33]);

/* ------------------------------------------------------------------ helpers */
/* What a buffer that should start an .mpuc stream looks like: NULL if it is
 * (or may be) an .mpuc stream, else a phrase such as "a safetensors file". */
const char *mpuc_sniff(const void *buf, size_t len);

/* JSON text the way the format writes it.  MPUC_JSON_CANONICAL: compact,
 * keys sorted by bytes, numbers in shortest round-trip form (spec/mpuc.md
 * "Canonical JSON").  MPUC_JSON_PRETTY: the same, indented by two spaces and
 * ending in a newline, as Hugging Face writes config.json.  The input is any
 * JSON text; returns a malloc'd NUL-terminated string or NULL on error. */
enum { MPUC_JSON_CANONICAL = 0, MPUC_JSON_PRETTY = 1 };
char *mpuc_json_format(const char *json, size_t len, int style, size_t *out_len);

/* Lowercase hex of 16 canonical digest bytes into a 33-byte buffer. */
void mpuc_hex128(const uint8_t d[16], char out[33]);

#ifdef __cplusplus
}
#endif
#endif /* MPUC_H */
