/*
 * mstream.h -- .mpuc streams over file descriptors: the loop between
 * read(2)/write(2) and format/'s push/pull contexts, written once for every
 * program.
 *
 * Reading:  ms_reader_open -> (header available) -> ms_next_entry ->
 *           ms_read / ms_read_entry -> ... -> ms_next_entry returns 0 at the
 *           trailer, which is verified, and nothing may follow it.
 * Writing:  ms_writer_open(header) -> ms_write_entry (or begin/data/end) ->
 *           ms_writer_close(trailer extras), which commits -o FILE.
 */
#ifndef MPU_MSTREAM_H
#define MPU_MSTREAM_H

#include <jansson.h>

#include "cli.h"
#include "mpuc.h"

/* Sees every byte read from the input, in order, as it is read (for a
 * digest or a copy made in the same pass); nonzero stops the reader. */
typedef int (*ms_tap)(void *ctx, const void *p, size_t n, mpu_err *e);

typedef struct {
  int fd;
  const char *name;          /* for messages */
  mpuc_reader *r;
  int eof, ended, in_entry, entry_done;
  json_t *header;            /* parsed header, owned */
  uint64_t entry_left;       /* bytes of the current entry not yet handed out */
  cli_progress progress;
  uint64_t total_raw, raw_done;
  ms_tap tap;
  void *tap_ctx;
  /* ms_reader_open_signed: BLAKE2b-256 of the bytes before the trailer */
  void *signed_hash;
  uint8_t signed_digest[32];
  int signed_done;
} ms_reader;

/* Opens path ("-"/NULL: stdin) and reads through the header. */
int ms_reader_open(ms_reader *m, const char *path, mpu_err *e);
/* The same on an already open descriptor. */
int ms_reader_open_fd(ms_reader *m, int fd, const char *name, mpu_err *e);
/* The same, handing every byte read to tap (NULL: none) as well. */
int ms_reader_open_fd_tap(ms_reader *m, int fd, const char *name, ms_tap tap, void *ctx, mpu_err *e);
/* The same as ms_reader_open, also computing the BLAKE2b-256 digest that
 * stream signatures cover (lib/streamsig.h). */
int ms_reader_open_signed(ms_reader *m, const char *path, mpu_err *e);
/* That digest (32 bytes), once the stream has been read to its verified
 * end; NULL before, or when the reader was not opened to compute it. */
const uint8_t *ms_signed_digest(ms_reader *m);
void ms_reader_close(ms_reader *m);
/* Shows progress on stderr (mode as cli_progress_start). */
void ms_reader_progress(ms_reader *m, int mode, const char *what);
/* Advances to the next entry: 1 with *entry set, 0 at a verified end of
 * stream.  Unread bytes of the previous entry are read and verified first. */
int ms_next_entry(ms_reader *m, const mpuc_entry **entry, mpu_err *e);
/* Reads up to n bytes of the current entry; *got = 0 when it is exhausted.
 * The bytes are verified only when the entry ends: a caller that must not act
 * on unverified data uses ms_read_entry or ms_entry_verify. */
int ms_read(ms_reader *m, void *dst, size_t n, size_t *got, mpu_err *e);
/* Reads the rest of the entry into dst (entry->raw_size bytes) and verifies it. */
int ms_read_entry(ms_reader *m, void *dst, mpu_err *e);
/* After the entry's bytes are read: waits for its end record and checks it. */
int ms_entry_verify(ms_reader *m, mpu_err *e);
const char *ms_trailer_json(ms_reader *m);
/* Reads the rest of the stream, verifying every entry, the trailer and that
 * nothing follows it: what `mpu verify` does to each stream. */
int ms_verify_rest(ms_reader *m, mpu_err *e);

typedef struct {
  cli_output out;
  mpuc_writer *w;
  /* with stream_options.sign: BLAKE2b-256 of the bytes written before the
   * trailer, which the trailer's signature covers (lib/streamsig.h) */
  const struct sign_secret *sign;
  void *signed_hash;
} ms_writer;

int ms_writer_open(ms_writer *m, const char *path, const stream_options *o, const char *header_json,
                   mpu_err *e);
int ms_write_begin(ms_writer *m, const mpuc_entry *entry, mpu_err *e);
int ms_write_data(ms_writer *m, const void *p, size_t n, mpu_err *e);
int ms_write_end(ms_writer *m, mpu_err *e);
/* An entry in one call. */
int ms_write_entry(ms_writer *m, const mpuc_entry *entry, const void *p, mpu_err *e);
/* Ends the stream (extra_json may be NULL), signs it if asked to, and
 * commits the output. */
int ms_writer_close(ms_writer *m, const char *extra_json, mpu_err *e);
/* Abandons the stream; -o FILE leaves nothing behind. */
void ms_writer_abort(ms_writer *m);

/* Entry name as a NUL-terminated string (static buffer per call site). */
const char *ms_entry_name(const mpuc_entry *entry, char *buf, size_t n);

#endif
