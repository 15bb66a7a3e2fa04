/*
 * bundle.h -- air-gap bundles (spec/bundle.md): .mpuc streams in one
 * reproducible pax tar with a manifest of their BLAKE2b digests and their
 * provenance records, optionally signed, optionally inside zstd.
 *
 *   tar := stream*  provenance/NAME.json*  mpu-bundle.json  mpu-bundle.sig?
 *
 * The manifest comes after the streams (like an .mpuc trailer) so that pack
 * reads each file once: verifying it, hashing it and copying it into the tar
 * in the same pass.  unpack reads the bundle once into a private directory
 * inside the target, checks everything there, and only then renames the
 * streams into place: a refused bundle leaves the target as it was.
 */
#ifndef MPU_BUNDLE_H
#define MPU_BUNDLE_H

#include <jansson.h>
#include <stdint.h>

#include "cli.h"
#include "sign.h"

#define BUNDLE_MANIFEST "mpu-bundle.json"
#define BUNDLE_SIGNATURE "mpu-bundle.sig"
#define BUNDLE_PROV_DIR "provenance/"
#define BUNDLE_SIGN_CONTEXT "mpu-bundle-v1"
#define BUNDLE_DIGEST "blake2b"                /* BLAKE2b-512 of a file: b2sum */

/* Limits (spec/bundle.md, "Limits"). */
#define BUNDLE_MAX_STREAMS 1024
#define BUNDLE_MAX_NAME 200                  /* bytes of a stream's name */
#define BUNDLE_MAX_MANIFEST (16u << 20)
#define BUNDLE_MAX_SIGNATURE (1u << 20)
#define BUNDLE_MAX_PROVENANCE (512u << 20)
#define BUNDLE_MAX_STREAM (1ull << 48)       /* default largest stream entry */
#define BUNDLE_MAX_MTIME 8589934591ll        /* 8^11 - 1: the largest ustar mtime */

typedef struct {
  int64_t mtime;                  /* every entry's mtime (SOURCE_DATE_EPOCH) */
  int zstd;                       /* zstd around the tar */
  const sign_secret *keys;        /* sign the manifest with each of these */
  size_t nkeys;
  int progress;                   /* as cli_progress_start */
} bundle_pack_options;

/* 1 if name may be a stream's name in a bundle: 1..BUNDLE_MAX_NAME bytes of
 * [A-Za-z0-9._+-], not starting with '.' or '-', not a reserved name. */
int bundle_name_ok(const char *name);

/* Writes a bundle of the streams at paths (named by their base names, which
 * must be distinct) to out, which the caller opened and commits.  Every
 * stream is verified in full while it is copied; a bad one fails (status 1)
 * and the caller aborts out. */
int bundle_pack(cli_output *out, char *const *paths, size_t n, const bundle_pack_options *o, mpu_err *e);

typedef struct {
  const char *dir;                /* unpack into DIR (created if missing); NULL: check and list only */
  int force;                      /* replace streams that exist in dir */
  uint64_t max_size;              /* largest stream entry accepted (0: BUNDLE_MAX_STREAM) */
  const sign_trust *trust;        /* non-NULL: require a signature by one of these keys */
  int progress;
} bundle_read_options;

typedef struct {
  json_t *manifest;               /* the checked manifest */
  json_t *signers;                /* key ids of the signatures present, checked or not */
  char trusted[SIGN_KEY_ID_HEX + 1]; /* the trusted key whose signature verified, or "" */
  int verified_streams;           /* streams verified in full (unpack; not --list) */
} bundle_result;

/* Reads a bundle from fd (named name in messages).  Refuses (status 1, the
 * message naming the entry) anything spec/bundle.md does not allow: links,
 * devices, paths outside the directory, duplicates, entries out of order or
 * not in the manifest, a size or digest differing from the manifest's, a
 * stream that fails verification, a truncated tar.  With o->dir, writes the
 * streams there only after all of that passed (status 2 if one exists and
 * !o->force).  Without, checks sizes and digests only. */
int bundle_read(int fd, const char *name, const bundle_read_options *o, bundle_result *r, mpu_err *e);
void bundle_result_free(bundle_result *r);

#endif
