/*
 * bundle.c -- air-gap bundles: pack and unpack (spec/bundle.md).
 */
#include "bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "jsonx.h"
#include "mstream.h"

/* ---------------------------------------------------------------- shared by pack and unpack */
int bundle_name_ok(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > BUNDLE_MAX_NAME || name[0] == '.' || name[0] == '-') return 0;
  if (!strcmp(name, BUNDLE_MANIFEST) || !strcmp(name, BUNDLE_SIGNATURE)) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-' || c == '+'))
      return 0;
  }
  return 1;
}

/* The cryptographic digest of every file: BLAKE2b-512 (libsodium), what
 * coreutils' b2sum prints and in-toto calls "blake2b"; here it runs at 2.7
 * times the speed of libsodium's SHA-256, which has no SHA-NI path. */
#define DIGEST_BYTES 64
#define DIGEST_HEX (2 * DIGEST_BYTES + 1)
typedef crypto_generichash_state digest_state;
static void digest_init(digest_state *s) { crypto_generichash_init(s, NULL, 0, DIGEST_BYTES); }
static void digest_update(digest_state *s, const void *p, size_t n) { crypto_generichash_update(s, p, n); }
static void digest_final(digest_state *s, uint8_t d[DIGEST_BYTES]) { crypto_generichash_final(s, d, DIGEST_BYTES); }
static void digest_once(uint8_t d[DIGEST_BYTES], const void *p, size_t n) {
  crypto_generichash(d, DIGEST_BYTES, p, n, NULL, 0);
}
static void digest_hex(const uint8_t d[DIGEST_BYTES], char out[DIGEST_HEX]) { sign_hex(d, DIGEST_BYTES, out); }

static json_t *xxh(const char *hex) { return json_pack("{s:s}", "xxh3_128", hex); }

/* What the manifest says about a stream, from a reader that has verified it
 * to its end: pack writes it, unpack recomputes it and compares. */
static json_t *stream_info(ms_reader *m) {
  json_t *h = m->header, *stage = json_object_get(h, "stage"), *rec = json_object_get(h, "mpu");
  json_t *info = json_pack("{s:s, s:o, s:o, s:o, s:O, s:O}", "stream_id", mpuc_reader_stream_id(m->r),
                           "header_digest", xxh(mpuc_reader_header_digest(m->r)), "content_digest",
                           xxh(mpuc_reader_content_digest(m->r)), "stream_digest",
                           xxh(mpuc_reader_stream_digest(m->r)), "copies", json_object_get(h, "copies"), "parents",
                           json_object_get(h, "parents"));
  if (!info) return NULL;
  json_t *sn = json_object_get(stage, "name");
  if (json_is_string(sn)) json_object_set(info, "stage", sn);
  /* the MPU round a stream belongs to, and which copy it is */
  if (json_is_object(rec)) {
    json_t *round = json_object_get(rec, "round"), *copy = json_object_get(rec, "copy");
    if (round) json_object_set(info, "round", round);
    if (copy) json_object_set(info, "copy", copy);
  }
  return info;
}

/* The provenance record of a verified stream: its header and trailer JSON. */
static char *prov_record(ms_reader *m) {
  json_t *t = json_loads(ms_trailer_json(m), JSON_REJECT_DUPLICATES, NULL);
  json_t *rec = t ? json_pack("{s:O, s:o}", "header", m->header, "trailer", t) : NULL;
  char *s = rec ? json_pretty(rec) : NULL;
  json_decref(rec);
  return s;
}

/* ---------------------------------------------------------------- pack */
typedef struct {
  struct archive *a;
  cli_output *out;
  mpu_err *e;
  digest_state hash;
  uint64_t bytes, done;
  cli_progress progress;
  const char *name;
} packer;

static la_ssize_t pack_write_cb(struct archive *a, void *ctx, const void *buf, size_t n) {
  packer *p = ctx;
  if (cli_output_write(p->out, buf, n, p->e)) {
    archive_set_error(a, EIO, "%s", p->e->msg);
    return -1;
  }
  return (la_ssize_t)n;
}

static int archive_fail(packer *p, const char *what) {
  /* an error of our own output callback is already recorded */
  return mpu_fail(p->e, MPU_EUSAGE, "%s: %s", what, archive_error_string(p->a) ?: "libarchive error");
}

