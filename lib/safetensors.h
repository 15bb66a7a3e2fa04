/*
 * safetensors.h -- reading and writing .safetensors files.
 *
 * Layout (huggingface/safetensors): u64 LE header length N, N bytes of JSON
 * {"name": {"dtype","shape","data_offsets":[begin,end]}, "__metadata__": {..}},
 * then the data buffer.  The reader applies the reference validator's rules:
 * known dtypes, sizes that match dtype x shape, offsets inside the buffer,
 * no overlaps, no gaps, and a file exactly as long as the header says.
 */
#ifndef MPU_SAFETENSORS_H
#define MPU_SAFETENSORS_H

#include <jansson.h>
#include <stdint.h>

#include "err.h"
#include "mpuc.h"

#define ST_MAX_HEADER 100000000u /* the reference implementation's limit */

typedef struct {
  char *name;
  int dtype;
  unsigned ndim;
  uint64_t dims[MPUC_MAX_NDIM];
  uint64_t begin, end;          /* within the data buffer */
} st_tensor;

typedef struct {
  char *path;
  int fd;
  int seekable;
  uint64_t data_start;          /* 8 + N */
  uint64_t data_size;
  uint64_t consumed;            /* sequential reads: data bytes read so far */
  st_tensor *t;                 /* sorted by begin offset */
  size_t n;
  json_t *metadata;             /* "__metadata__" (string -> string) or NULL */
} st_file;

/* Opens and validates a file; fd >= 0 reads an open descriptor instead (a
 * pipe is read sequentially: tensors must then be read in offset order). */
int st_open(st_file *f, const char *path, int fd, mpu_err *e);
void st_close(st_file *f);
/* Reads bytes [off, off+n) of tensor i's data. */
int st_read(st_file *f, size_t i, uint64_t off, void *dst, size_t n, mpu_err *e);
/* Index of a tensor by name, or -1. */
long st_find(const st_file *f, const char *name);

/* Header of a new file holding the tensors in the order given (offsets are
 * assigned in that order); returns the malloc'd bytes (u64 + padded JSON). */
uint8_t *st_header_build(const st_tensor *t, size_t n, json_t *metadata, size_t *len, mpu_err *e);
/* The order Hugging Face's writer uses: larger dtype alignment first, then by
 * name.  Fills perm with indices into t. */
void st_sort_like_hf(const st_tensor *t, size_t n, size_t *perm);

#endif
