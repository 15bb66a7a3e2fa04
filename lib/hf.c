/*
 * hf.c -- Hugging Face checkpoints in and out of .mpuc streams.
 */
#include "hf.h"

#include <ctype.h>
#include <dirent.h>
#include <ftw.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "cli.h"
#include "jsonx.h"
#include "prov.h"

#define PIECE (4u << 20)
#define INDEX_NAME "model.safetensors.index.json"
#define MAX_BLOB (1ull << 30)

int natural_cmp(const char *a, const char *b) {
  while (*a && *b) {
    if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
      while (*a == '0' && isdigit((unsigned char)a[1])) a++;
      while (*b == '0' && isdigit((unsigned char)b[1])) b++;
      size_t la = 0, lb = 0;
      while (isdigit((unsigned char)a[la])) la++;
      while (isdigit((unsigned char)b[lb])) lb++;
      if (la != lb) return la < lb ? -1 : 1;
      int c = strncmp(a, b, la);
      if (c) return c;
      a += la;
      b += lb;
    } else {
      if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
      a++;
      b++;
    }
  }
  return (unsigned char)*a - (unsigned char)*b;
}

static int has_suffix(const char *s, const char *suf) {
  size_t n = strlen(s), k = strlen(suf);
  return n >= k && !strcmp(s + n - k, suf);
}

static char *path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static void note(hf_source *s, const char *fmt, const char *arg) {
  char buf[600];
  snprintf(buf, sizeof buf, fmt, arg);
  char **n = realloc(s->notes, (s->nnotes + 1) * sizeof *n);
  if (!n) return;
  s->notes = n;
  s->notes[s->nnotes++] = strdup(buf);
}

