/*
 * jsonx.h -- JSON text of jansson values in the format's two spellings
 * (format/json.c): canonical for anything hashed, pretty for files people read.
 */
#ifndef MPU_JSONX_H
#define MPU_JSONX_H

#include <jansson.h>

char *json_canonical(const json_t *v);  /* malloc'd; NULL on error */
char *json_pretty(const json_t *v);     /* malloc'd, ends in a newline */

#include "err.h"
/* Loads a file holding a JSON object: status 2 if it cannot be read, 1 if it
 * is not valid JSON or not an object, duplicate keys refused. */
int json_load_object(const char *path, json_t **out, mpu_err *e);

#endif
