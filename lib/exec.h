/*
 * exec.h -- running an outside trainer on a model: the model goes out as a
 * Hugging Face directory in a private temporary directory, a shell command
 * works on it, and what it leaves in its output directory comes back, but
 * only if every tensor keeps its name, shape and dtype.
 *
 * The command sees MPU_MODEL_DIR (the model to read), MPU_OUTPUT_DIR (where
 * to write the result, as save_pretrained does), and the variables the
 * caller adds (e.g. MPU_FORGET).  Its standard output goes to standard error:
 * ours may be the stream being written.
 */
#ifndef MPU_EXEC_H
#define MPU_EXEC_H

#include "model.h"

typedef struct {
  const char *name, *value;
} exec_var;

/* Runs cmd on m and takes back its tensors into m (blobs and config stay
 * as they were).  vars[0..nvars) are added to the environment. */
int exec_round_trip(model *m, const char *cmd, const exec_var *vars, size_t nvars, mpu_err *e);

#endif
