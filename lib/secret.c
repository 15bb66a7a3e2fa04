/*
 * secret.c -- key files, key derivation and commitments (see secret.h).
 */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

#define KEY_MAGIC "mpu-server-key-v1 "

int key_generate(const char *path, mpu_err *e) {
  if (sodium_init() < 0) return mpu_fail(e, MPU_EUSAGE, "libsodium failed to initialise");
  uint8_t k[SECRET_BYTES];
  randombytes_buf(k, sizeof k);
  char text[sizeof KEY_MAGIC + 2 * SECRET_BYTES + 2];
  char hex[2 * SECRET_BYTES + 1];
  sodium_bin2hex(hex, sizeof hex, k, sizeof k);
  snprintf(text, sizeof text, "%s%s\n", KEY_MAGIC, hex);
  sodium_memzero(k, sizeof k);
  sodium_memzero(hex, sizeof hex);
  int fd, rc = 0;
  if (!strcmp(path, "-")) {
    if (isatty(1)) rc = mpu_fail(e, MPU_EUSAGE, "refusing to write a secret key to a terminal; use -o FILE");
    fd = 1;
  } else {
    /* O_EXCL: a key is never replaced; 0600 before a byte is written. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
      rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", path,
                    errno == EEXIST ? "already exists; a key is never overwritten" : strerror(errno));
  }
  if (!rc && write_all(fd, text, strlen(text))) rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  if (fd > 1 && close(fd) && !rc) rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  if (rc && fd > 1) unlink(path);
  sodium_memzero(text, sizeof text);
  return rc;
}

int key_load(server_key *k, const char *path, char *warning, size_t wlen, mpu_err *e) {
  if (sodium_init() < 0) return mpu_fail(e, MPU_EUSAGE, "libsodium failed to initialise");
  if (warning && wlen) warning[0] = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return mpu_fail(e, MPU_EUSAGE, "key %s: %s", path, strerror(errno));
  struct stat st;
  if (!fstat(fd, &st) && (st.st_mode & 077) && warning)
    snprintf(warning, wlen, "key %s is readable by others (mode %03o); chmod 600 it", path, (unsigned)(st.st_mode & 0777));
  char text[256];
  long long n = read_full(fd, text, sizeof text - 1);
  close(fd);
  if (n < 0) return mpu_fail(e, MPU_EUSAGE, "key %s: %s", path, strerror(errno));
  text[n] = 0;
  size_t ml = strlen(KEY_MAGIC);
  size_t bin_len = 0;
  int ok = (size_t)n >= ml + 2 * SECRET_BYTES && !memcmp(text, KEY_MAGIC, ml) &&
           sodium_hex2bin(k->master, sizeof k->master, text + ml, 2 * SECRET_BYTES, NULL, &bin_len, NULL) == 0 &&
           bin_len == SECRET_BYTES;
  sodium_memzero(text, sizeof text);
  if (!ok) {
    key_wipe(k);
    return mpu_fail(e, MPU_EUSAGE, "%s is not an mpu server key (make one with 'mpu keygen -o FILE')", path);
  }
  return 0;
}

void key_wipe(server_key *k) { sodium_memzero(k, sizeof *k); }

/* BLAKE2b-256 keyed with key over the parts, each prefixed by its length so
 * no two different inputs share an encoding. */
static void keyed_hash(uint8_t out[32], const uint8_t key[32], const char *const *parts, const size_t *lens, int n) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, key, 32, 32);
  for (int i = 0; i < n; i++) {
    uint8_t len[8];
    for (int b = 0; b < 8; b++) len[b] = (uint8_t)((uint64_t)lens[i] >> (8 * b));
    crypto_generichash_update(&st, len, sizeof len);
    crypto_generichash_update(&st, (const uint8_t *)parts[i], lens[i]);
  }
  crypto_generichash_final(&st, out, 32);
}

void round_derive(round_secrets *r, const server_key *k, const char *model_stream_id, const char *model_header_digest,
                  uint64_t round) {
  char rnd[24];
  snprintf(rnd, sizeof rnd, "%llu", (unsigned long long)round);
  const char *parts[] = {"mpu/round/v1", model_stream_id, model_header_digest, rnd};
  size_t lens[] = {12, strlen(model_stream_id), strlen(model_header_digest), strlen(rnd)};
  keyed_hash(r->round_key, k->master, parts, lens, 4);
}

void round_wipe(round_secrets *r) { sodium_memzero(r, sizeof *r); }

void round_philox_key(const round_secrets *r, int purpose, uint32_t copy, uint32_t index, uint32_t key[2]) {
  static const char ctx[][8] = {{0}, {'m', 'p', 'u', 'n', 'o', 'i', 's', 'e'}, {'m', 'p', 'u', '-', 'r', 'o', 't', 'a'},
                                {'m', 'p', 'u', '-', 'p', 'e', 'r', 'm'}, {'m', 'p', 'u', '-', 'a', 'l', 'p', 'h'}};
  uint8_t sub[16];
  crypto_kdf_derive_from_key(sub, sizeof sub, (uint64_t)copy << 32 | index, ctx[purpose], r->round_key);
  key[0] = (uint32_t)sub[0] | (uint32_t)sub[1] << 8 | (uint32_t)sub[2] << 16 | (uint32_t)sub[3] << 24;
  key[1] = (uint32_t)sub[4] | (uint32_t)sub[5] << 8 | (uint32_t)sub[6] << 16 | (uint32_t)sub[7] << 24;
  sodium_memzero(sub, sizeof sub);
}

void key_commit(const server_key *k, const char *label, const char *value, char hex[65]) {
  uint8_t ck[32], out[32];
  crypto_kdf_derive_from_key(ck, sizeof ck, 0, "mpu-comm", k->master);
  const char *parts[] = {"mpu/commit/v1", label, value};
  size_t lens[] = {13, strlen(label), strlen(value)};
  keyed_hash(out, ck, parts, lens, 3);
  sodium_bin2hex(hex, 65, out, sizeof out);
  sodium_memzero(ck, sizeof ck);
}
