/*
 * streamsig.c -- signatures of .mpuc streams (see streamsig.h).
 */
#include "streamsig.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "jsonx.h"

/* E: BLAKE2b-256 of the canonical JSON of the trailer members a writer adds
 * (the four the format computes from the signed bytes, and the signatures
 * themselves, left out).  obj is not changed. */
static int extras_digest(const json_t *obj, uint8_t out[32]) {
  static const char *const skip[] = {"counts", "content_digest", "stream_digest", "index", "signatures"};
  json_t *t = json_copy((json_t *)obj); /* shallow: only top-level members are removed */
  if (!t) return -1;
  for (size_t i = 0; i < sizeof skip / sizeof *skip; i++) json_object_del(t, skip[i]);
  char *text = json_canonical(t);
  json_decref(t);
  if (!text) return -1;
  crypto_generichash(out, 32, (const uint8_t *)text, strlen(text), NULL, 0);
  free(text);
  return 0;
}

/* D || C || E, the message after the context. */
enum { MSG_BYTES = 32 + 16 + 32 };
static int message(const uint8_t d[32], const char *content_hex, const json_t *trailer, uint8_t msg[MSG_BYTES]) {
  memcpy(msg, d, 32);
  if (sign_unhex(content_hex, msg + 32, 16)) return -1;
  return extras_digest(trailer, msg + 48);
}

char *streamsig_sign(const sign_secret *k, const uint8_t bytes_digest[STREAMSIG_DIGEST_BYTES], const char *content_hex,
                     const char *extra_json, mpu_err *e) {
  json_t *t = extra_json ? json_loads(extra_json, JSON_REJECT_DUPLICATES, NULL) : json_object();
  if (!json_is_object(t)) {
    json_decref(t);
    mpu_fail(e, MPU_EUSAGE, "signing the stream: trailer extras are not a JSON object");
    return NULL;
  }
  uint8_t msg[MSG_BYTES], sig[SIGN_BYTES];
  if (message(bytes_digest, content_hex, t, msg)) {
    json_decref(t);
    mpu_fail(e, MPU_EUSAGE, "signing the stream: out of memory");
    return NULL;
  }
  sign_make(k, STREAMSIG_CONTEXT, msg, sizeof msg, sig);
  char dhex[65], shex[2 * SIGN_BYTES + 1];
  sign_hex(bytes_digest, 32, dhex);
  sign_hex(sig, sizeof sig, shex);
  json_t *sigs = json_object_get(t, "signatures");
  if (!json_is_array(sigs)) {
    sigs = json_array();
    json_object_set_new(t, "signatures", sigs);
  }
  json_array_append_new(sigs, json_pack("{s:s, s:{s:s}, s:s, s:s}", "alg", "ed25519", "digest", "blake2b_256", dhex,
                                        "key_id", k->pub.id, "sig", shex));
  char *out = json_canonical(t);
  json_decref(t);
  if (!out) mpu_fail(e, MPU_EUSAGE, "signing the stream: out of memory");
  return out;
}

/* The status of one signature object. */
static const char *check_one(json_t *s, const uint8_t *d, const uint8_t *msg, int msg_ok, const sign_trust *trust,
                             int *is_trusted) {
  *is_trusted = 0;
  const char *id = json_string_value(json_object_get(s, "key_id"));
  const char *alg = json_string_value(json_object_get(s, "alg"));
  const char *dig = json_string_value(json_object_get(json_object_get(s, "digest"), "blake2b_256"));
  const char *sig = json_string_value(json_object_get(s, "sig"));
  uint8_t claimed[32], sb[SIGN_BYTES];
  if (!id || !alg || !dig || !sig) return "invalid: not a signature object (key_id, alg, digest, sig)";
  if (!trust || !d) return "not checked";
  const sign_public *k = sign_trust_find(trust, id);
  if (!k) return "unknown key";
  /* From here on the signature claims a key we trust: anything wrong is a
   * failure, not a mere unknown. */
  if (strcmp(alg, "ed25519")) return "invalid: unknown algorithm";
  if (sign_unhex(dig, claimed, 32) || sign_unhex(sig, sb, SIGN_BYTES)) return "invalid: malformed hex";
  if (memcmp(claimed, d, 32)) return "invalid: signed other bytes (its BLAKE2b-256 differs from the stream's)";
  if (!msg_ok) return "invalid: out of memory";
  if (sign_check(k, STREAMSIG_CONTEXT, msg, MSG_BYTES, sb)) return "invalid: bad signature";
  *is_trusted = 1;
  return "trusted";
}

void streamsig_check(json_t *trailer, const uint8_t *bytes_digest, const char *content_hex, const sign_trust *trust,
                     streamsig_result *out) {
  memset(out, 0, sizeof *out);
  out->report = json_array();
  json_t *sigs = json_object_get(trailer, "signatures");
  if (!sigs) return;
  if (!json_is_array(sigs)) {
    out->count = 1;
    out->invalid = 1;
    json_array_append_new(out->report, json_pack("{s:s}", "status", "invalid: \"signatures\" is not an array"));
    return;
  }
  /* The message is built from what this reader computed, never from what
   * the trailer claims. */
  uint8_t msg[MSG_BYTES];
  int msg_ok = bytes_digest && !message(bytes_digest, content_hex, trailer, msg);
  size_t i;
  json_t *s;
  json_array_foreach(sigs, i, s) {
    int ok;
    const char *status = check_one(s, bytes_digest, msg, msg_ok, trust, &ok);
    out->count++;
    out->trusted += ok;
    out->invalid += !strncmp(status, "invalid", 7);
    const char *id = json_string_value(json_object_get(s, "key_id"));
    const char *alg = json_string_value(json_object_get(s, "alg"));
    json_array_append_new(out->report,
                          json_pack("{s:s?, s:s?, s:s}", "key_id", id, "alg", alg, "status", status));
  }
}
