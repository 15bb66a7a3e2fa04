/*
 * safetensors.c -- .safetensors reading (validated like the reference
 * implementation) and header building.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static int cmp_begin(const void *a, const void *b) {
  const st_tensor *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

void st_close(st_file *f) {
  for (size_t i = 0; i < f->n; i++) free(f->t[i].name);
  free(f->t);
  free(f->path);
  if (f->metadata) json_decref(f->metadata);
  if (f->fd > 0) close(f->fd);
  memset(f, 0, sizeof *f);
  f->fd = -1;
}

static int parse_tensor(st_tensor *t, const char *name, json_t *v, const char *path, mpu_err *e) {
  json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
  json_t *offs = json_object_get(v, "data_offsets");
  if (!json_is_object(v) || !json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offs) ||
      json_array_size(offs) != 2)
    return mpu_fail(e, MPU_EVERIFY, "%s: tensor '%s' needs dtype, shape and data_offsets", path, name);
  t->dtype = mpuc_dtype_from_name(json_string_value(dtype));
  if (!t->dtype)
    return mpu_fail(e, MPU_EVERIFY, "%s: tensor '%s' has unknown dtype '%s'", path, name, json_string_value(dtype));
  t->ndim = (unsigned)json_array_size(shape);
  if (t->ndim > MPUC_MAX_NDIM)
    return mpu_fail(e, MPU_EVERIFY, "%s: tensor '%s' has %u dimensions (mpu handles up to %d)", path, name,
                    t->ndim, MPUC_MAX_NDIM);
  for (unsigned d = 0; d < t->ndim; d++) {
    json_t *x = json_array_get(shape, d);
    if (!json_is_integer(x) || json_integer_value(x) < 0)
      return mpu_fail(e, MPU_EVERIFY, "%s: tensor '%s' has a bad shape", path, name);
    t->dims[d] = (uint64_t)json_integer_value(x);
  }
  json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
  if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
      json_integer_value(en) < json_integer_value(b))
    return mpu_fail(e, MPU_EVERIFY, "%s: tensor '%s' has bad data_offsets", path, name);
  t->begin = (uint64_t)json_integer_value(b);
  t->end = (uint64_t)json_integer_value(en);
  uint64_t bytes;
  if (mpuc_tensor_bytes(t->dtype, t->ndim, t->dims, &bytes))
    return mpu_fail(e, MPU_EVERIFY, "%s: tensor '%s' is too large or not a whole number of bytes", path, name);
  if (bytes != t->end - t->begin)
    return mpu_fail(e, MPU_EVERIFY, "%s: tensor '%s' spans %llu bytes but its dtype and shape need %llu", path,
                    name, (unsigned long long)(t->end - t->begin), (unsigned long long)bytes);
  t->name = strdup(name);
  return t->name ? 0 : mpu_fail(e, MPU_EUSAGE, "out of memory");
}

/* Explains a file that does not even start like safetensors. */
static int not_safetensors(const char *path, const uint8_t *head, size_t n, mpu_err *e) {
  const char *what = mpuc_sniff(head, n);
  if (!what) what = "an .mpuc stream (it is already converted)";
  if (strstr(what, "safetensors")) what = "a damaged safetensors file";
  return mpu_fail(e, MPU_EVERIFY, "%s: not a safetensors file: it looks like %s", path, what);
}

int st_open(st_file *f, const char *path, int fd, mpu_err *e) {
  memset(f, 0, sizeof *f);
  f->path = strdup(path);
  f->fd = fd >= 0 ? fd : open(path, O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) return mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(f->fd, &st)) return mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode)) return mpu_fail(e, MPU_EUSAGE, "%s: is a directory", path);
  f->seekable = S_ISREG(st.st_mode);
  uint8_t head[64];
  long long got = read_full(f->fd, head, 8);
  if (got < 0) return mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  if (got < 8) {
    if (got == 0) return mpu_fail(e, MPU_EVERIFY, "%s: empty file", path);
    return not_safetensors(path, head, (size_t)got, e);
  }
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n |= (uint64_t)head[i] << (8 * i);
  uint64_t fsize = (uint64_t)st.st_size;
  if (n == 0 || n > ST_MAX_HEADER || (f->seekable && n > fsize - 8)) {
    long long more = read_full(f->fd, head + 8, sizeof head - 8);
    size_t have = 8 + (more > 0 ? (size_t)more : 0);
    if (have > 8 && head[8] == '{' && n <= ST_MAX_HEADER)
      return mpu_fail(e, MPU_EVERIFY, "%s: header length %llu runs past the end of the file (%llu bytes): truncated?",
                      path, (unsigned long long)n, (unsigned long long)fsize);
    return not_safetensors(path, head, have, e);
  }
  char *json = malloc(n + 1);
  if (!json) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  got = read_full(f->fd, json, n);
  if (got != (long long)n) {
    free(json);
    return mpu_fail(e, MPU_EVERIFY, "%s: the file ends inside its %llu-byte header", path, (unsigned long long)n);
  }
  json[n] = 0;
  if (json[0] != '{') {
    memcpy(head + 8, json, n < sizeof head - 8 ? n : sizeof head - 8);
    free(json);
    return not_safetensors(path, head, 8 + (n < sizeof head - 8 ? n : sizeof head - 8), e);
  }
  json_error_t jerr;
  json_t *h = json_loadb(json, n, JSON_REJECT_DUPLICATES, &jerr);
  free(json);
  if (!json_is_object(h)) {
    json_decref(h);
    return mpu_fail(e, MPU_EVERIFY, "%s: bad JSON header: %s (column %d)", path, jerr.text, jerr.column);
  }
  f->data_start = 8 + n;
  f->t = calloc(json_object_size(h) + 1, sizeof *f->t);
  if (!f->t) {
    json_decref(h);
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  const char *key;
  json_t *v;
  json_object_foreach(h, key, v) {
    if (!strcmp(key, "__metadata__")) {
      const char *mk;
      json_t *mv;
      if (!json_is_object(v)) {
        json_decref(h);
        return mpu_fail(e, MPU_EVERIFY, "%s: __metadata__ is not an object", path);
      }
      json_object_foreach(v, mk, mv) if (!json_is_string(mv)) {
        json_decref(h);
        return mpu_fail(e, MPU_EVERIFY, "%s: __metadata__ value '%s' is not a string", path, mk);
      }
      f->metadata = json_incref(v);
      continue;
    }
    if (parse_tensor(&f->t[f->n], key, v, path, e)) {
      json_decref(h);
      return e->status;
    }
    f->n++;
  }
  json_decref(h);
  qsort(f->t, f->n, sizeof *f->t, cmp_begin);
  /* The data buffer must be covered exactly: no overlap, no gap. */
  uint64_t at = 0;
  for (size_t i = 0; i < f->n; i++) {
    if (f->t[i].begin < at)
      return mpu_fail(e, MPU_EVERIFY, "%s: tensors '%s' and '%s' overlap", path, f->t[i - 1].name, f->t[i].name);
    if (f->t[i].begin > at)
      return mpu_fail(e, MPU_EVERIFY, "%s: a gap of %llu bytes before tensor '%s'", path,
                      (unsigned long long)(f->t[i].begin - at), f->t[i].name);
    at = f->t[i].end;
  }
  f->data_size = at;
  if (f->seekable) {
    if (f->data_start + at > fsize)
      return mpu_fail(e, MPU_EVERIFY, "%s: tensor '%s' ends at byte %llu, past the end of the file (%llu bytes): truncated?",
                      path, f->n ? f->t[f->n - 1].name : "?", (unsigned long long)(f->data_start + at),
                      (unsigned long long)fsize);
    if (f->data_start + at < fsize)
      return mpu_fail(e, MPU_EVERIFY, "%s: %llu bytes after the last tensor", path,
                      (unsigned long long)(fsize - f->data_start - at));
  }
  return 0;
}

