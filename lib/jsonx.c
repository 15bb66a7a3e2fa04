/*
 * jsonx.c -- jansson values through format/'s JSON writer.
 */
#include "jsonx.h"

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

char *json_canonical(const json_t *v) { return format(v, MPUC_JSON_CANONICAL); }
char *json_pretty(const json_t *v) { return format(v, MPUC_JSON_PRETTY); }
