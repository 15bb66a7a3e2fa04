/*
 * jsonx.c -- jansson values through format/'s JSON writer.
 */
#include "jsonx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpuc.h"

static char *format(const json_t *v, int style) {
  /* jansson prints reals with 17 significant digits, which read back to the
   * same double; format/ then writes the shortest form. */
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
  if (!s) return NULL;
  char *out = mpuc_json_format(s, strlen(s), style, NULL);
  free(s);
  return out;
}

int json_load_object(const char *path, json_t **out, mpu_err *e) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  json_error_t jerr;
  *out = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
  fclose(f);
  if (!*out) return mpu_fail(e, MPU_EVERIFY, "%s: bad JSON: %s (line %d)", path, jerr.text, jerr.line);
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return mpu_fail(e, MPU_EVERIFY, "%s: not a JSON object", path);
  }
  return 0;
}

char *json_canonical(const json_t *v) { return format(v, MPUC_JSON_CANONICAL); }
char *json_pretty(const json_t *v) { return format(v, MPUC_JSON_PRETTY); }
