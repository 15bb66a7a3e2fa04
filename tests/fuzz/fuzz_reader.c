/*
 * fuzz_reader.c -- libFuzzer target for the .mpuc reader.
 *
 * The first input byte chooses how the rest is cut into input pieces and how
 * large the output buffer is, so the fuzzer explores the reader's buffering
 * paths (direct and FIFO, partial records, partial frames, delivery across
 * small outputs) as well as the bytes themselves.  Seeds: spec/vectors.
 *   make fuzz FUZZ_SECONDS=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mpuc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  data++;
  size--;
  size_t piece = mode & 0x0f ? (size_t)1 << (mode & 0x0f) : size + 1;
  size_t outsz = (mode & 0x30) == 0 ? 1 : (mode & 0x30) == 0x10 ? 100 : (mode & 0x30) == 0x20 ? 65536 : 0;
  uint8_t *obuf = outsz ? malloc(outsz) : NULL;
  mpuc_reader *r = mpuc_reader_create();
  size_t off = 0;
  mpuc_status st = MPUC_OK;
  while (!st) {
    size_t n = size - off < piece ? size - off : piece;
    mpuc_in in = {data + off, n, 0};
    for (;;) {
      mpuc_out o = {obuf, outsz, 0};
      mpuc_event ev;
      st = mpuc_reader_next(r, &in, obuf ? &o : NULL, &ev);
      if (st || ev == MPUC_EV_NEED_INPUT) break;
      if (ev == MPUC_EV_ENTRY) {
        const mpuc_entry *e = mpuc_reader_entry(r);
        if (e->name_len > MPUC_MAX_NAME) abort();
      }
      if (ev == MPUC_EV_HEADER) {
        size_t len;
        const char *h = mpuc_reader_header_json(r, &len);
        if (!h || strlen(h) != len) abort();
      }
    }
    off += n;
    if (off == size) break;
  }
  if (!st) st = mpuc_reader_finish(r);
  /* A successful read must leave a trailer and digests behind. */
  if (st == MPUC_OK && (!mpuc_reader_trailer_json(r, NULL) || strlen(mpuc_reader_content_digest(r)) != 32)) abort();
  mpuc_reader_free(r);
  free(obuf);
  return 0;
}
