/*
 * sign.c -- Ed25519 key files and signatures (see sign.h).
 */
#include "sign.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"

#define SECRET_MAGIC "mpu-sign-secret-v1"
#define PUBLIC_MAGIC "mpu-sign-public-v1"

static int sodium_ready(mpu_err *e) {
  return sodium_init() < 0 ? mpu_fail(e, MPU_EUSAGE, "libsodium failed to initialise") : 0;
}

void sign_hex(const uint8_t *p, size_t n, char *out) { sodium_bin2hex(out, 2 * n + 1, p, n); }

int sign_unhex(const char *s, uint8_t *p, size_t n) {
  size_t got = 0;
  const char *end;
  if (!s || strlen(s) != 2 * n) return -1;
  /* lowercase only: one spelling per value, as everywhere in the format */
  for (size_t i = 0; i < 2 * n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return -1;
  return sodium_hex2bin(p, n, s, 2 * n, NULL, &got, &end) == 0 && got == n ? 0 : -1;
}

void sign_key_id(const uint8_t pk[SIGN_PUBLIC_BYTES], char id[SIGN_KEY_ID_HEX + 1]) {
  uint8_t h[32];
  crypto_generichash(h, sizeof h, pk, SIGN_PUBLIC_BYTES, NULL, 0);
  sign_hex(h, SIGN_KEY_ID_HEX / 2, id);
}

/* One key line: MAGIC SP id SP 64-hex [LF].  Returns 0 and the 32 bytes. */
static int parse_line(const char *line, const char *magic, char id[SIGN_KEY_ID_HEX + 1], uint8_t key[32]) {
  size_t ml = strlen(magic);
  if (strncmp(line, magic, ml) || line[ml] != ' ') return -1;
  const char *p = line + ml + 1;
  if (strlen(p) < SIGN_KEY_ID_HEX + 1 + 64 || p[SIGN_KEY_ID_HEX] != ' ') return -1;
  memcpy(id, p, SIGN_KEY_ID_HEX);
  id[SIGN_KEY_ID_HEX] = 0;
  char hex[65];
  memcpy(hex, p + SIGN_KEY_ID_HEX + 1, 64);
  hex[64] = 0;
  const char *rest = p + SIGN_KEY_ID_HEX + 1 + 64;
  int ok = (!*rest || !strcmp(rest, "\n")) && sign_unhex(hex, key, 32) == 0;
  sodium_memzero(hex, sizeof hex);
  return ok ? 0 : -1;
}

/* Creates path with O_EXCL and the given mode and writes text to it. */
static int write_new(const char *path, const char *text, mode_t mode, mpu_err *e) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0)
    return mpu_fail(e, MPU_EUSAGE, "%s: %s", path,
                    errno == EEXIST ? "already exists; a key is never overwritten" : strerror(errno));
  int rc = 0;
  if (write_all(fd, text, strlen(text))) rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  if (close(fd) && !rc) rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  if (rc) unlink(path);
  return rc;
}

int sign_keygen(const char *path, sign_public *pub, mpu_err *e) {
  if (sodium_ready(e)) return e->status;
  size_t n = strlen(path);
  char *pub_path = malloc(n + 5);
  if (!pub_path) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  snprintf(pub_path, n + 5, "%s.pub", path);
  /* Refuse before creating anything when the public half's name is taken. */
  struct stat st;
  const char *taken = !lstat(path, &st) ? path : !lstat(pub_path, &st) ? pub_path : NULL;
  if (taken) {
    mpu_fail(e, MPU_EUSAGE, "%s: already exists; a key is never overwritten", taken);
    free(pub_path);
    return e->status;
  }
  sign_secret k;
  uint8_t seed[SIGN_SEED_BYTES];
  randombytes_buf(seed, sizeof seed);
  crypto_sign_seed_keypair(k.pub.pk, k.sk, seed);
  sign_key_id(k.pub.pk, k.pub.id);
  char seed_hex[65], pk_hex[65], text[160];
  sign_hex(seed, sizeof seed, seed_hex);
  sign_hex(k.pub.pk, sizeof k.pub.pk, pk_hex);
  snprintf(text, sizeof text, "%s %s %s\n", SECRET_MAGIC, k.pub.id, seed_hex);
  /* 0600 before a byte is written; the secret first, so a failure to write
   * the public key can take the secret back. */
  int rc = write_new(path, text, 0600, e);
  if (!rc) {
    snprintf(text, sizeof text, "%s %s %s\n", PUBLIC_MAGIC, k.pub.id, pk_hex);
    if ((rc = write_new(pub_path, text, 0644, e))) unlink(path);
  }
  if (!rc && pub) *pub = k.pub;
  sodium_memzero(seed, sizeof seed);
  sodium_memzero(seed_hex, sizeof seed_hex);
  sodium_memzero(text, sizeof text);
  sign_secret_wipe(&k);
  free(pub_path);
  return rc;
}

/* Reads a small key file whole (key files are one line; keyrings a few). */
static char *read_key_file(const char *path, mpu_err *e) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    mpu_fail(e, MPU_EUSAGE, "key %s: %s", path, strerror(errno));
    return NULL;
  }
  enum { MAX = 1 << 20 };
  char *text = malloc(MAX + 1);
  long long n = text ? read_full(fd, text, MAX + 1) : -1;
  int err = errno;
  close(fd);
  if (n < 0 || n > MAX) {
    mpu_fail(e, MPU_EUSAGE, "key %s: %s", path, n > MAX ? "too large for a key file" : strerror(err));
    free(text);
    return NULL;
  }
  text[n] = 0;
  return text;
}

