/*
 * layout.c -- the header's announced listing, and the check that the
 * entries of a stream are exactly what it announced, in order:
 * blobs first, then each tensor's copies 0..m-1 (or one shared entry).
 * The writer and the reader run the same checks.
 */
#include <stdlib.h>

#include <xxhash.h>

#include "internal.h"

/* A set of 64-bit name hashes, to refuse a name announced twice in O(n). */
typedef struct {
  uint64_t *slot;
  size_t cap;
} nameset;

static int nameset_add(nameset *s, const char *name, size_t len) {
  uint64_t h = XXH3_64bits(name, len) | 1; /* 0 marks an empty slot */
  for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    if (!s->slot[i]) {
      s->slot[i] = h;
      return 0;
    }
    if (s->slot[i] == h) return -1;
  }
}

static int valid_name(const char *s, size_t len) {
  return len >= 1 && len <= MPUC_MAX_NAME && !memchr(s, 0, len);
}

static mpuc_status bad(char *msg, mpuc_status st, const char *fmt, const char *what) {
  msg_set(msg, fmt, what);
  return st;
}

static mpuc_status parse_tensor(layout_item *it, json_t *t, size_t i, uint32_t copies, char *msg) {
  json_t *name = json_object_get(t, "name"), *dtype = json_object_get(t, "dtype");
  json_t *shape = json_object_get(t, "shape"), *shared = json_object_get(t, "shared");
  if (!json_is_object(t) || !json_is_string(name) || !json_is_string(dtype) || !json_is_array(shape)) {
    msg_set(msg, "header: tensors[%zu] needs a string name, a string dtype and a shape array", i);
    return MPUC_ERR_CORRUPT;
  }
  it->name = json_string_value(name);
  it->name_len = json_string_length(name);
  if (!valid_name(it->name, it->name_len)) {
    msg_set(msg, "header: tensors[%zu] has an empty, overlong or NUL-containing name", i);
    return MPUC_ERR_LIMIT;
  }
  it->dtype = mpuc_dtype_from_name(json_string_value(dtype));
  if (!it->dtype)
    return bad(msg, MPUC_ERR_VERSION, "header: unknown dtype '%s' (written by a newer mpu?)",
               json_string_value(dtype));
  it->ndim = (unsigned)json_array_size(shape);
  if (it->ndim > MPUC_MAX_NDIM) {
    msg_set(msg, "header: tensors[%zu] has %u dimensions (limit %d)", i, it->ndim, MPUC_MAX_NDIM);
    return MPUC_ERR_LIMIT;
  }
  for (unsigned d = 0; d < it->ndim; d++) {
    json_t *v = json_array_get(shape, d);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
      msg_set(msg, "header: tensors[%zu] shape must hold non-negative integers", i);
      return MPUC_ERR_CORRUPT;
    }
    it->dims[d] = (uint64_t)json_integer_value(v);
  }
  if (mpuc_tensor_bytes(it->dtype, it->ndim, it->dims, &it->bytes) != MPUC_OK) {
    msg_set(msg, "header: tensors[%zu] is too large or not a whole number of bytes", i);
    return MPUC_ERR_LIMIT;
  }
  if (shared && !json_is_boolean(shared)) {
    msg_set(msg, "header: tensors[%zu].shared must be true or false", i);
    return MPUC_ERR_CORRUPT;
  }
  it->shared = json_is_true(shared);
  if (it->shared && copies == 1) {
    msg_set(msg, "header: tensors[%zu] is shared in a single-copy stream", i);
    return MPUC_ERR_LAYOUT;
  }
  return MPUC_OK;
}

static mpuc_status parse_blob(layout_item *it, json_t *b, size_t i, char *msg) {
  json_t *name = json_object_get(b, "name"), *bytes = json_object_get(b, "bytes");
  if (!json_is_object(b) || !json_is_string(name) || !json_is_integer(bytes) ||
      json_integer_value(bytes) < 0 || (uint64_t)json_integer_value(bytes) > MPUC_MAX_RAW_SIZE) {
    msg_set(msg, "header: blobs[%zu] needs a string name and a byte count", i);
    return MPUC_ERR_CORRUPT;
  }
  memset(it, 0, sizeof *it);
  it->name = json_string_value(name);
  it->name_len = json_string_length(name);
  if (!valid_name(it->name, it->name_len)) {
    msg_set(msg, "header: blobs[%zu] has an empty, overlong or NUL-containing name", i);
    return MPUC_ERR_LIMIT;
  }
  it->dtype = MPUC_DT_U8;
  it->ndim = 1;
  it->bytes = it->dims[0] = (uint64_t)json_integer_value(bytes);
  return MPUC_OK;
}

static int is_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

