/*
 * streamsig.h -- signatures of .mpuc streams: the trailer's "signatures"
 * member (spec/mpuc.md 9.1), made by a writer with --sign-key and checked by
 * `mpu verify --trust` and `mpu log`.
 *
 * A signature covers, under the context "mpuc-stream-v1" (lib/sign.h):
 *   D  BLAKE2b-256 of every stream byte before the trailer frame (the bytes
 *      the XXH3 stream digest covers),
 *   C  the content digest (16 bytes),
 *   E  BLAKE2b-256 of the canonical JSON of the trailer's other members
 *      (all but counts, content_digest, stream_digest, index, signatures),
 * so the header, every entry and what the writer recorded about its parents
 * (parents_verified) are all signed.
 */
#ifndef MPU_STREAMSIG_H
#define MPU_STREAMSIG_H

#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "sign.h"

#define STREAMSIG_CONTEXT "mpuc-stream-v1"
#define STREAMSIG_DIGEST_BYTES 32

/* The trailer extras (extra_json, may be NULL) with a signature by k added
 * to "signatures": malloc'd JSON text, or NULL with *e set.  bytes_digest is
 * D, content_hex the stream's content digest in hex. */
char *streamsig_sign(const sign_secret *k, const uint8_t bytes_digest[STREAMSIG_DIGEST_BYTES], const char *content_hex,
                     const char *extra_json, mpu_err *e);

/* What a stream's signatures say, checked against trusted keys. */
typedef struct {
  int count;    /* signatures in the trailer */
  int trusted;  /* made by a trusted key and valid */
  int invalid;  /* naming a trusted key but not valid, or malformed */
  /* one object per signature: {"key_id", "alg", "status"} with status
   * "trusted", "invalid: <why>" or "unknown key" (or "not checked" without
   * trusted keys); owned by the caller (json_decref) */
  json_t *report;
} streamsig_result;

/* Checks the signatures of a stream read to its end: trailer is its trailer
 * JSON, bytes_digest D as the reader computed it (NULL: not computed, every
 * signature is "not checked"), content_hex its content digest.  trust may be
 * NULL.  Never fails: what is wrong is in the result. */
void streamsig_check(json_t *trailer, const uint8_t *bytes_digest, const char *content_hex, const sign_trust *trust,
                     streamsig_result *out);

#endif