static int add_shard(hf_source *s, const char *path, int fd, mpu_err *e) {
  st_file *n = realloc(s->shards, (s->nshards + 1) * sizeof *n);
  if (!n) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  s->shards = n;
  s->nshards++;
  return st_open(&s->shards[s->nshards - 1], path, fd, e);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Weight formats mpu does not read; carried neither as weights nor blobs. */
static int other_weights(const char *name) {
  static const char *const ext[] = {".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx", ".ot",
                                    ".safetensors"};
  for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
    if (has_suffix(name, ext[i])) return 1;
  return 0;
}

static int open_index(hf_source *s, const char *index_path, const char *dir, mpu_err *e) {
  json_t *idx;
  if (json_load_object(index_path, &idx, e)) return e->status;
  json_t *map = json_object_get(idx, "weight_map");
  if (!json_is_object(map)) {
    json_decref(idx);
    return mpu_fail(e, MPU_EVERIFY, "%s: no weight_map object", index_path);
  }
  /* The distinct shard files, in name order. */
  size_t n = 0, cap = 16;
  char **files = malloc(cap * sizeof *files);
  const char *key;
  json_t *v;
  json_object_foreach(map, key, v) {
    const char *f = json_string_value(v);
    if (!f || !*f || strchr(f, '/') || !strcmp(f, "..") || !strcmp(f, ".")) {
      json_decref(idx);
      free(files);
      return mpu_fail(e, MPU_EVERIFY, "%s: tensor '%s' maps to a bad file name", index_path, key);
    }
    size_t k;
    for (k = 0; k < n && strcmp(files[k], f); k++) {}
    if (k == n) {
      if (n == cap) files = realloc(files, (cap *= 2) * sizeof *files);
      files[n++] = (char *)f;
    }
  }
  qsort(files, n, sizeof *files, cmp_str);
  int rc = 0;
  for (size_t k = 0; k < n && !rc; k++) {
    char *p = path_join(dir, files[k]);
    rc = add_shard(s, p, -1, e);
    free(p);
  }
  /* Every tensor of every shard is in the map under that shard, and back. */
  size_t listed = json_object_size(map), found = 0;
  for (size_t k = 0; k < s->nshards && !rc; k++) {
    st_file *f = &s->shards[k];
    for (size_t i = 0; i < f->n && !rc; i++) {
      const char *want = json_string_value(json_object_get(map, f->t[i].name));
      if (!want || strcmp(want, files[k]))
        rc = mpu_fail(e, MPU_EVERIFY, "%s: tensor '%s' is in %s but the index %s", index_path, f->t[i].name,
                      files[k], want ? "places it elsewhere" : "does not list it");
      found++;
    }
  }
  if (!rc && found != listed)
    rc = mpu_fail(e, MPU_EVERIFY, "%s: the index lists %zu tensors but the shards hold %zu", index_path, listed, found);
  free(files);
  json_decref(idx);
  return rc;
}

static int in_index(const hf_source *s, const char *path) {
  for (size_t k = 0; k < s->nshards; k++)
    if (!strcmp(s->shards[k].path, path)) return 1;
  return 0;
}

static int scan_dir(hf_source *s, const char *dir, mpu_err *e) {
  DIR *d = opendir(dir);
  if (!d) return mpu_fail(e, MPU_EUSAGE, "%s: %s", dir, strerror(errno));
  size_t n = 0, cap = 32;
  char **names = malloc(cap * sizeof *names);
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    if (n == cap) names = realloc(names, (cap *= 2) * sizeof *names);
    names[n++] = strdup(de->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof *names, cmp_str);
  int rc = 0, have_index = 0, nweights = 0;
  for (size_t i = 0; i < n; i++) {
    if (!strcmp(names[i], INDEX_NAME)) have_index = 1;
    if (has_suffix(names[i], ".safetensors")) nweights++;
  }
  if (have_index) {
    char *ip = path_join(dir, INDEX_NAME);
    rc = open_index(s, ip, dir, e);
    free(ip);
  } else if (nweights) {
    for (size_t i = 0; i < n && !rc; i++)
      if (has_suffix(names[i], ".safetensors")) {
        char *p = path_join(dir, names[i]);
        rc = add_shard(s, p, -1, e);
        free(p);
      }
  } else {
    int pt = 0;
    for (size_t i = 0; i < n; i++) pt |= has_suffix(names[i], ".bin") || has_suffix(names[i], ".pt");
    rc = mpu_fail(e, MPU_EUSAGE, "%s: no .safetensors weights%s", dir,
                  pt ? " (only PyTorch .bin/.pt files: save the model with safe_serialization=True)" : "");
  }
  for (size_t i = 0; i < n && !rc; i++) {
    char *p = path_join(dir, names[i]);
    struct stat st;
    if (stat(p, &st)) {
      free(p);
      continue;
    }
    if (!strcmp(names[i], "config.json")) {
      rc = json_load_object(p, &s->config, e);
    } else if (has_suffix(names[i], ".safetensors") && have_index && !in_index(s, p)) {
      note(s, "skipped %s (not listed in " INDEX_NAME ")", names[i]);
    } else if (!strcmp(names[i], INDEX_NAME) || has_suffix(names[i], ".safetensors")) {
      /* weights, read above */
    } else if (S_ISDIR(st.st_mode)) {
      note(s, "skipped the subdirectory %s/", names[i]);
    } else if (!S_ISREG(st.st_mode)) {
      note(s, "skipped %s (not a regular file)", names[i]);
    } else if (other_weights(names[i])) {
      note(s, "skipped %s (a weight format mpu does not read)", names[i]);
    } else if ((uint64_t)st.st_size > MAX_BLOB) {
      note(s, "skipped %s (larger than 1 GiB)", names[i]);
    } else {
      hf_blob *b = realloc(s->blobs, (s->nblobs + 1) * sizeof *b);
      if (!b) {
        rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
      } else {
        s->blobs = b;
        b[s->nblobs++] = (hf_blob){strdup(names[i]), strdup(p), (uint64_t)st.st_size};
      }
    }
    free(p);
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return rc;
}

static const hf_source *order_src;
static int cmp_ref(const void *a, const void *b) {
  const hf_ref *x = a, *y = b;
  return natural_cmp(order_src->shards[x->shard].t[x->idx].name, order_src->shards[y->shard].t[y->idx].name);
}

const st_tensor *hf_tensor(const hf_source *s, size_t i) {
  return &s->shards[s->order[i].shard].t[s->order[i].idx];
}

int hf_source_open(hf_source *s, const char *path, const char *config_path, mpu_err *e) {
  memset(s, 0, sizeof *s);
  int rc;
  int piped = !strcmp(path, "-");
  struct stat st;
  if (piped) {
    if (isatty(0)) return mpu_fail(e, MPU_EUSAGE, "standard input is a terminal; give a checkpoint or pipe one in");
    rc = add_shard(s, "(stdin)", 0, e);
  } else if (stat(path, &st)) {
    return mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  } else if (S_ISDIR(st.st_mode)) {
    rc = scan_dir(s, path, e);
  } else if (has_suffix(path, ".index.json")) {
    char *dir = strdup(path), *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else strcpy(dir, ".");
    rc = open_index(s, path, dir, e);
    char *cp = path_join(dir, "config.json");
    if (!rc && !config_path && access(cp, R_OK) == 0) rc = json_load_object(cp, &s->config, e);
    free(cp);
    free(dir);
  } else {
    rc = add_shard(s, path, -1, e);
  }
  if (rc) return rc;
  if (config_path) {
    if (s->config) json_decref(s->config);
    s->config = NULL;
    if (json_load_object(config_path, &s->config, e)) return e->status;
  }
  for (size_t k = 0; k < s->nshards; k++) s->ntensors += s->shards[k].n;
  s->order = malloc((s->ntensors + 1) * sizeof *s->order);
  if (!s->order) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  size_t i = 0;
  for (size_t k = 0; k < s->nshards; k++)
    for (size_t t = 0; t < s->shards[k].n; t++) s->order[i++] = (hf_ref){(int)k, t};
  if (!piped) { /* a pipe must be read in file order */
    order_src = s;
    qsort(s->order, s->ntensors, sizeof *s->order, cmp_ref);
  }
  for (i = 1; i < s->ntensors; i++)
    if (!strcmp(hf_tensor(s, i)->name, hf_tensor(s, i - 1)->name))
      return mpu_fail(e, MPU_EVERIFY, "tensor '%s' appears in two shards", hf_tensor(s, i)->name);
  if (s->nshards && s->shards[0].metadata) s->metadata = json_incref(s->shards[0].metadata);
  return 0;
}

void hf_source_close(hf_source *s) {
  for (size_t k = 0; k < s->nshards; k++) st_close(&s->shards[k]);
  free(s->shards);
  for (size_t i = 0; i < s->nblobs; i++) {
    free(s->blobs[i].name);
    free(s->blobs[i].path);
  }
  free(s->blobs);
  free(s->order);
  for (size_t i = 0; i < s->nnotes; i++) free(s->notes[i]);
  free(s->notes);
  if (s->config) json_decref(s->config);
  if (s->metadata) json_decref(s->metadata);
  memset(s, 0, sizeof *s);
}

/* XXH3-128 of a whole file (through a mapping, so an open stdin works too),
 * for the import's record of its sources. */
static int fd_digest(int fd, const char *name, char hex[33], uint64_t *size, mpu_err *e) {
  struct stat st;
  if (fstat(fd, &st)) return mpu_fail(e, MPU_EUSAGE, "%s: %s", name, strerror(errno));
  XXH3_state_t *h = XXH3_createState();
  XXH3_128bits_reset(h);
  file_window w = {fd, NULL, 0};
  int rc = 0;
  for (uint64_t off = 0; off < (uint64_t)st.st_size; off += FILE_WINDOW) {
    size_t n = (uint64_t)st.st_size - off < FILE_WINDOW ? (size_t)((uint64_t)st.st_size - off) : FILE_WINDOW;
    const uint8_t *p = file_window_map(&w, off, n);
    if (!p) {
      rc = mpu_fail(e, MPU_EUSAGE, "%s: cannot map: %s", name, strerror(errno));
      break;
    }
    XXH3_128bits_update(h, p, n);
  }
  file_window_close(&w);
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h));
  XXH3_freeState(h);
  *size = (uint64_t)st.st_size;
  mpuc_hex128(c.digest, hex);
  return rc;
}