static int pack_data(packer *p, const void *buf, size_t n) {
  const char *c = buf;
  while (n) {
    la_ssize_t w = archive_write_data(p->a, c, n);
    if (w <= 0) return archive_fail(p, p->name);
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Every byte of a stream, as the reader verifying it reads it: hashed and
 * copied into the tar in the same pass. */
static int pack_tap(void *ctx, const void *buf, size_t n, mpu_err *e) {
  packer *p = ctx;
  (void)e;
  digest_update(&p->hash, buf, n);
  p->bytes += n;
  p->done += n;
  cli_progress_update(&p->progress, p->done);
  return pack_data(p, buf, n);
}

static int pack_header(packer *p, const char *path, uint64_t size, int64_t mtime) {
  /* Only what a reader needs; no owner names, no atime/ctime (restricted pax
   * writes those only when asked to): the same files give the same bytes. */
  struct archive_entry *en = archive_entry_new();
  if (!en) return mpu_fail(p->e, MPU_EUSAGE, "out of memory");
  archive_entry_set_pathname(en, path);
  archive_entry_set_size(en, (la_int64_t)size);
  archive_entry_set_filetype(en, AE_IFREG);
  archive_entry_set_perm(en, 0644);
  archive_entry_set_uid(en, 0);
  archive_entry_set_gid(en, 0);
  archive_entry_set_mtime(en, mtime, 0);
  p->name = path;
  int r = archive_write_header(p->a, en);
  archive_entry_free(en);
  return r == ARCHIVE_OK ? 0 : archive_fail(p, path);
}

/* A whole small entry from memory; its digest into digest. */
static int pack_memory(packer *p, const char *path, const char *data, size_t n, int64_t mtime, uint8_t digest[DIGEST_BYTES]) {
  if (pack_header(p, path, n, mtime) || pack_data(p, data, n)) return p->e->status;
  if (archive_write_finish_entry(p->a) != ARCHIVE_OK) return archive_fail(p, path);
  digest_once(digest, data, n);
  return 0;
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static int by_base_name(const void *a, const void *b) {
  return strcmp(base_name(*(char *const *)a), base_name(*(char *const *)b));
}

/* One stream: verified, hashed and copied in one read.  Adds its manifest
 * item to files and returns its provenance record in *rec. */
static int pack_stream(packer *p, const char *path, const bundle_pack_options *o, json_t *files, char **rec) {
  mpu_err *e = p->e;
  const char *name = base_name(path);
  int fd;
  if (cli_open_input(path, &fd, e)) return e->status;
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return mpu_fail(e, MPU_EUSAGE, "%s: not a regular file (a tar entry's size must be known before its bytes)",
                    path);
  }
  if (pack_header(p, name, (uint64_t)st.st_size, o->mtime)) {
    close(fd);
    return e->status;
  }
  digest_init(&p->hash);
  p->bytes = 0;
  ms_reader m;
  int rc = ms_reader_open_fd_tap(&m, fd, path, pack_tap, p, e);
  if (!rc) rc = ms_verify_rest(&m, e);
  if (!rc && p->bytes != (uint64_t)st.st_size)
    rc = mpu_fail(e, MPU_EUSAGE, "%s: changed size while being read", path);
  if (!rc && archive_write_finish_entry(p->a) != ARCHIVE_OK) rc = archive_fail(p, name);
  if (!rc) {
    uint8_t d[DIGEST_BYTES];
    char hex[DIGEST_HEX];
    digest_final(&p->hash, d);
    digest_hex(d, hex);
    json_t *info = stream_info(&m);
    *rec = prov_record(&m);
    json_t *item = info && *rec ? json_pack("{s:s, s:I, s:{s:s}, s:o}", "name", name, "size", (json_int_t)st.st_size,
                                            "digest", BUNDLE_DIGEST, hex, "stream", info)
                                : NULL;
    if (!item) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
    else json_array_append_new(files, item);
  }
  ms_reader_close(&m);
  return rc;
}

int bundle_pack(cli_output *out, char *const *paths, size_t n, const bundle_pack_options *o, mpu_err *e) {
  if (n == 0) return mpu_fail(e, MPU_EUSAGE, "no streams to pack");
  if (n > BUNDLE_MAX_STREAMS) return mpu_fail(e, MPU_EUSAGE, "at most %d streams in a bundle", BUNDLE_MAX_STREAMS);
  if (o->mtime < 0 || o->mtime > BUNDLE_MAX_MTIME)
    return mpu_fail(e, MPU_EUSAGE, "the time stamp %lld is outside 0..%lld", (long long)o->mtime,
                    (long long)BUNDLE_MAX_MTIME);
  /* Entries sorted by name, whatever order the files were given in. */
  char **sorted = malloc(n * sizeof *sorted);
  if (!sorted) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  memcpy(sorted, paths, n * sizeof *sorted);
  qsort(sorted, n, sizeof *sorted, by_base_name);
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = base_name(sorted[i]);
    struct stat st;
    if (!bundle_name_ok(name))
      mpu_fail(e, MPU_EUSAGE, "%s: '%s' cannot name a stream in a bundle (1 to %d of A-Z a-z 0-9 . _ + -, not "
               "starting with '.' or '-', not %s or %s); rename the file", sorted[i], name, BUNDLE_MAX_NAME,
               BUNDLE_MANIFEST, BUNDLE_SIGNATURE);
    else if (i && !strcmp(name, base_name(sorted[i - 1])))
      mpu_fail(e, MPU_EUSAGE, "%s and %s would both be '%s' in the bundle; rename one", sorted[i - 1], sorted[i], name);
    else if (stat(sorted[i], &st) == 0)
      total += (uint64_t)st.st_size;
    if (e->status) {
      free(sorted);
      return e->status;
    }
  }

  packer p = {.out = out, .e = e};
  p.a = archive_write_new();
  int rc = p.a ? 0 : mpu_fail(e, MPU_EUSAGE, "out of memory");
  /* Restricted pax: plain ustar headers unless a name or size needs more.
   * One byte in the last block: no zero padding after the end-of-archive
   * blocks, which would follow a zstd frame and make `zstd -d` refuse it. */
  if (!rc && (archive_write_set_format_pax_restricted(p.a) != ARCHIVE_OK ||
              archive_write_set_bytes_per_block(p.a, 1 << 20) != ARCHIVE_OK ||
              archive_write_set_bytes_in_last_block(p.a, 1) != ARCHIVE_OK))
    rc = archive_fail(&p, "setting up the tar writer");
  /* zstd single-threaded: its output does not depend on the machine */
  if (!rc && o->zstd &&
      (archive_write_add_filter_zstd(p.a) != ARCHIVE_OK ||
       archive_write_set_filter_option(p.a, "zstd", "compression-level", "3") != ARCHIVE_OK))
    rc = archive_fail(&p, "setting up zstd");
  if (!rc && archive_write_open(p.a, &p, NULL, pack_write_cb, NULL) != ARCHIVE_OK) rc = archive_fail(&p, "output");
  cli_progress_start(&p.progress, o->progress, "packing", total);

  json_t *files = json_array();
  char **recs = calloc(n, sizeof *recs);
  if (!rc && (!files || !recs)) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  for (size_t i = 0; i < n && !rc; i++) rc = pack_stream(&p, sorted[i], o, files, &recs[i]);

  /* The provenance records, in the streams' order. */
  for (size_t i = 0; i < n && !rc; i++) {
    json_t *item = json_array_get(files, i);
    const char *name = json_string_value(json_object_get(item, "name"));
    size_t len = strlen(recs[i]);
    char path[sizeof BUNDLE_PROV_DIR + BUNDLE_MAX_NAME + 8], hex[DIGEST_HEX];
    uint8_t d[DIGEST_BYTES];
    snprintf(path, sizeof path, "%s%s.json", BUNDLE_PROV_DIR, name);
    rc = pack_memory(&p, path, recs[i], len, o->mtime, d);
    if (rc) break;
    digest_hex(d, hex);
    json_object_set_new(item, "provenance",
                          json_pack("{s:s, s:I, s:{s:s}}", "name", path, "size", (json_int_t)len, "digest", BUNDLE_DIGEST, hex));
  }

  /* The manifest, then the signatures of its digest. */
  json_t *manifest = NULL;
  char *mtext = NULL, *stext = NULL;
  uint8_t md[DIGEST_BYTES];
  char mhex[DIGEST_HEX];
  if (!rc) {
    manifest = json_pack("{s:i, s:I, s:{s:s, s:s}, s:O}", "mpu_bundle", 1, "source_date_epoch", (json_int_t)o->mtime,
                         "tool", "name", "mpu", "version", MPU_VERSION, "files", files);
    mtext = manifest ? json_pretty(manifest) : NULL;
    if (!mtext) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  if (!rc) rc = pack_memory(&p, BUNDLE_MANIFEST, mtext, strlen(mtext), o->mtime, md);
  if (!rc && o->nkeys) {
    digest_hex(md, mhex);
    json_t *sigs = json_array();
    for (size_t k = 0; k < o->nkeys; k++) {
      uint8_t sig[SIGN_BYTES];
      char shex[2 * SIGN_BYTES + 1];
      sign_make(&o->keys[k], BUNDLE_SIGN_CONTEXT, md, sizeof md, sig);
      sign_hex(sig, sizeof sig, shex);
      json_array_append_new(sigs, json_pack("{s:s, s:s}", "keyid", o->keys[k].pub.id, "sig", shex));
    }
    json_t *sj = json_pack("{s:s, s:{s:s, s:{s:s}}, s:o}", "context", BUNDLE_SIGN_CONTEXT, "manifest", "name",
                           BUNDLE_MANIFEST, "digest", BUNDLE_DIGEST, mhex, "signatures", sigs);
    stext = sj ? json_pretty(sj) : NULL;
    json_decref(sj);
    if (!stext) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
    else rc = pack_memory(&p, BUNDLE_SIGNATURE, stext, strlen(stext), o->mtime, md);
  }
  if (!rc && archive_write_close(p.a) != ARCHIVE_OK) rc = archive_fail(&p, "finishing the tar");
  cli_progress_end(&p.progress);
  if (p.a) archive_write_free(p.a);
  for (size_t i = 0; recs && i < n; i++) free(recs[i]);
  free(recs);
  free(mtext);
  free(stext);
  json_decref(manifest);
  json_decref(files);
  free(sorted);
  return rc;
}

/* ---------------------------------------------------------------- unpack */
enum { K_STREAM, K_PROV, K_MANIFEST, K_SIG };
static const char *const kind_name[] = {"streams", "provenance records", "the manifest", "the signature"};

typedef struct {
  char *name;              /* path in the bundle */
  int kind;
  uint64_t size;
  uint8_t digest[DIGEST_BYTES];
  char tmp[16];            /* its file in the private directory, or "" */
  int used;                /* named by the manifest */
  int placed;              /* renamed into the target */
} bentry;

typedef struct {
  const bundle_read_options *o;
  const char *bname;       /* the bundle, for messages */
  mpu_err *e;
  bentry *ents;
  size_t n, cap;
  char *manifest, *sig;    /* kept in memory (small, bounded) */
  size_t manifest_len, sig_len;
  /* the target and the private directory inside it */
  int dirfd, tmpfd;
  char *tmppath;
  int made_dir;
} unpacker;

static int bad(unpacker *u, const char *entry, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(unpacker *u, const char *entry, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (entry) return mpu_fail(u->e, MPU_EVERIFY, "%s: entry '%.200s' %s", u->bname, entry, msg);
  return mpu_fail(u->e, MPU_EVERIFY, "%s: %s", u->bname, msg);
}

/* Which kind of entry a path names, or -1 with the reason the path is refused. */
static int classify(const char *path, const char **why) {
  if (!path || !*path) return *why = "has no name", -1;
  if (path[0] == '/') return *why = "is an absolute path (it would be written outside the directory)", -1;
  /* any ".." component escapes the directory */
  for (const char *s = path; s; s = strchr(s, '/'), s = s ? s + 1 : NULL)
    if (s[0] == '.' && s[1] == '.' && (s[2] == '/' || s[2] == 0))
      return *why = "has a '..' component (it would be written outside the directory)", -1;
  if (!strcmp(path, BUNDLE_MANIFEST)) return K_MANIFEST;
  if (!strcmp(path, BUNDLE_SIGNATURE)) return K_SIG;
  size_t pl = strlen(BUNDLE_PROV_DIR), n = strlen(path);
  if (!strncmp(path, BUNDLE_PROV_DIR, pl) && n > pl + 5 && !strcmp(path + n - 5, ".json")) {
    char stem[BUNDLE_MAX_NAME + 1];
    size_t sl = n - pl - 5;
    if (sl <= BUNDLE_MAX_NAME) {
      memcpy(stem, path + pl, sl);
      stem[sl] = 0;
      if (bundle_name_ok(stem)) return K_PROV;
    }
  }
  if (bundle_name_ok(path)) return K_STREAM;
  return *why = "is not a name a bundle may hold (spec/bundle.md: a plain file name, provenance/NAME.json, "
                BUNDLE_MANIFEST " or " BUNDLE_SIGNATURE ")",
         -1;
}

static const char *type_name(mode_t t) {
  switch (t) {
  case AE_IFLNK: return "a symbolic link";
  case AE_IFDIR: return "a directory";
  case AE_IFCHR: return "a character device";
  case AE_IFBLK: return "a block device";
  case AE_IFIFO: return "a FIFO";
  case AE_IFSOCK: return "a socket";
  default: return "not a regular file";
  }
}

static uint64_t kind_limit(const unpacker *u, int kind) {
  switch (kind) {
  case K_STREAM: return u->o->max_size ? u->o->max_size : BUNDLE_MAX_STREAM;
  case K_PROV: return BUNDLE_MAX_PROVENANCE;
  case K_MANIFEST: return BUNDLE_MAX_MANIFEST;
  default: return BUNDLE_MAX_SIGNATURE;
  }
}

/* Checks an entry's header before any of its bytes is read. */
static int admit(unpacker *u, struct archive_entry *ae, bentry *b) {
  const char *path = archive_entry_pathname(ae), *why = NULL;
  const char *shown = path ? path : "";
  if (archive_entry_hardlink(ae)) return bad(u, shown, "is a hard link; a bundle holds regular files only");
  if (archive_entry_filetype(ae) != AE_IFREG)
    return bad(u, shown, "is %s; a bundle holds regular files only", type_name(archive_entry_filetype(ae)));
  if (archive_entry_sparse_count(ae) > 0) return bad(u, shown, "is a sparse file; a bundle holds plain files only");
  int kind = classify(path, &why);
  if (kind < 0) return bad(u, shown, "%s", why);
  for (size_t i = 0; i < u->n; i++)
    if (!strcmp(u->ents[i].name, path)) return bad(u, path, "appears twice in the bundle");
  if (u->n) {
    const bentry *prev = &u->ents[u->n - 1];
    if (kind < prev->kind || (kind == prev->kind && strcmp(path, prev->name) < 0) || prev->kind >= K_SIG ||
        (kind == K_MANIFEST && prev->kind == K_MANIFEST))
      return bad(u, path, "is out of order (a bundle holds streams, then provenance records, then the manifest, "
                 "then its signature, each sorted by name)");
  }
  /* streams first, so counting entries counts streams until the first record */
  if ((kind == K_STREAM && u->n >= BUNDLE_MAX_STREAMS) || u->n >= 2 * BUNDLE_MAX_STREAMS + 2)
    return bad(u, path, "is one entry too many (at most %d streams, each with one provenance record)",
               BUNDLE_MAX_STREAMS);
  if (!archive_entry_size_is_set(ae) || archive_entry_size(ae) < 0) return bad(u, path, "has no size");
  uint64_t size = (uint64_t)archive_entry_size(ae);
  if (size > kind_limit(u, kind))
    return bad(u, path, "is too large: %llu bytes, more than the %llu allowed for %s", (unsigned long long)size,
               (unsigned long long)kind_limit(u, kind), kind_name[kind]);
  if (kind == K_STREAM && u->o->dir && !u->o->force) {
    struct stat st;
    if (fstatat(u->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0)
      return mpu_fail(u->e, MPU_EUSAGE, "%s/%s already exists; remove it or use --force", u->o->dir, path);
  }
  b->name = strdup(path);
  b->kind = kind;
  b->size = size;
  return b->name ? 0 : mpu_fail(u->e, MPU_EUSAGE, "out of memory");
}

/* Reads the current entry's bytes: hashed, and kept in memory or written to
 * its file in the private directory. */
static int take(unpacker *u, struct archive *a, bentry *b) {
  int fd = -1;
  char *mem = NULL;
  if (b->kind == K_MANIFEST || b->kind == K_SIG) {
    mem = malloc(b->size + 1);
    if (!mem) return mpu_fail(u->e, MPU_EUSAGE, "out of memory");
    if (b->kind == K_MANIFEST) u->manifest = mem, u->manifest_len = b->size;
    else u->sig = mem, u->sig_len = b->size;
    mem[b->size] = 0;
  } else if (u->o->dir) {
    struct statvfs vs;
    if (fstatvfs(u->tmpfd, &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < b->size)
      return mpu_fail(u->e, MPU_EUSAGE, "%s: not enough space for '%s' (%llu bytes) in %s", u->bname, b->name,
                      (unsigned long long)b->size, u->o->dir);
    snprintf(b->tmp, sizeof b->tmp, "e%06zu", u->n);
    mode_t um = umask(0);
    umask(um);
    fd = openat(u->tmpfd, b->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666 & ~um);
    if (fd < 0) return mpu_fail(u->e, MPU_EUSAGE, "%s: cannot create a file in %s: %s", u->bname, u->tmppath, strerror(errno));
  }
  digest_state hash;
  digest_init(&hash);
  uint64_t got = 0;
  int rc = 0;
  for (;;) {
    const void *buf;
    size_t len;
    la_int64_t off;
    int r = archive_read_data_block(a, &buf, &len, &off);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK) {
      rc = bad(u, b->name, "cannot be read (truncated or damaged tar): %s", archive_error_string(a) ?: "?");
      break;
    }
    if ((uint64_t)off != got || got + len > b->size) {
      rc = bad(u, b->name, "has data beyond its size or with holes");
      break;
    }
    digest_update(&hash, buf, len);
    if (mem) memcpy(mem + got, buf, len);
    if (fd >= 0 && write_all(fd, buf, len)) {
      rc = mpu_fail(u->e, MPU_EUSAGE, "%s: writing '%s' in %s: %s", u->bname, b->name, u->tmppath, strerror(errno));
      break;
    }
    got += len;
  }
  if (!rc && got != b->size) rc = bad(u, b->name, "is truncated (%llu of %llu bytes)", (unsigned long long)got,
                                      (unsigned long long)b->size);
  if (fd >= 0 && close(fd) && !rc)
    rc = mpu_fail(u->e, MPU_EUSAGE, "%s: writing '%s': %s", u->bname, b->name, strerror(errno));
  digest_final(&hash, b->digest);
  return rc;
}

static bentry *find(unpacker *u, const char *name, int kind) {
  for (size_t i = 0; i < u->n; i++)
    if (u->ents[i].kind == kind && !strcmp(u->ents[i].name, name)) return &u->ents[i];
  return NULL;
}

/* An entry's size and digest against what the manifest says of it. */
static int check_file(unpacker *u, json_t *item, int kind, const char *name) {
  bentry *b = name ? find(u, name, kind) : NULL;
  if (!b) return bad(u, name ? name : "?", "is named in the manifest but missing from the bundle");
  if (b->used) return bad(u, name, "is named twice in the manifest");
  b->used = 1;
  json_t *size = json_object_get(item, "size");
  const char *want = json_string_value(json_object_get(json_object_get(item, "digest"), BUNDLE_DIGEST));
  char hex[DIGEST_HEX];
  digest_hex(b->digest, hex);
  if (!json_is_integer(size) || (uint64_t)json_integer_value(size) != b->size)
    return bad(u, name, "has %llu bytes where the manifest says %s", (unsigned long long)b->size,
               json_is_integer(size) ? "otherwise" : "nothing");
  if (!want) return bad(u, name, "has no " BUNDLE_DIGEST " digest in the manifest");
  if (strcmp(want, hex))
    return bad(u, name, "has been altered: its BLAKE2b is %.16s..., the manifest says %.16s...", hex, want);
  return 0;
}

/* The manifest: valid JSON of the version we know, naming every entry once. */
static int check_manifest(unpacker *u, bundle_result *r) {
  if (!u->manifest) return bad(u, NULL, "has no manifest (%s): not a bundle, or a truncated one", BUNDLE_MANIFEST);
  json_error_t je;
  json_t *m = json_loadb(u->manifest, u->manifest_len, JSON_REJECT_DUPLICATES, &je);
  r->manifest = m;
  if (!json_is_object(m)) return bad(u, BUNDLE_MANIFEST, "is not a JSON object (%s)", je.text);
  json_t *ver = json_object_get(m, "mpu_bundle");
  if (!json_is_integer(ver)) return bad(u, BUNDLE_MANIFEST, "has no mpu_bundle version");
  if (json_integer_value(ver) != 1)
    return bad(u, BUNDLE_MANIFEST, "is bundle version %lld; this mpu reads version 1 (written by a newer mpu?)",
               (long long)json_integer_value(ver));
  json_t *files = json_object_get(m, "files"), *item;
  if (!json_is_array(files)) return bad(u, BUNDLE_MANIFEST, "has no files array");
  size_t i;
  json_array_foreach(files, i, item) {
    const char *name = json_string_value(json_object_get(item, "name"));
    if (!name || !bundle_name_ok(name)) return bad(u, BUNDLE_MANIFEST, "names a file it may not (item %zu)", i);
    if (check_file(u, item, K_STREAM, name)) return u->e->status;
    json_t *prov = json_object_get(item, "provenance");
    const char *pname = json_string_value(json_object_get(prov, "name"));
    char want[sizeof BUNDLE_PROV_DIR + BUNDLE_MAX_NAME + 8];
    snprintf(want, sizeof want, "%s%s.json", BUNDLE_PROV_DIR, name);
    if (!pname || strcmp(pname, want)) return bad(u, name, "has no provenance record %s in the manifest", want);
    if (check_file(u, prov, K_PROV, pname)) return u->e->status;
    if (!json_is_object(json_object_get(item, "stream"))) return bad(u, name, "has no stream description in the manifest");
  }
  for (size_t k = 0; k < u->n; k++)
    if (!u->ents[k].used && u->ents[k].kind <= K_PROV)
      return bad(u, u->ents[k].name, "is not in the manifest");
  return 0;
}

/* The signatures: which keys signed, and with trust required, one that we
 * trust and that verifies. */
static int check_signatures(unpacker *u, bundle_result *r) {
  r->signers = json_array();
  uint8_t md[DIGEST_BYTES];
  char mhex[DIGEST_HEX];
  digest_once(md, u->manifest, u->manifest_len);
  digest_hex(md, mhex);
  json_t *s = NULL, *sigs = NULL;
  if (u->sig) {
    s = json_loadb(u->sig, u->sig_len, JSON_REJECT_DUPLICATES, NULL);
    sigs = json_object_get(s, "signatures");
    const char *d = json_string_value(json_object_get(json_object_get(json_object_get(s, "manifest"), "digest"), BUNDLE_DIGEST));
    int rc = 0;
    if (!json_is_array(sigs) || !d) rc = bad(u, BUNDLE_SIGNATURE, "is not a signature record");
    else if (strcmp(d, mhex)) rc = bad(u, BUNDLE_SIGNATURE, "signs another manifest (BLAKE2b %.16s..., this one's is %.16s...)", d, mhex);
    if (rc) {
      json_decref(s);
      return rc;
    }
  }
  size_t i;
  json_t *x;
  const char *untrusted = NULL, *failed = NULL;
  json_array_foreach(sigs, i, x) {
    const char *id = json_string_value(json_object_get(x, "keyid"));
    const char *hex = json_string_value(json_object_get(x, "sig"));
    if (!id) continue;
    json_array_append_new(r->signers, json_string(id));
    if (!u->o->trust || r->trusted[0]) continue;
    uint8_t sig[SIGN_BYTES];
    if (!sign_trust_find(u->o->trust, id)) untrusted = untrusted ? untrusted : id;
    else if (!hex || sign_unhex(hex, sig, sizeof sig) ||
             !sign_trust_check(u->o->trust, id, BUNDLE_SIGN_CONTEXT, md, sizeof md, sig))
      failed = failed ? failed : id;
    else snprintf(r->trusted, sizeof r->trusted, "%s", id);
  }
  int rc = 0;
  if (u->o->trust && !r->trusted[0]) {
    if (failed) rc = bad(u, BUNDLE_SIGNATURE, "holds a signature by key %s that does not verify: the manifest "
                         "was changed after it was signed, or the signature was", failed);
    else if (untrusted) rc = bad(u, NULL, "is signed by key %s, which is not among the trusted keys (--trust)",
                                 untrusted);
    else rc = bad(u, NULL, "is not signed, and --trust requires a signature by a trusted key");
  }
  json_decref(s);
  return rc;
}

/* The bytes of a file in the private directory (bounded by the limits). */
static char *read_tmp(unpacker *u, const bentry *b) {
  int fd = openat(u->tmpfd, b->tmp, O_RDONLY | O_CLOEXEC);
  char *s = fd >= 0 ? malloc(b->size + 1) : NULL;
  if (s && read_full(fd, s, b->size) != (long long)b->size) {
    free(s);
    s = NULL;
  }
  if (fd >= 0) close(fd);
  if (s) s[b->size] = 0;
  return s;
}

/* Each stream verified in full, as `mpu verify` does, and its description
 * and provenance record recomputed and compared with the bundle's. */
static int check_streams(unpacker *u, bundle_result *r) {
  json_t *files = json_object_get(r->manifest, "files"), *item;
  size_t i;
  json_array_foreach(files, i, item) {
    const char *name = json_string_value(json_object_get(item, "name"));
    bentry *b = find(u, name, K_STREAM);
    char pname[sizeof BUNDLE_PROV_DIR + BUNDLE_MAX_NAME + 8];
    snprintf(pname, sizeof pname, "%s%s.json", BUNDLE_PROV_DIR, name);
    bentry *pb = find(u, pname, K_PROV);
    int fd = openat(u->tmpfd, b->tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mpu_fail(u->e, MPU_EUSAGE, "%s: reading back '%s': %s", u->bname, name, strerror(errno));
    ms_reader m;
    char label[BUNDLE_MAX_NAME + 64];
    snprintf(label, sizeof label, "entry '%s'", name);
    int rc = ms_reader_open_fd(&m, fd, label, u->e);
    if (!rc) {
      ms_reader_progress(&m, u->o->progress, "verifying");
      rc = ms_verify_rest(&m, u->e);
    }
    if (rc) mpu_fail_ctx(u->e, "%s", u->bname);
    json_t *info = rc ? NULL : stream_info(&m);
    char *rec = rc ? NULL : prov_record(&m);
    char *have = rc ? NULL : read_tmp(u, pb);
    if (!rc && (!info || !rec || !have)) rc = mpu_fail(u->e, MPU_EUSAGE, "out of memory");
    /* every member we know must match; members of a later version are ignored */
    const char *key;
    json_t *val;
    json_object_foreach(rc ? NULL : info, key, val) {
      if (!json_equal(val, json_object_get(json_object_get(item, "stream"), key))) {
        rc = bad(u, name, "is not the stream the manifest describes (its %s differs)", key);
        break;
      }
    }
    if (!rc && strcmp(rec, have))
      rc = bad(u, pname, "does not hold the header and trailer of stream '%s'", name);
    json_decref(info);
    free(rec);
    free(have);
    ms_reader_close(&m);
    if (rc) return rc;
    r->verified_streams++;
  }
  return 0;
}

/* Renames every stream into the target; on a failure, the ones already
 * placed go back, so the target ends as it began (unless --force replaced a
 * file, which cannot be undone). */
static int place(unpacker *u) {
  for (size_t i = 0; i < u->n; i++) {
    bentry *b = &u->ents[i];
    if (b->kind != K_STREAM) continue;
    if (renameat2(u->tmpfd, b->tmp, u->dirfd, b->name, u->o->force ? 0 : RENAME_NOREPLACE)) {
      int err = errno;
      for (size_t k = 0; k < i; k++)
        if (u->ents[k].placed) renameat2(u->dirfd, u->ents[k].name, u->tmpfd, u->ents[k].tmp, RENAME_NOREPLACE);
      if (err == EEXIST) return mpu_fail(u->e, MPU_EUSAGE, "%s/%s already exists; remove it or use --force", u->o->dir, b->name);
      return mpu_fail(u->e, MPU_EUSAGE, "%s/%s: cannot put it in place: %s", u->o->dir, b->name, strerror(err));
    }
    b->placed = 1;
  }
  return 0;
}

static int open_target(unpacker *u) {
  const char *dir = u->o->dir;
  struct stat st;
  if (stat(dir, &st) != 0) {
    if (errno != ENOENT || mkdir(dir, 0777)) return mpu_fail(u->e, MPU_EUSAGE, "%s: %s", dir, strerror(errno));
    u->made_dir = 1;
  } else if (!S_ISDIR(st.st_mode)) {
    return mpu_fail(u->e, MPU_EUSAGE, "%s: not a directory", dir);
  }
  u->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (u->dirfd < 0) return mpu_fail(u->e, MPU_EUSAGE, "%s: %s", dir, strerror(errno));
  size_t n = strlen(dir) + 32;
  u->tmppath = malloc(n);
  if (!u->tmppath) return mpu_fail(u->e, MPU_EUSAGE, "out of memory");
  snprintf(u->tmppath, n, "%s/.mpu-unpack.XXXXXX", dir);
  if (!mkdtemp(u->tmppath)) {
    int err = errno;
    free(u->tmppath);
    u->tmppath = NULL;
    return mpu_fail(u->e, MPU_EUSAGE, "%s: cannot make a private directory: %s", dir, strerror(err));
  }
  cli_cleanup_register(u->tmppath);
  u->tmpfd = open(u->tmppath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (u->tmpfd < 0) return mpu_fail(u->e, MPU_EUSAGE, "%s: %s", u->tmppath, strerror(errno));
  return 0;
}

int bundle_read(int fd, const char *name, const bundle_read_options *o, bundle_result *r, mpu_err *e) {
  memset(r, 0, sizeof *r);
  unpacker u = {.o = o, .bname = name, .e = e, .dirfd = -1, .tmpfd = -1};
  int rc = o->dir ? open_target(&u) : 0;
  struct archive *a = rc ? NULL : archive_read_new();
  if (!rc && !a) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  /* A tar, bare or in zstd: nothing else is a bundle. */
  if (!rc && (archive_read_support_filter_zstd(a) != ARCHIVE_OK || archive_read_support_format_tar(a) != ARCHIVE_OK))
    rc = mpu_fail(e, MPU_EUSAGE, "setting up the tar reader: %s", archive_error_string(a));
  if (!rc && archive_read_open_fd(a, fd, 1 << 20) != ARCHIVE_OK)
    rc = bad(&u, NULL, "is not a bundle (a tar, or a tar in zstd): %s", archive_error_string(a) ?: "?");
  while (!rc) {
    struct archive_entry *ae;
    int h = archive_read_next_header(a, &ae);
    if (h == ARCHIVE_EOF) break;
    const char *last = u.n ? u.ents[u.n - 1].name : NULL;
    if (h != ARCHIVE_OK) {
      if (last) rc = bad(&u, NULL, "is damaged or truncated after entry '%s': %s", last, archive_error_string(a) ?: "?");
      else rc = bad(&u, NULL, "is not a bundle (a tar, or a tar in zstd): %s", archive_error_string(a) ?: "?");
      break;
    }
    if (u.n == u.cap) {
      size_t cap = u.cap ? 2 * u.cap : 16;
      bentry *p = realloc(u.ents, cap * sizeof *p);
      if (!p) {
        rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
        break;
      }
      u.ents = p;
      u.cap = cap;
    }
    bentry *b = &u.ents[u.n];
    memset(b, 0, sizeof *b);
    if ((rc = admit(&u, ae, b))) {
      free(b->name);
      break;
    }
    u.n++;
    rc = take(&u, a, b);
  }
  if (a) archive_read_free(a);
  if (!rc) rc = check_manifest(&u, r);
  if (!rc) rc = check_signatures(&u, r);
  if (!rc && o->dir) rc = check_streams(&u, r);
  if (!rc && o->dir) rc = place(&u);

  /* The private directory goes, whatever happened; so does a target we
   * made, if nothing was placed in it. */
  if (u.tmppath) {
    cli_remove_tree(u.tmppath);
    cli_cleanup_unregister(u.tmppath);
    free(u.tmppath);
  }
  if (u.tmpfd >= 0) close(u.tmpfd);
  if (u.dirfd >= 0) close(u.dirfd);
  if (rc && u.made_dir) rmdir(o->dir);
  for (size_t i = 0; i < u.n; i++) free(u.ents[i].name);
  free(u.ents);
  free(u.manifest);
  free(u.sig);
  return rc;
}

void bundle_result_free(bundle_result *r) {
  json_decref(r->manifest);
  json_decref(r->signers);
  memset(r, 0, sizeof *r);
}
