/*
 * chain.h -- the provenance graph among a set of streams (spec/mpuc.md 7):
 * which given file is which stream's parent, and whether each link holds.
 * `mpu verify --parents` and `--chain` check links with it, `mpu log` draws
 * the graph; one link check serves all three.
 *
 * A link from child C to parent P holds when C's header names P's stream id
 * and header digest, and C's trailer recorded (parents_verified) P's content
 * digest as C's writer read P to its end.  A parent named by a keyed
 * commitment (spec/protocol.md 3) can only be matched with the server key:
 * commit("model", ID:DIGEST of P) in the header, commit("model-content",
 * content digest of P) in the trailer.  Without the key it stays
 * "committed": nothing in it says which stream it is.
 */
#ifndef MPU_CHAIN_H
#define MPU_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "secret.h"
#include "sign.h"
#include "streamsig.h"

/* One stream, read and verified to its end. */
typedef struct {
  const char *path;
  int ok;                      /* read and verified; else err says why */
  mpu_err err;
  json_t *header, *trailer;    /* owned */
  /* stream_id is set once the header is read, the rest only when ok */
  char stream_id[33], header_digest[33], content_digest[33], stream_digest[33];
  int has_signed_digest;
  uint8_t signed_digest[32];   /* BLAKE2b-256 of the bytes before the trailer */
  streamsig_result sig;        /* its signatures, checked against the trust given */
} chain_stream;

/* Reads path (NULL or "-": standard input) to its verified end.  With trust
 * (may be NULL) also computes the signed digest and checks the signatures.
 * Returns the stream's status (0, or the err status, also kept in s). */
int chain_read(chain_stream *s, const char *path, const sign_trust *trust, int progress);
void chain_stream_free(chain_stream *s);

/* Why child does not descend from parent: NULL when the link holds.  key
 * (may be NULL) lets a commitment stand for the parent.  *committed is set
 * when the child names parents by commitment only and no key was given, so
 * the answer says "not a parent" without knowing. */
const char *chain_link_check(const chain_stream *child, const chain_stream *parent, const server_key *key,
                             int *committed);

/* One parent a child's header names, resolved among the given streams. */
enum {
  LINK_OK,        /* a given file, and the link holds */
  LINK_BROKEN,    /* a given file (by id or commitment), but the link does not hold */
  LINK_EXTERNAL,  /* a plain parent that is none of the given files */
  LINK_COMMITTED, /* a commitment, not checkable without the key (or matching no given file) */
};
typedef struct {
  size_t child;     /* index into the streams */
  size_t named;     /* index into the child's header "parents" */
  long parent;      /* index of the given file, or -1 */
  int state;        /* LINK_* */
  const char *why;  /* LINK_BROKEN: what is wrong */
} chain_link;

/* Every parent every (readable) stream names, resolved: *links is malloc'd,
 * its count returned. */
size_t chain_links(const chain_stream *s, size_t n, const server_key *key, chain_link **links);

/* What the links say about the set as a whole: NULL if it is one chain,
 * else why not, naming the files (into buf): a stream with some parents
 * given and others missing (a hole), or files no chain of parents joins
 * (through the files given, or through a parent outside them that they
 * share, as copies split from one stream share it). */
const char *chain_judge(const chain_stream *s, size_t n, const chain_link *links, size_t nlinks, char *buf,
                        size_t len);

#endif
