/*
 * sign.h -- Ed25519 signing keys and signatures (libsodium), for signed
 * streams (spec/mpuc.md, "Signatures") and anything else mpu signs.
 *
 * Key files are one text line each (spec/mpuc.md 9.1):
 *   secret:  "mpu-sign-secret-v1 <key id> <64 hex: the 32-byte Ed25519 seed>\n"  (mode 0600)
 *   public:  "mpu-sign-public-v1 <key id> <64 hex: the 32-byte public key>\n"
 * The key id is the first 16 hex digits of BLAKE2b-256 (unkeyed) of the
 * public key's 32 bytes: it names a key in messages and in trailers, but a
 * signature is only ever accepted after checking it under the full key.
 * A public key file may hold several keys, one per line ("cat *.pub" makes a
 * keyring); empty lines and lines starting with '#' are skipped.
 *
 * What is signed is always `context` NUL `message`: the context string (e.g.
 * "mpuc-stream-v1", "mpu-bundle-v1") keeps a signature made for one purpose
 * from being accepted for another.  The message is typically a 32-byte
 * cryptographic digest of what is signed (BLAKE2b-256 through libsodium's
 * crypto_generichash, or SHA-256).
 *
 * Errors are returned (lib/err.h): MPU_EUSAGE for unreadable or malformed
 * key files.  Nothing here prints or exits.
 */
#ifndef MPU_SIGN_H
#define MPU_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SIGN_PUBLIC_BYTES 32
#define SIGN_SEED_BYTES 32
#define SIGN_BYTES 64           /* an Ed25519 signature */
#define SIGN_KEY_ID_HEX 16      /* hex digits of a key id */

typedef struct {
  uint8_t pk[SIGN_PUBLIC_BYTES];
  char id[SIGN_KEY_ID_HEX + 1]; /* NUL-terminated */
} sign_public;

typedef struct sign_secret {
  uint8_t sk[64];               /* libsodium's secret key: seed then public key */
  sign_public pub;
} sign_secret;

/* A set of public keys one trusts (a keyring). */
typedef struct {
  sign_public *keys;
  size_t n;
} sign_trust;

/* The key id of a public key (16 hex digits and a NUL). */
void sign_key_id(const uint8_t pk[SIGN_PUBLIC_BYTES], char id[SIGN_KEY_ID_HEX + 1]);

/* Makes a new key pair: the secret key to path (mode 0600, created with
 * O_EXCL: never replacing a file) and the public key to path.pub (also never
 * replaced).  If either cannot be written, neither is left behind.  *pub (may
 * be NULL) receives the public key. */
int sign_keygen(const char *path, sign_public *pub, mpu_err *e);

/* Reads a secret key file (checks the stored key id against the key). */
int sign_secret_load(sign_secret *k, const char *path, mpu_err *e);
void sign_secret_wipe(sign_secret *k);

/* Adds every public key of a key file to t (a secret key file is refused:
 * trust is given with public keys only).  Duplicates are kept once. */
int sign_trust_add_file(sign_trust *t, const char *path, mpu_err *e);
/* The trusted key with this id, or NULL. */
const sign_public *sign_trust_find(const sign_trust *t, const char *key_id);
void sign_trust_free(sign_trust *t);

/* Signs context NUL msg. */
void sign_make(const sign_secret *k, const char *context, const void *msg, size_t len, uint8_t sig[SIGN_BYTES]);
/* 0 if sig is k's signature of context NUL msg, -1 if not. */
int sign_check(const sign_public *k, const char *context, const void *msg, size_t len, const uint8_t sig[SIGN_BYTES]);
/* The trusted key named key_id if its signature of context NUL msg is sig;
 * NULL when no trusted key has that id or the signature does not verify. */
const sign_public *sign_trust_check(const sign_trust *t, const char *key_id, const char *context, const void *msg,
                                    size_t len, const uint8_t sig[SIGN_BYTES]);

/* Lowercase hex of n bytes into out (2n+1 bytes); and back: 0 when s is
 * exactly 2n hex digits. */
void sign_hex(const uint8_t *p, size_t n, char *out);
int sign_unhex(const char *s, uint8_t *p, size_t n);

#endif
