/*
 * hf.h -- Hugging Face checkpoints: a .safetensors file, a sharded checkpoint
 * (model.safetensors.index.json), or a model directory (config.json,
 * generation_config.json, tokenizer files and the weights), read for import
 * and written by export.
 */
#ifndef MPU_HF_H
#define MPU_HF_H

#include <jansson.h>

#include "err.h"
#include "mstream.h"
#include "safetensors.h"

typedef struct {
  char *name;     /* file name inside the directory */
  char *path;
  uint64_t size;
} hf_blob;

typedef struct {
  int shard;      /* index into shards */
  size_t idx;     /* tensor index inside that shard */
} hf_ref;

typedef struct {
  st_file *shards;
  size_t nshards;
  json_t *config;         /* config.json, or NULL */
  hf_blob *blobs;
  size_t nblobs;
  hf_ref *order;          /* tensors in stream order */
  size_t ntensors;
  json_t *metadata;       /* safetensors __metadata__ of the first shard */
  char **notes;           /* what was left out and why, for the program to say */
  size_t nnotes;
} hf_source;

/* Opens a file, an index, a directory, or "-" (safetensors on stdin).
 * config_path (may be NULL) supplies or replaces config.json. */
int hf_source_open(hf_source *s, const char *path, const char *config_path, mpu_err *e);
void hf_source_close(hf_source *s);
const st_tensor *hf_tensor(const hf_source *s, size_t i);

/* Writes one .mpuc stream from the source (import).  params (may be NULL) is
 * a JSON object added to the stage's parameters. */
int hf_import(hf_source *s, ms_writer *w, const char *out_path, const stream_options *o, json_t *params,
              int progress, mpu_err *e);

typedef struct {
  uint64_t shard_size;    /* bytes per shard (default 5 GB, as HF) */
  int force;              /* replace an existing output */
  long copy;              /* 1-based copy of a multi-copy stream, 0 = single */
  int progress;           /* -1 auto, 0 off, 1 on */
  /* set by hf_export: what a single .safetensors file could not hold */
  int dropped_blobs, dropped_config;
} hf_export_options;

/* Writes a directory (config.json, blobs, shards, index) or, when out ends
 * in .safetensors, a single file.  notes receive what was not written. */
int hf_export(ms_reader *in, const char *out, hf_export_options *o, mpu_err *e);

/* Compares tensor names the way people number layers: "layers.2" < "layers.10". */
int natural_cmp(const char *a, const char *b);

#endif