long st_find(const st_file *f, const char *name) {
  for (size_t i = 0; i < f->n; i++)
    if (!strcmp(f->t[i].name, name)) return (long)i;
  return -1;
}

int st_read(st_file *f, size_t i, uint64_t off, void *dst, size_t n, mpu_err *e) {
  uint64_t pos = f->t[i].begin + off;
  if (f->seekable) {
    size_t done = 0;
    while (done < n) {
      ssize_t r = pread(f->fd, (char *)dst + done, n - done, (off_t)(f->data_start + pos + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return mpu_fail(e, MPU_EUSAGE, "%s: read error: %s", f->path, strerror(errno));
      if (r == 0) return mpu_fail(e, MPU_EVERIFY, "%s: the file shrank while being read", f->path);
      done += (size_t)r;
    }
    return 0;
  }
  if (pos != f->consumed)
    return mpu_fail(e, MPU_EUSAGE, "%s: a pipe must be read in offset order", f->path);
  long long got = read_full(f->fd, dst, n);
  if (got < 0) return mpu_fail(e, MPU_EUSAGE, "%s: read error: %s", f->path, strerror(errno));
  if ((size_t)got != n)
    return mpu_fail(e, MPU_EVERIFY, "%s: truncated: the input ends inside tensor '%s'", f->path, f->t[i].name);
  f->consumed += n;
  return 0;
}

static unsigned dtype_align(int dt) {
  unsigned b = mpuc_dtype_bits(dt);
  return b >= 8 ? b / 8 : 1;
}

static const st_tensor *sort_base;
static int cmp_hf(const void *a, const void *b) {
  const st_tensor *x = &sort_base[*(const size_t *)a], *y = &sort_base[*(const size_t *)b];
  unsigned ax = dtype_align(x->dtype), ay = dtype_align(y->dtype);
  if (ax != ay) return ax > ay ? -1 : 1;
  return strcmp(x->name, y->name);
}

void st_sort_like_hf(const st_tensor *t, size_t n, size_t *perm) {
  for (size_t i = 0; i < n; i++) perm[i] = i;
  sort_base = t;
  qsort(perm, n, sizeof *perm, cmp_hf);
}

uint8_t *st_header_build(const st_tensor *t, size_t n, json_t *metadata, size_t *len, mpu_err *e) {
  json_t *h = json_object();
  if (metadata && json_object_size(metadata)) json_object_set(h, "__metadata__", metadata);
  for (size_t i = 0; i < n; i++) {
    json_t *shape = json_array();
    for (unsigned d = 0; d < t[i].ndim; d++) json_array_append_new(shape, json_integer((json_int_t)t[i].dims[d]));
    json_object_set_new(h, t[i].name,
                        json_pack("{s:s, s:o, s:[I,I]}", "dtype", mpuc_dtype_name(t[i].dtype), "shape", shape,
                                  "data_offsets", (json_int_t)t[i].begin, (json_int_t)t[i].end));
  }
  char *s = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(h);
  if (!s) {
    mpu_fail(e, MPU_EUSAGE, "out of memory");
    return NULL;
  }
  size_t jl = strlen(s), padded = (jl + 7) / 8 * 8;
  uint8_t *out = malloc(8 + padded);
  if (!out) {
    free(s);
    mpu_fail(e, MPU_EUSAGE, "out of memory");
    return NULL;
  }
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)padded >> (8 * i));
  memcpy(out + 8, s, jl);
  memset(out + 8 + jl, ' ', padded - jl);
  free(s);
  *len = 8 + padded;
  return out;
}
