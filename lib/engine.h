/*
 * engine.h -- what every program that runs a model needs, set up once: the
 * input stream, the model in fp32, its tokenizer, and data options derived
 * from its configuration (vocabulary, longest sequence, end-of-sequence).
 */
#ifndef MPU_ENGINE_H
#define MPU_ENGINE_H

#include "data.h"
#include "model.h"
#include "tokenizer.h"

typedef struct {
  ms_reader in;           /* read to its verified end: a parent for provenance */
  model m;                /* the model (the first copy) */
  model **ms;             /* every copy loaded: ms[0] == &m */
  int M;
  model *one[1];
  tokenizer *tok;         /* NULL when the model carries no tokenizer.json */
  data_options data;
  int32_t bos, eos, pad;
} engine;

/* Opens path ("-"/NULL: stdin), loads copy `copy` (0-based; -1 for a
 * single-copy stream) and its tokenizer, sets the thread count (0: all cores). */
int engine_open(engine *g, const char *path, int copy, int threads, mpu_err *e);
/* The same, loading every copy of a multi-copy stream (copy < 0) or one. */
int engine_open_copies(engine *g, const char *path, int copy, int threads, mpu_err *e);
void engine_close(engine *g);
/* Where every model of g computes: MODEL_CPU, MODEL_CUDA or MODEL_AUTO (the
 * GPU when one can be used).  math: how cuBLAS computes on the GPU
 * (EGPU_MATH_*), or -1 for the environment's MPU_CUDA_MATH (fp32, tf32 or
 * bf16; fp32 when unset).  Fails, saying why, when CUDA is asked for and
 * cannot be used (no CUDA in this build, no device). */
int engine_set_device(engine *g, int device, int math, mpu_err *e);
/* --device for the programs that run a model: cpu (the default: the
 * reference, the same bits with any thread count), cuda or auto.  The GPU's
 * sums are ordered differently, so its results differ in the last bits. */
#define ENGINE_DEVICE_HELP                                                                  \
  "      --device D       cpu (default), cuda (fail if there is none) or auto (a GPU if one\n" \
  "                       is usable); the GPU's results differ from the CPU's in the last bits\n"
/* MODEL_CPU, MODEL_CUDA or MODEL_AUTO for "cpu", "cuda", "auto"; -2 otherwise. */
int engine_parse_device(const char *s);
/* 0 when device can be used; for cuda without a GPU, status 2 and why
 * (before any input is read). */
int engine_check_device(int device, mpu_err *e);
/* EGPU_MATH_* for "fp32", "tf32", "bf16"; -1 for anything else. */
int engine_math_from_name(const char *name);
/* The tokenizer carried as blobs by a model; *t = NULL when there is none. */
int model_tokenizer(const model *m, tokenizer **t, mpu_err *e);

#endif
