/*
 * decode.h -- greedy decoding with the key/value cache: what `mpu generate`
 * prints and what `mpu eval` scores (TOFU's greedy answers).
 */
#ifndef MPU_DECODE_H
#define MPU_DECODE_H

#include "model.h"

typedef enum { STOP_EOS, STOP_LENGTH, STOP_CONTEXT } decode_stop;

/* Continues prompt[0..n) by at most max_new tokens, stopping before eos
 * (eos < 0: never).  *out gets the new tokens (malloc'd, *out_n of them). */
int greedy_decode(model *m, const int32_t *prompt, size_t n, size_t max_new, int32_t eos, int32_t **out,
                  size_t *out_n, decode_stop *stop, mpu_err *e);
const char *decode_stop_name(decode_stop s);

#endif
