/*
 * prov.c -- provenance records written by every stage.
 */
#include "prov.h"

#include <stdlib.h>
#include <string.h>

json_t *prov_header(const char *stage, json_t *params) {
  return json_pack("{s:i, s:[], s:[], s:[], s:{s:s, s:o}, s:{s:s, s:s}}", "copies", 1, "parents", "blobs",
                   "tensors", "stage", "name", stage, "params", params ? params : json_object(), "tool", "name",
                   "mpu", "version", MPU_VERSION);
}

void prov_copy_model(json_t *dst, json_t *src) {
  /* "mpu": a copy of a round stays one through training and conversion */
  static const char *const keys[] = {"config", "metadata", "mpu"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    json_t *v = json_object_get(src, keys[i]);
    if (v) json_object_set_new(dst, keys[i], json_deep_copy(v));
  }
}

json_t *prov_parent(const ms_reader *in) {
  return json_pack("{s:s, s:{s:s}}", "stream_id", mpuc_reader_stream_id(in->r), "header_digest", "xxh3_128",
                   mpuc_reader_header_digest(in->r));
}

json_t *prov_parents_verified(ms_reader *const *ins, size_t n) {
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(arr, json_pack("{s:s, s:{s:s}}", "stream_id", mpuc_reader_stream_id(ins[i]->r),
                                         "content_digest", "xxh3_128", mpuc_reader_content_digest(ins[i]->r)));
  return json_pack("{s:o}", "parents_verified", arr);
}