mpuc_status layout_init(layout *L, json_t *h, char *msg) {
  memset(L, 0, sizeof *L);
  L->header = h;
  if (!json_is_object(h)) {
    msg_set(msg, "header: not a JSON object");
    return MPUC_ERR_CORRUPT;
  }
  json_t *id = json_object_get(h, "stream_id"), *copies = json_object_get(h, "copies");
  json_t *tensors = json_object_get(h, "tensors"), *blobs = json_object_get(h, "blobs");
  json_t *parents = json_object_get(h, "parents"), *stage = json_object_get(h, "stage");
  if (!json_is_string(id) || json_string_length(id) != 32 || !is_hex(json_string_value(id), 32)) {
    msg_set(msg, "header: stream_id must be 32 lowercase hex digits");
    return MPUC_ERR_CORRUPT;
  }
  if (!json_is_integer(copies) || json_integer_value(copies) < 1 ||
      json_integer_value(copies) > MPUC_MAX_COPIES) {
    msg_set(msg, "header: copies must be an integer in 1..%d", MPUC_MAX_COPIES);
    return MPUC_ERR_LIMIT;
  }
  L->copies = (uint32_t)json_integer_value(copies);
  if (!json_is_array(tensors) || !json_is_array(blobs) || !json_is_array(parents)) {
    msg_set(msg, "header: tensors, blobs and parents must be arrays");
    return MPUC_ERR_CORRUPT;
  }
  if (!json_is_object(stage) || !json_is_string(json_object_get(stage, "name"))) {
    msg_set(msg, "header: stage must be an object with a name");
    return MPUC_ERR_CORRUPT;
  }
  for (size_t i = 0; i < json_array_size(parents); i++)
    if (!json_is_object(json_array_get(parents, i))) {
      msg_set(msg, "header: parents[%zu] is not an object", i);
      return MPUC_ERR_CORRUPT;
    }
  L->nblobs = json_array_size(blobs);
  L->ntensors = json_array_size(tensors);
  if (L->nblobs + L->ntensors > MPUC_MAX_ENTRIES) {
    msg_set(msg, "header: %zu entries announced (limit %u)", L->nblobs + L->ntensors, MPUC_MAX_ENTRIES);
    return MPUC_ERR_LIMIT;
  }
  L->blobs = calloc(L->nblobs + 1, sizeof *L->blobs);
  L->tensors = calloc(L->ntensors + 1, sizeof *L->tensors);
  nameset set = {0};
  for (set.cap = 16; set.cap < 2 * (L->nblobs + L->ntensors); set.cap *= 2) {}
  set.slot = calloc(set.cap, sizeof *set.slot);
  if (!L->blobs || !L->tensors || !set.slot) {
    free(set.slot);
    msg_set(msg, "out of memory reading the header");
    return MPUC_ERR_NOMEM;
  }
  mpuc_status st = MPUC_OK;
  for (size_t i = 0; i < L->nblobs && !st; i++) {
    st = parse_blob(&L->blobs[i], json_array_get(blobs, i), i, msg);
    if (!st && nameset_add(&set, L->blobs[i].name, L->blobs[i].name_len))
      st = bad(msg, MPUC_ERR_LAYOUT, "header: the name '%s' is announced twice", L->blobs[i].name);
  }
  size_t total = L->nblobs;
  for (size_t i = 0; i < L->ntensors && !st; i++) {
    st = parse_tensor(&L->tensors[i], json_array_get(tensors, i), i, L->copies, msg);
    if (!st && nameset_add(&set, L->tensors[i].name, L->tensors[i].name_len))
      st = bad(msg, MPUC_ERR_LAYOUT, "header: the name '%s' is announced twice", L->tensors[i].name);
    total += L->tensors[i].shared ? 1 : L->copies;
  }
  free(set.slot);
  if (!st && total > MPUC_MAX_ENTRIES) {
    msg_set(msg, "header: %zu entries announced (limit %u)", total, MPUC_MAX_ENTRIES);
    st = MPUC_ERR_LIMIT;
  }
  return st;
}

void layout_free(layout *L) {
  free(L->blobs);
  free(L->tensors);
  if (L->header) json_decref(L->header);
  memset(L, 0, sizeof *L);
}

size_t layout_total_entries(const layout *L) {
  size_t n = L->nblobs;
  for (size_t i = 0; i < L->ntensors; i++) n += L->tensors[i].shared ? 1 : L->copies;
  return n;
}

static void expected_label(char *buf, size_t n, const layout *L) {
  mpuc_entry e = {0};
  const layout_item *it;
  if (L->pos < L->nblobs) {
    it = &L->blobs[L->pos];
    e.kind = MPUC_KIND_BLOB;
  } else {
    it = &L->tensors[L->pos - L->nblobs];
    e.copy = it->shared ? MPUC_COPY_SHARED : L->next_copy;
  }
  e.name = it->name;
  e.name_len = it->name_len;
  entry_label(buf, n, &e);
}

mpuc_status layout_accept(layout *L, const mpuc_entry *e, char *msg) {
  char got[300], want[300];
  entry_label(got, sizeof got, e);
  if (L->pos >= L->nblobs + L->ntensors) {
    msg_set(msg, "%s: more entries than the header announces", got);
    return MPUC_ERR_LAYOUT;
  }
  expected_label(want, sizeof want, L);
  int blob = L->pos < L->nblobs;
  const layout_item *it = blob ? &L->blobs[L->pos] : &L->tensors[L->pos - L->nblobs];
  uint32_t copy = blob ? 0 : it->shared ? MPUC_COPY_SHARED : L->next_copy;
  if (e->kind != (blob ? MPUC_KIND_BLOB : MPUC_KIND_TENSOR) || e->name_len != it->name_len ||
      memcmp(e->name, it->name, it->name_len) != 0 || e->copy != copy) {
    msg_set(msg, "found %s where the header announces %s", got, want);
    return MPUC_ERR_LAYOUT;
  }
  int same_shape = e->dtype == it->dtype && e->ndim == it->ndim && e->raw_size == it->bytes;
  for (unsigned d = 0; same_shape && d < it->ndim; d++) same_shape = e->dims[d] == it->dims[d];
  if (!same_shape) {
    msg_set(msg, "%s: dtype, shape or size differ from the header's listing", got);
    return MPUC_ERR_LAYOUT;
  }
  if (blob || it->shared || ++L->next_copy == L->copies) {
    L->next_copy = 0;
    L->pos++;
  }
  return MPUC_OK;
}

mpuc_status layout_complete(const layout *L, char *msg) {
  if (L->pos < L->nblobs + L->ntensors) {
    char want[300];
    expected_label(want, sizeof want, L);
    msg_set(msg, "the stream ends its entries before %s, which the header announces", want);
    return MPUC_ERR_LAYOUT;
  }
  return MPUC_OK;
}
