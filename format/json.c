/*
 * json.c -- the JSON text the format writes.
 *
 * Digests are computed over header bytes, so the header must have one
 * spelling: keys sorted by their UTF-8 bytes, no insignificant whitespace,
 * numbers in the shortest form that reads back to the same double.  The
 * pretty style is the same tree laid out the way Python's json.dumps(...,
 * indent=2, sort_keys=True) lays it out, which is how Hugging Face writes
 * config.json, so an exported config reads like the original.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* Shortest decimal digits of v that parse back to v, in Python repr's layout:
 * fixed notation when the decimal exponent is in [-4, 16), else d.ddde+XX. */
static int format_real(char *out, size_t n, double v) {
  char buf[40];
  int prec;
  for (prec = 1; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
    if (strtod(buf, NULL) == v) break;
  }
  /* buf is [-]d[.ddd]e[+-]XX */
  const char *s = buf;
  int neg = 0;
  if (*s == '-') { neg = 1; s++; }
  char digits[20];
  int nd = 0;
  for (; *s && *s != 'e'; s++)
    if (*s != '.') digits[nd++] = *s;
  while (nd > 1 && digits[nd - 1] == '0') nd--; /* "%.*e" may pad with zeros */
  int exp10 = atoi(s + 1);
  char *o = out;
  char *end = out + n;
  if (neg) *o++ = '-';
  if (exp10 >= -4 && exp10 < 16) {
    if (exp10 < 0) {
      o += snprintf(o, (size_t)(end - o), "0.");
      for (int i = -1; i > exp10; i--) *o++ = '0';
      memcpy(o, digits, (size_t)nd);
      o += nd;
    } else {
      for (int i = 0; i <= exp10; i++) *o++ = i < nd ? digits[i] : '0';
      *o++ = '.';
      if (nd > exp10 + 1) {
        memcpy(o, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
        o += nd - exp10 - 1;
      } else {
        *o++ = '0';
      }
    }
  } else {
    *o++ = digits[0];
    if (nd > 1) {
      *o++ = '.';
      memcpy(o, digits + 1, (size_t)nd - 1);
      o += nd - 1;
    }
    o += snprintf(o, (size_t)(end - o), "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  }
  *o = 0;
  return (int)(o - out);
}

/* Decodes one UTF-8 sequence; returns its length or 0 if invalid. */
static int utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
  if (s[0] < 0x80) { *cp = s[0]; return 1; }
  int len = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
  if (!len || (size_t)len > n) return 0;
  unsigned c = s[0] & (0x7F >> len);
  for (int i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    c = c << 6 | (s[i] & 0x3F);
  }
  *cp = c;
  return len;
}

static int put_string(mbuf *b, const char *str, size_t n, int ascii_only) {
  char esc[16];
  if (mbuf_append(b, "\"", 1)) return -1;
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)str[i];
    const char *rep = NULL;
    size_t rl = 0;
    switch (c) {
    case '"': rep = "\\\""; break;
    case '\\': rep = "\\\\"; break;
    case '\b': rep = "\\b"; break;
    case '\f': rep = "\\f"; break;
    case '\n': rep = "\\n"; break;
    case '\r': rep = "\\r"; break;
    case '\t': rep = "\\t"; break;
    default: break;
    }
    if (rep) {
      rl = strlen(rep);
      i++;
    } else if (c < 0x20) {
      rl = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
      rep = esc;
      i++;
    } else if (c >= 0x80 && ascii_only) {
      unsigned cp;
      int len = utf8_decode((const unsigned char *)str + i, n - i, &cp);
      if (!len) return -1;
      if (cp >= 0x10000) {
        cp -= 0x10000;
        rl = (size_t)snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
      } else {
        rl = (size_t)snprintf(esc, sizeof esc, "\\u%04x", cp);
      }
      rep = esc;
      i += (size_t)len;
    } else {
      size_t j = i;
      while (j < n && (unsigned char)str[j] >= 0x20 && str[j] != '"' && str[j] != '\\' &&
             !((unsigned char)str[j] >= 0x80 && ascii_only))
        j++;
      if (mbuf_append(b, str + i, j - i)) return -1;
      i = j;
      continue;
    }
    if (mbuf_append(b, rep, rl)) return -1;
  }
  return mbuf_append(b, "\"", 1);
}

static int cmp_keys(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int put_indent(mbuf *b, int pretty, int depth) {
  if (!pretty) return 0;
  if (mbuf_append(b, "\n", 1)) return -1;
  for (int i = 0; i < depth; i++)
    if (mbuf_append(b, "  ", 2)) return -1;
  return 0;
}

static int put_value(mbuf *b, const json_t *v, int pretty, int depth) {
  char num[64];
  switch (json_typeof(v)) {
  case JSON_NULL: return mbuf_append(b, "null", 4);
  case JSON_TRUE: return mbuf_append(b, "true", 4);
  case JSON_FALSE: return mbuf_append(b, "false", 5);
  case JSON_INTEGER: {
    int len = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return mbuf_append(b, num, (size_t)len);
  }
  case JSON_REAL: {
    int len = format_real(num, sizeof num, json_real_value(v));
    return mbuf_append(b, num, (size_t)len);
  }
  case JSON_STRING: return put_string(b, json_string_value(v), json_string_length(v), pretty);
  case JSON_ARRAY: {
    size_t n = json_array_size(v);
    if (mbuf_append(b, "[", 1)) return -1;
    for (size_t i = 0; i < n; i++) {
      if (i && mbuf_append(b, ",", 1)) return -1;
      if (put_indent(b, pretty, depth + 1) || put_value(b, json_array_get(v, i), pretty, depth + 1))
        return -1;
    }
    if (n && put_indent(b, pretty, depth)) return -1;
    return mbuf_append(b, "]", 1);
  }
  case JSON_OBJECT: {
    size_t n = json_object_size(v);
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys) return -1;
    size_t k = 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val) keys[k++] = key;
    qsort(keys, n, sizeof *keys, cmp_keys);
    int rc = mbuf_append(b, "{", 1);
    for (size_t i = 0; i < n && !rc; i++) {
      if (i) rc = mbuf_append(b, ",", 1);
      if (!rc) rc = put_indent(b, pretty, depth + 1);
      if (!rc) rc = put_string(b, keys[i], strlen(keys[i]), pretty);
      if (!rc) rc = mbuf_append(b, pretty ? ": " : ":", pretty ? 2 : 1);
      if (!rc) rc = put_value(b, json_object_get(v, keys[i]), pretty, depth + 1);
    }
    if (!rc && n) rc = put_indent(b, pretty, depth);
    if (!rc) rc = mbuf_append(b, "}", 1);
    free(keys);
    return rc;
  }
  }
  return -1;
}

char *json_format_value(const json_t *v, int style, size_t *len) {
  mbuf b = {0};
  int pretty = style == MPUC_JSON_PRETTY;
  if (put_value(&b, v, pretty, 0) || (pretty && mbuf_append(&b, "\n", 1)) || mbuf_append(&b, "", 1)) {
    mbuf_free(&b);
    return NULL;
  }
  if (len) *len = b.len - 1;
  return (char *)b.p;
}

char *mpuc_json_format(const char *json, size_t len, int style, size_t *out_len) {
  json_error_t err;
  json_t *v = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
  if (!v) return NULL;
  char *s = json_format_value(v, style, out_len);
  json_decref(v);
  return s;
}
