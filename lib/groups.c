/*
 * groups.c -- layer groups of a model stream (see groups.h).
 */
#include "groups.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "fp.h"
#include "llama.h"

int is_float_dtype(int dt) { return dt == MPUC_DT_F32 || dt == MPUC_DT_BF16 || dt == MPUC_DT_F16; }

int to_float(float *dst, const uint8_t *src, size_t n, int dtype) {
  switch (dtype) {
  case MPUC_DT_F32: memcpy(dst, src, n * 4); return 0;
  case MPUC_DT_BF16:
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    return 0;
  case MPUC_DT_F16:
    for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    return 0;
  }
  return -1;
}

void from_float(uint8_t *dst, const float *src, size_t n, int dtype) {
  if (dtype == MPUC_DT_F32) {
    memcpy(dst, src, n * 4);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    uint16_t h = dtype == MPUC_DT_BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
    dst[2 * i] = (uint8_t)h;
    dst[2 * i + 1] = (uint8_t)(h >> 8);
  }
}

static void tensor_clear(group_tensor *t) {
  free(t->name);
  free(t->raw);
  free(t->f32);
  memset(t, 0, sizeof *t);
}

void group_free(tensor_group *g) {
  for (size_t i = 0; i < g->cap; i++) tensor_clear(&g->t[i]);
  tensor_clear(&g->next);
  free(g->t);
  memset(g, 0, sizeof *g);
}

void blobs_free(blob_item *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(b[i].name);
    free(b[i].data);
  }
  free(b);
}

/* Reads the current entry's bytes into t. */
static int take_tensor(ms_reader *in, const mpuc_entry *en, group_tensor *t, size_t index, mpu_err *e) {
  tensor_clear(t);
  char name[MPUC_MAX_NAME + 1];
  ms_entry_name(en, name, sizeof name);
  t->name = strdup(name);
  t->en = *en;
  t->en.name = t->name;
  t->raw = malloc(en->raw_size + 1);
  if (!t->name || !t->raw) return mpu_fail(e, MPU_EUSAGE, "out of memory for tensor %s", name);
  if (ms_read_entry(in, t->raw, e)) return e->status;
  t->index = index;
  t->role = llama_role(name, &t->layer);
  if (t->role < 0) t->layer = -1;
  if (is_float_dtype(en->dtype)) {
    uint64_t n = 1;
    for (unsigned d = 0; d < en->ndim; d++) n *= en->dims[d];
    t->elems = (size_t)n;
    t->f32 = malloc(t->elems * sizeof(float) + 4);
    if (!t->f32) return mpu_fail(e, MPU_EUSAGE, "out of memory for tensor %s", name);
    to_float(t->f32, t->raw, t->elems, en->dtype);
  }
  return 0;
}

static int slot(tensor_group *g, mpu_err *e) {
  if (g->n < g->cap) return 0;
  size_t cap = g->cap ? 2 * g->cap : 16;
  group_tensor *t = realloc(g->t, cap * sizeof *t);
  if (!t) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  memset(t + g->cap, 0, (cap - g->cap) * sizeof *t);
  g->t = t;
  g->cap = cap;
  return 0;
}

int group_read(ms_reader *in, tensor_group *g, blob_item **blobs, size_t *nblobs, mpu_err *e) {
  for (size_t i = 0; i < g->n; i++) tensor_clear(&g->t[i]);
  g->n = 0;
  if (g->has_next) {
    if (slot(g, e)) return -1;
    g->t[0] = g->next;
    memset(&g->next, 0, sizeof g->next);
    g->has_next = 0;
    g->n = 1;
    g->layer = g->t[0].role >= 0 ? g->t[0].layer : -1;
    if (g->layer < 0) return 1;
  }
  for (;;) {
    const mpuc_entry *en;
    int more = ms_next_entry(in, &en, e);
    if (more < 0) return -1;
    if (more == 0) return g->n > 0;
    if (en->kind == MPUC_KIND_BLOB) {
      size_t sz = (size_t)en->raw_size;
      uint8_t *data = malloc(sz + 1);
      char name[MPUC_MAX_NAME + 1];
      if (!data) return mpu_fail(e, MPU_EUSAGE, "out of memory");
      ms_entry_name(en, name, sizeof name);
      if (ms_read_entry(in, data, e)) {
        free(data);
        return -1;
      }
      if (blobs) {
        blob_item *nb = realloc(*blobs, (*nblobs + 1) * sizeof *nb);
        if (!nb) return mpu_fail(e, MPU_EUSAGE, "out of memory");
        *blobs = nb;
        nb[*nblobs] = (blob_item){strdup(name), data, sz};
        (*nblobs)++;
      } else {
        free(data);
      }
      continue;
    }
    if (en->copy != 0) return mpu_fail(e, MPU_EUSAGE, "%s holds several copies; give one copy (mpu split)", in->name);
    if (slot(g, e)) return -1;
    group_tensor *t = &g->t[g->n];
    if (take_tensor(in, en, t, g->next_index++, e)) return -1;
    int layer = t->role >= 0 ? t->layer : -1;
    if (layer >= 0 && layer < g->layers_done && (g->n == 0 || layer != g->layer))
      return mpu_fail(e, MPU_EUSAGE, "%s: the tensors of layer %d are not together (%s comes late); re-import the model",
                      in->name, layer, t->name);
    if (g->n == 0) {
      g->n = 1;
      g->layer = layer;
      if (layer < 0) return 1; /* a tensor outside the layers is a group of its own */
      continue;
    }
    if (layer == g->layer) {
      g->n++;
      continue;
    }
    /* The first tensor of the next group: hold it for the next call. */
    if (g->layer + 1 > g->layers_done) g->layers_done = g->layer + 1;
    if (layer >= 0 && layer < g->layers_done)
      return mpu_fail(e, MPU_EUSAGE, "%s: the tensors of layer %d are not together (%s comes late); re-import the model",
                      in->name, layer, t->name);
    g->next = *t;
    memset(t, 0, sizeof *t);
    g->has_next = 1;
    return 1;
  }
}

int write_tensor_f32(ms_writer *w, const group_tensor *t, uint32_t copy, int dtype, const float *x, mpu_err *e) {
  mpuc_entry en = t->en;
  en.copy = copy;
  en.dtype = dtype;
  en.kind = MPUC_KIND_TENSOR;
  if (dtype == MPUC_DT_F32) return ms_write_entry(w, &en, x, e);
  uint8_t *buf = malloc(t->elems * 2 + 1);
  if (!buf) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  from_float(buf, x, t->elems, dtype);
  int rc = ms_write_entry(w, &en, buf, e);
  free(buf);
  return rc;
}

int write_tensor_raw(ms_writer *w, const group_tensor *t, uint32_t copy, mpu_err *e) {
  mpuc_entry en = t->en;
  en.copy = copy;
  return ms_write_entry(w, &en, t->raw, e);
}

void hash_bytes(uint8_t out[16], const void *p, size_t n) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(p, n));
  memcpy(out, c.digest, 16);
}

void hash_tensor_f32(uint8_t out[16], const float *x, size_t n, int dtype) {
  if (dtype == MPUC_DT_F32) {
    hash_bytes(out, x, n * 4);
    return;
  }
  uint8_t *buf = malloc(n * 2 + 1);
  from_float(buf, x, n, dtype);
  hash_bytes(out, buf, n * 2);
  free(buf);
}
