/*
 * jsonx.h -- JSON text of jansson values in the format's two spellings
 * (format/json.c): canonical for anything hashed, pretty for files people read.
 */
#ifndef MPU_JSONX_H
#define MPU_JSONX_H

#include <jansson.h>

char *json_canonical(const json_t *v);  /* malloc'd; NULL on error */
char *json_pretty(const json_t *v);     /* malloc'd, ends in a newline */

#endif
