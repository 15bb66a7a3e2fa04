/*
 * secret.h -- the server's key and everything derived from it (spec/protocol.md,
 * "Secrets").
 *
 * The key file holds 256 random bits.  From it, with libsodium's BLAKE2b-based
 * KDF, come a round key bound to the model's identity and the round, and from
 * that the Philox keys of each copy's noise (per tensor), rotations and
 * permutation (per layer), and the copy scalings alpha_k.  A separate key
 * makes the keyed commitments by which client-bound streams name the server's
 * model without revealing anything a client could test a guess against.
 */
#ifndef MPU_SECRET_H
#define MPU_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SECRET_BYTES 32

typedef struct {
  uint8_t master[SECRET_BYTES];
} server_key;

/* Writes a new key to path (0600, never replacing a file) or, when path is
 * "-", to standard output (never a terminal). */
int key_generate(const char *path, mpu_err *e);
/* Reads a key file; warns (through *warning) when others can read it. */
int key_load(server_key *k, const char *path, char *warning, size_t wlen, mpu_err *e);
void key_wipe(server_key *k);

/* The secrets of one round for one model. */
typedef struct {
  uint8_t round_key[SECRET_BYTES];
} round_secrets;

/* model_id: the stream id and header digest of the model perturbed (32 bytes
 * of hex each, as in its header), so a round's secrets belong to one model. */
void round_derive(round_secrets *r, const server_key *k, const char *model_stream_id, const char *model_header_digest,
                  uint64_t round);
void round_wipe(round_secrets *r);

enum { PURPOSE_NOISE = 1, PURPOSE_ROTATION = 2, PURPOSE_PERMUTATION = 3, PURPOSE_ALPHA = 4 };
/* A 64-bit Philox key for (purpose, copy, index): index is the tensor for
 * noise, the layer for rotations and permutations, 0 for alphas. */
void round_philox_key(const round_secrets *r, int purpose, uint32_t copy, uint32_t index, uint32_t key[2]);

/* Keyed commitment: 64 hex digits of BLAKE2b-256 under the commitment key
 * (derived from the master key alone, so it is stable across rounds). */
void key_commit(const server_key *k, const char *label, const char *value, char hex[65]);

#endif
