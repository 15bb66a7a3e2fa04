/*
 * prov.h -- the provenance every stage writes: who wrote a stream, with
 * which parameters, from which parents (spec/mpuc.md, "Provenance").
 */
#ifndef MPU_PROV_H
#define MPU_PROV_H

#include <jansson.h>

#include "mstream.h"

/* A new header object: {"copies":1,"parents":[],"stage":{name,params},"tool":{..}}.
 * params is stolen (may be NULL). */
json_t *prov_header(const char *stage, json_t *params);
/* Copies the model description of an input header: config, metadata, and
 * the MPU round record of a copy (spec/protocol.md). */
void prov_copy_model(json_t *dst, json_t *src);
/* A header's entry naming an input stream as parent: {stream_id, header_digest}. */
json_t *prov_parent(const ms_reader *in);
/* Trailer extras: {"parents_verified":[{stream_id, content_digest}...]} for
 * inputs read to their verified end. */
json_t *prov_parents_verified(ms_reader *const *ins, size_t n);

#endif