int sign_secret_load(sign_secret *k, const char *path, mpu_err *e) {
  if (sodium_ready(e)) return e->status;
  char *text = read_key_file(path, e);
  if (!text) return e->status;
  char id[SIGN_KEY_ID_HEX + 1];
  uint8_t seed[SIGN_SEED_BYTES];
  int bad = parse_line(text, SECRET_MAGIC, id, seed);
  int is_public = !strncmp(text, PUBLIC_MAGIC, strlen(PUBLIC_MAGIC));
  sodium_memzero(text, strlen(text));
  free(text);
  if (bad) {
    sodium_memzero(seed, sizeof seed);
    return mpu_fail(e, MPU_EUSAGE, "%s is not an mpu signing key%s", path,
                    is_public ? " but its public half; sign with the secret key file"
                              : " (make one with 'mpu keygen --sign -o FILE')");
  }
  crypto_sign_seed_keypair(k->pub.pk, k->sk, seed);
  sodium_memzero(seed, sizeof seed);
  sign_key_id(k->pub.pk, k->pub.id);
  if (strcmp(id, k->pub.id)) {
    sign_secret_wipe(k);
    return mpu_fail(e, MPU_EUSAGE, "%s: damaged signing key (its key id does not match the key)", path);
  }
  return 0;
}

void sign_secret_wipe(sign_secret *k) { sodium_memzero(k, sizeof *k); }

int sign_trust_add_file(sign_trust *t, const char *path, mpu_err *e) {
  if (sodium_ready(e)) return e->status;
  char *text = read_key_file(path, e);
  if (!text) return e->status;
  int rc = 0, keys = 0, lineno = 0;
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    lineno++;
    if (!*line || *line == '#') continue;
    if (!strncmp(line, SECRET_MAGIC, strlen(SECRET_MAGIC))) {
      rc = mpu_fail(e, MPU_EUSAGE, "%s is a secret signing key; trust is given with its public half (%s.pub)", path,
                    path);
      break;
    }
    sign_public k;
    char id[SIGN_KEY_ID_HEX + 1];
    if (parse_line(line, PUBLIC_MAGIC, id, k.pk)) {
      rc = mpu_fail(e, MPU_EUSAGE, "%s:%d: not an mpu public signing key (a line '%s ID HEX')", path, lineno,
                    PUBLIC_MAGIC);
      break;
    }
    sign_key_id(k.pk, k.id);
    if (strcmp(id, k.id)) {
      rc = mpu_fail(e, MPU_EUSAGE, "%s:%d: damaged public key (its key id does not match the key)", path, lineno);
      break;
    }
    keys++;
    if (sign_trust_find(t, k.id)) continue;
    sign_public *grown = realloc(t->keys, (t->n + 1) * sizeof *grown);
    if (!grown) {
      rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
      break;
    }
    t->keys = grown;
    t->keys[t->n++] = k;
  }
  free(text);
  if (!rc && !keys) rc = mpu_fail(e, MPU_EUSAGE, "%s holds no public signing key", path);
  return rc;
}

const sign_public *sign_trust_find(const sign_trust *t, const char *key_id) {
  for (size_t i = 0; key_id && i < t->n; i++)
    if (!strcmp(t->keys[i].id, key_id)) return &t->keys[i];
  return NULL;
}

void sign_trust_free(sign_trust *t) {
  free(t->keys);
  t->keys = NULL;
  t->n = 0;
}

/* context NUL msg, the bytes a signature covers. */
static uint8_t *framed(const char *context, const void *msg, size_t len, size_t *n) {
  size_t cl = strlen(context);
  uint8_t *m = malloc(cl + 1 + len + 1);
  if (!m) return NULL;
  memcpy(m, context, cl + 1);
  if (len) memcpy(m + cl + 1, msg, len);
  *n = cl + 1 + len;
  return m;
}

void sign_make(const sign_secret *k, const char *context, const void *msg, size_t len, uint8_t sig[SIGN_BYTES]) {
  size_t n;
  uint8_t *m = sodium_init() < 0 ? NULL : framed(context, msg, len, &n);
  if (!m) { /* callers sign tens of bytes; a failed malloc leaves a signature that never verifies */
    memset(sig, 0, SIGN_BYTES);
    return;
  }
  crypto_sign_detached(sig, NULL, m, n, k->sk);
  free(m);
}

int sign_check(const sign_public *k, const char *context, const void *msg, size_t len, const uint8_t sig[SIGN_BYTES]) {
  size_t n;
  uint8_t *m = sodium_init() < 0 ? NULL : framed(context, msg, len, &n);
  if (!m) return -1;
  int rc = crypto_sign_verify_detached(sig, m, n, k->pk) == 0 ? 0 : -1;
  free(m);
  return rc;
}

const sign_public *sign_trust_check(const sign_trust *t, const char *key_id, const char *context, const void *msg,
                                    size_t len, const uint8_t sig[SIGN_BYTES]) {
  const sign_public *k = sign_trust_find(t, key_id);
  return k && !sign_check(k, context, msg, len, sig) ? k : NULL;
}
