/*
 * groups.h -- reading a model stream one layer group at a time: every tensor
 * named model.layers.{l}.* together, or one tensor outside the layers.  The
 * server stages work in this unit (sigma is per layer group), so they hold one
 * layer group, never the whole model.
 */
#ifndef MPU_GROUPS_H
#define MPU_GROUPS_H

#include <stdint.h>

#include "mstream.h"

typedef struct {
  char *name;
  mpuc_entry en;          /* dtype, ndim, dims, raw_size (name points to .name) */
  uint8_t *raw;           /* the bytes as stored */
  float *f32;             /* as fp32 for F32/BF16/F16 tensors, else NULL */
  size_t elems;
  int role, layer;        /* llama_role(); role -1 outside the known layout */
  size_t index;           /* position in the stream's tensor listing */
} group_tensor;

typedef struct {
  group_tensor *t;
  size_t n, cap;
  int layer;              /* -1: a single tensor outside the layers */
  /* reading state */
  group_tensor next;      /* the first tensor of the next group, read ahead */
  int has_next;
  size_t next_index;
  int layers_done;        /* highest layer finished + 1, to catch scattered layers */
} tensor_group;

/* Reads the stream's blobs into *blobs (names and data, for passing on);
 * call once after ms_reader_open.  Stops at the first tensor. */
typedef struct {
  char *name;
  uint8_t *data;
  size_t size;
} blob_item;
/* Reads the next group of a single-copy stream (entries with copy 0): 1 and
 * *g filled, 0 at the stream's verified end.  Blobs met on the way are
 * appended to *blobs (may be NULL to drop them). */
int group_read(ms_reader *in, tensor_group *g, blob_item **blobs, size_t *nblobs, mpu_err *e);
void group_free(tensor_group *g);
void blobs_free(blob_item *b, size_t n);

/* fp32 view of F32/BF16/F16 bytes; returns -1 for other dtypes. */
int to_float(float *dst, const uint8_t *src, size_t n, int dtype);
/* The bytes of fp32 values in a float dtype (round to nearest even). */
void from_float(uint8_t *dst, const float *src, size_t n, int dtype);
int is_float_dtype(int dtype);

/* Writes one tensor entry from fp32 values, stored in dtype. */
int write_tensor_f32(ms_writer *w, const group_tensor *t, uint32_t copy, int dtype, const float *x, mpu_err *e);
/* Writes one tensor entry from its own bytes (e.g. a shared, untouched tensor). */
int write_tensor_raw(ms_writer *w, const group_tensor *t, uint32_t copy, mpu_err *e);
/* XXH3-128 (canonical bytes) of a buffer, as entries carry it. */
void hash_bytes(uint8_t out[16], const void *p, size_t n);
/* XXH3-128 of fp32 values as stored in dtype (what write_tensor_f32 writes). */
void hash_tensor_f32(uint8_t out[16], const float *x, size_t n, int dtype);

#endif