static int file_digest(const char *path, char hex[33], uint64_t *size, mpu_err *e) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  int rc = fd_digest(fd, path, hex, size, e);
  close(fd);
  return rc;
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

int hf_import(hf_source *s, ms_writer *w, const char *out_path, const stream_options *o, json_t *params, int progress,
              mpu_err *e) {
  memset(w, 0, sizeof *w);
  w->out.fd = -1;
  uint8_t *buf = malloc(PIECE);
  if (!buf) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  /* The sources' digests go into the header, so the stream's id names
   * exactly the bytes it was made from. */
  json_t *sources = json_array();
  uint64_t total = 0;
  int rc = 0;
  for (size_t k = 0; k < s->nshards && !rc; k++) {
    st_file *f = &s->shards[k];
    char hex[33];
    uint64_t size;
    if (f->seekable) {
      rc = fd_digest(f->fd, f->path, hex, &size, e);
      json_array_append_new(sources, json_pack("{s:s, s:I, s:{s:s}}", "file", f->fd == 0 ? "-" : base_name(f->path),
                                               "bytes", (json_int_t)size, "digest", "xxh3_128", hex));
    } else {
      json_array_append_new(sources, json_pack("{s:s}", "file", "-"));
    }
    total += f->data_size;
  }
  for (size_t i = 0; i < s->nblobs && !rc; i++) {
    char hex[33];
    uint64_t size;
    rc = file_digest(s->blobs[i].path, hex, &size, e);
    if (!rc && size != s->blobs[i].size) rc = mpu_fail(e, MPU_EUSAGE, "%s changed while being read", s->blobs[i].path);
    json_array_append_new(sources, json_pack("{s:s, s:I, s:{s:s}}", "file", s->blobs[i].name, "bytes",
                                             (json_int_t)size, "digest", "xxh3_128", hex));
  }
  if (rc) {
    json_decref(sources);
    free(buf);
    return rc;
  }
  if (!params) params = json_object();
  json_object_set_new(params, "sources", sources);
  json_t *h = prov_header("import", params);
  json_object_set(h, "config", s->config ? s->config : json_null());
  if (s->metadata) json_object_set(h, "metadata", s->metadata);
  json_t *blobs = json_object_get(h, "blobs"), *tensors = json_object_get(h, "tensors");
  for (size_t i = 0; i < s->nblobs; i++)
    json_array_append_new(blobs, json_pack("{s:s, s:I}", "name", s->blobs[i].name, "bytes", (json_int_t)s->blobs[i].size));
  for (size_t i = 0; i < s->ntensors; i++) {
    const st_tensor *t = hf_tensor(s, i);
    json_t *shape = json_array();
    for (unsigned d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer((json_int_t)t->dims[d]));
    json_array_append_new(tensors, json_pack("{s:s, s:s, s:o}", "name", t->name, "dtype", mpuc_dtype_name(t->dtype),
                                             "shape", shape));
  }
  char *hj = json_canonical(h);
  json_decref(h);
  if (!hj) {
    free(buf);
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  rc = ms_writer_open(w, out_path, o, hj, e);
  free(hj);
  cli_progress pg;
  cli_progress_start(&pg, progress, "importing", total);
  uint64_t done = 0;
  for (size_t i = 0; i < s->nblobs && !rc; i++) {
    mpuc_entry en = {.name = s->blobs[i].name, .name_len = strlen(s->blobs[i].name), .kind = MPUC_KIND_BLOB,
                     .raw_size = s->blobs[i].size};
    int fd = open(s->blobs[i].path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", s->blobs[i].path, strerror(errno));
      break;
    }
    rc = ms_write_begin(w, &en, e);
    uint64_t left = s->blobs[i].size;
    while (!rc && left) {
      long long n = read_full(fd, buf, left < PIECE ? (size_t)left : PIECE);
      if (n <= 0) rc = mpu_fail(e, MPU_EUSAGE, "%s: changed while being read", s->blobs[i].path);
      else {
        rc = ms_write_data(w, buf, (size_t)n, e);
        left -= (uint64_t)n;
      }
    }
    close(fd);
    if (!rc) rc = ms_write_end(w, e);
  }
  for (size_t i = 0; i < s->ntensors && !rc; i++) {
    hf_ref ref = s->order[i];
    st_file *f = &s->shards[ref.shard];
    const st_tensor *t = &f->t[ref.idx];
    mpuc_entry en = {.name = t->name, .name_len = strlen(t->name), .kind = MPUC_KIND_TENSOR, .dtype = t->dtype,
                     .ndim = t->ndim};
    memcpy(en.dims, t->dims, sizeof en.dims);
    rc = ms_write_begin(w, &en, e);
    file_window win = {f->fd, NULL, 0};
    for (uint64_t off = 0; !rc && off < t->end - t->begin;) {
      /* a file is read through a mapping (no copy); a pipe through buf */
      size_t piece = f->seekable ? FILE_WINDOW : PIECE;
      size_t n = t->end - t->begin - off < piece ? (size_t)(t->end - t->begin - off) : piece;
      const uint8_t *p = buf;
      if (f->seekable) {
        p = file_window_map(&win, f->data_start + t->begin + off, n);
        if (!p) rc = mpu_fail(e, MPU_EUSAGE, "%s: cannot map: %s", f->path, strerror(errno));
      } else {
        rc = st_read(f, ref.idx, off, buf, n, e);
      }
      if (!rc) rc = ms_write_data(w, p, n, e);
      off += n;
      done += n;
      cli_progress_update(&pg, done);
    }
    file_window_close(&win);
    if (!rc) rc = ms_write_end(w, e);
  }
  cli_progress_end(&pg);
  free(buf);
  if (!rc) rc = ms_writer_close(w, NULL, e);
  return rc;
}

/* ---------------------------------------------------------------- export */
typedef struct {
  st_tensor *t;       /* this shard's tensors, offsets assigned */
  size_t n;
  char *file;
  int fd;
  uint64_t data_start;
} out_shard;

typedef struct {
  int shard;
  size_t idx;
} out_ref;

/* A blob name must stay inside the output directory and not clash with the
 * files export itself writes. */
static int blob_name_ok(const char *n) {
  if (!*n || !strcmp(n, ".") || !strcmp(n, "..") || strchr(n, '/') || n[0] == '.') return 0;
  return strcmp(n, "config.json") && strcmp(n, INDEX_NAME) && !has_suffix(n, ".safetensors");
}

static int pwrite_all(int fd, const void *p, size_t n, uint64_t off) {
  const char *c = p;
  while (n) {
    ssize_t w = pwrite(fd, c, n, (off_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    c += w;
    n -= (size_t)w;
    off += (uint64_t)w;
  }
  return 0;
}

static int remove_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  return flag == FTW_DP ? rmdir(p) : unlink(p);
}

/* Removes a file or a whole directory tree (never following links). */
static void remove_tree(const char *path) { nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS); }

static int write_text_file(const char *dir, const char *name, const char *text, mpu_err *e) {
  char *p = path_join(dir, name);
  int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  int rc = fd < 0 || write_all(fd, text, strlen(text)) ? mpu_fail(e, MPU_EUSAGE, "%s: %s", p, strerror(errno)) : 0;
  if (fd >= 0 && close(fd) && !rc) rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", p, strerror(errno));
  free(p);
  return rc;
}

int hf_export(ms_reader *in, const char *out, hf_export_options *o, mpu_err *e) {
  json_t *h = in->header;
  long copies = (long)json_integer_value(json_object_get(h, "copies"));
  if (copies > 1 && o->copy == 0)
    return mpu_fail(e, MPU_EUSAGE, "%s holds %ld copies; choose one with --copy K (1..%ld)",
                    in->name, copies, copies);
  if (o->copy > copies)
    return mpu_fail(e, MPU_EUSAGE, "--copy %ld: %s holds %ld cop%s", o->copy, in->name, copies, copies == 1 ? "y" : "ies");
  int single = has_suffix(out, ".safetensors");
  json_t *listing = json_object_get(h, "tensors");
  size_t nt = json_array_size(listing);
  uint64_t shard_size = o->shard_size ? o->shard_size : 5000000000ull;

  /* Plan shards greedily in stream order, as transformers does. */
  out_ref *where = calloc(nt + 1, sizeof *where);
  out_shard *shards = calloc(nt + 1, sizeof *shards);
  size_t ns = 0;
  uint64_t in_shard = 0, total = 0;
  int rc = where && shards ? 0 : mpu_fail(e, MPU_EUSAGE, "out of memory");
  for (size_t i = 0; i < nt && !rc; i++) {
    json_t *t = json_array_get(listing, i), *shape = json_object_get(t, "shape");
    st_tensor st = {0};
    st.name = strdup(json_string_value(json_object_get(t, "name")));
    st.dtype = mpuc_dtype_from_name(json_string_value(json_object_get(t, "dtype")));
    st.ndim = (unsigned)json_array_size(shape);
    for (unsigned d = 0; d < st.ndim; d++) st.dims[d] = (uint64_t)json_integer_value(json_array_get(shape, d));
    uint64_t bytes = 0;
    mpuc_tensor_bytes(st.dtype, st.ndim, st.dims, &bytes);
    if (ns == 0 || (!single && in_shard && in_shard + bytes > shard_size)) {
      ns++;
      in_shard = 0;
      shards[ns - 1].t = calloc(nt, sizeof(st_tensor));
    }
    out_shard *sh = &shards[ns - 1];
    st.end = bytes; /* size for now; offsets below */
    sh->t[sh->n] = st;
    where[i] = (out_ref){(int)ns - 1, sh->n++};
    in_shard += bytes;
    total += bytes;
  }
  if (!rc && ns == 0) ns = 1, shards[0].t = calloc(1, sizeof(st_tensor));

  /* Output: a temporary directory renamed into place, or a temporary file. */
  char *tmpdir = NULL;
  cli_output file_out = {0};
  file_out.fd = -1;
  struct stat st;
  if (!rc && !single && !o->force && lstat(out, &st) == 0)
    rc = mpu_fail(e, MPU_EUSAGE, "%s already exists; remove it or use --force", out);
  if (!rc && single) {
    rc = cli_output_open(&file_out, out, o->force, e);
  } else if (!rc) {
    size_t n = strlen(out) + 16;
    tmpdir = malloc(n);
    snprintf(tmpdir, n, "%s.tmp.XXXXXX", out);
    if (!mkdtemp(tmpdir)) {
      rc = mpu_fail(e, MPU_EUSAGE, "%s: cannot create: %s", out, strerror(errno));
      free(tmpdir);
      tmpdir = NULL;
    } else {
      mode_t um = umask(0);
      umask(um);
      chmod(tmpdir, 0777 & ~um);
      cli_cleanup_register(tmpdir);
    }
  }
  /* Headers first: each shard laid out the way Hugging Face lays it out. */
  json_t *weight_map = json_object();
  for (size_t k = 0; k < ns && !rc; k++) {
    out_shard *sh = &shards[k];
    size_t *perm = malloc((sh->n + 1) * sizeof *perm);
    st_sort_like_hf(sh->t, sh->n, perm);
    uint64_t at = 0;
    for (size_t j = 0; j < sh->n; j++) {
      st_tensor *t = &sh->t[perm[j]];
      uint64_t bytes = t->end;
      t->begin = at;
      t->end = at + bytes;
      at += bytes;
    }
    st_tensor *sorted = malloc((sh->n + 1) * sizeof *sorted);
    for (size_t j = 0; j < sh->n; j++) sorted[j] = sh->t[perm[j]];
    size_t hlen;
    uint8_t *hdr = st_header_build(sorted, sh->n, json_object_get(h, "metadata"), &hlen, e);
    free(sorted);
    free(perm);
    if (!hdr) {
      rc = e->status;
      break;
    }
    sh->data_start = hlen;
    char name[64];
    if (single) {
      sh->fd = file_out.fd;
    } else {
      if (ns == 1) snprintf(name, sizeof name, "model.safetensors");
      else snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, ns);
      sh->file = strdup(name);
      char *p = path_join(tmpdir, name);
      sh->fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (sh->fd < 0) rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", p, strerror(errno));
      free(p);
      for (size_t j = 0; j < sh->n; j++) json_object_set_new(weight_map, sh->t[j].name, json_string(name));
    }
    if (!rc && pwrite_all(sh->fd, hdr, hlen, 0)) rc = mpu_fail(e, MPU_EUSAGE, "%s: write failed: %s", out, strerror(errno));
    if (!rc && ftruncate(sh->fd, (off_t)(hlen + at))) rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", out, strerror(errno));
    free(hdr);
  }
  json_t *config = json_object_get(h, "config");
  if (!rc && !single && json_is_object(config)) {
    char *txt = json_pretty(config);
    rc = txt ? write_text_file(tmpdir, "config.json", txt, e) : mpu_fail(e, MPU_EUSAGE, "out of memory");
    free(txt);
  }

  /* Then the data, as the stream delivers it; every byte is verified before
   * the output is put in place. */
  uint8_t *buf = malloc(PIECE);
  size_t cur = (size_t)-1;
  const char *cur_name = NULL;
  cli_progress pg;
  cli_progress_start(&pg, o->progress, "exporting", total);
  uint64_t done = 0;
  int skipped_blobs = 0;
  const mpuc_entry *en;
  int more;
  while (!rc && (more = ms_next_entry(in, &en, e)) == 1) {
    char name[MPUC_MAX_NAME + 1];
    ms_entry_name(en, name, sizeof name);
    if (en->kind == MPUC_KIND_BLOB) {
      if (single) {
        skipped_blobs++;
        continue;
      }
      if (!blob_name_ok(name)) {
        rc = mpu_fail(e, MPU_EVERIFY, "%s: blob name '%s' is not a safe file name", in->name, name);
        break;
      }
      char *p = path_join(tmpdir, name);
      int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd < 0) rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", p, strerror(errno));
      free(p);
      size_t got;
      while (!rc && !(rc = ms_read(in, buf, PIECE, &got, e)) && got)
        if (write_all(fd, buf, got)) rc = mpu_fail(e, MPU_EUSAGE, "writing blob %s: %s", name, strerror(errno));
      if (fd >= 0) close(fd);
      continue;
    }
    if (!cur_name || strcmp(cur_name, name)) cur_name = json_string_value(json_object_get(json_array_get(listing, ++cur), "name"));
    if (en->copy != MPUC_COPY_SHARED && copies > 1 && (long)en->copy != o->copy - 1) continue;
    out_shard *sh = &shards[where[cur].shard];
    st_tensor *t = &sh->t[where[cur].idx];
    uint64_t off = sh->data_start + t->begin;
    size_t got;
    while (!rc && !(rc = ms_read(in, buf, PIECE, &got, e)) && got) {
      if (pwrite_all(sh->fd, buf, got, off)) rc = mpu_fail(e, MPU_EUSAGE, "writing %s: %s", out, strerror(errno));
      off += got;
      done += got;
      cli_progress_update(&pg, done);
    }
  }
  cli_progress_end(&pg);
  free(buf);
  if (!rc) rc = e->status; /* an error between entries ends the loop too */
  if (!rc && !single && ns > 1) {
    json_t *index = json_pack("{s:{s:I}, s:O}", "metadata", "total_size", (json_int_t)total, "weight_map", weight_map);
    char *txt = json_pretty(index);
    json_decref(index);
    rc = txt ? write_text_file(tmpdir, INDEX_NAME, txt, e) : mpu_fail(e, MPU_EUSAGE, "out of memory");
    free(txt);
  }
  json_decref(weight_map);
  for (size_t k = 0; k < ns; k++) {
    if (!single && shards[k].fd > 0 && close(shards[k].fd) && !rc)
      rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", out, strerror(errno));
    for (size_t j = 0; j < shards[k].n; j++) free(shards[k].t[j].name);
    free(shards[k].t);
    free(shards[k].file);
  }
  free(shards);
  free(where);
  if (single) {
    if (!rc) rc = cli_output_commit(&file_out, e);
    else cli_output_abort(&file_out);
    o->dropped_blobs = skipped_blobs;
    o->dropped_config = json_is_object(config);
    return rc;
  }
  if (!tmpdir) return rc;
  if (!rc) {
    /* Put the directory in place; an old one (with --force) goes only after. */
    char *old = NULL;
    if (lstat(out, &st) == 0) {
      /* Move the old one aside under a fresh name, put the new one in place,
       * and only then delete the old one. */
      size_t n = strlen(out) + 16;
      old = malloc(n);
      snprintf(old, n, "%s.old.XXXXXX", out);
      /* a placeholder of the same kind, so rename(2) may replace it */
      int made = S_ISDIR(st.st_mode) ? (mkdtemp(old) ? 0 : -1) : mkstemp(old);
      if (made > 0) close(made);
      if (made < 0 || rename(out, old)) {
        if (made >= 0) remove(old);
        rc = mpu_fail(e, MPU_EUSAGE, "%s: cannot replace: %s", out, strerror(errno));
        free(old);
        old = NULL;
      }
    }
    if (!rc && rename(tmpdir, out)) rc = mpu_fail(e, MPU_EUSAGE, "%s: cannot rename into place: %s", out, strerror(errno));
    if (old) {
      if (!rc) remove_tree(old);
      else rename(old, out);
      free(old);
    }
  }
  if (rc) remove_tree(tmpdir);
  cli_cleanup_unregister(tmpdir);
  free(tmpdir);
  return rc;
}
