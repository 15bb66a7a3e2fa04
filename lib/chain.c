/*
 * chain.c -- the provenance graph among a set of streams (see chain.h).
 */
#include "chain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mstream.h"
#include "protocol.h"

int chain_read(chain_stream *s, const char *path, const sign_trust *trust, int progress) {
  memset(s, 0, sizeof *s);
  s->path = path;
  ms_reader in;
  mpu_err *e = &s->err;
  /* BLAKE2b only when a signature is to be checked: it is the slow part */
  int rc = trust ? ms_reader_open_signed(&in, path, e) : ms_reader_open(&in, path, e);
  if (!rc) {
    /* known from the header on, even if the stream fails later */
    snprintf(s->stream_id, sizeof s->stream_id, "%s", mpuc_reader_stream_id(in.r));
    ms_reader_progress(&in, progress, "verifying");
    rc = ms_verify_rest(&in, e);
  }
  if (!rc) {
    s->header = json_incref(in.header);
    s->trailer = json_loads(ms_trailer_json(&in), 0, NULL);
    if (!s->trailer) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  if (!rc) {
    snprintf(s->header_digest, sizeof s->header_digest, "%s", mpuc_reader_header_digest(in.r));
    snprintf(s->content_digest, sizeof s->content_digest, "%s", mpuc_reader_content_digest(in.r));
    snprintf(s->stream_digest, sizeof s->stream_digest, "%s", mpuc_reader_stream_digest(in.r));
    const uint8_t *d = ms_signed_digest(&in);
    if (d) {
      memcpy(s->signed_digest, d, sizeof s->signed_digest);
      s->has_signed_digest = 1;
    }
    streamsig_check(s->trailer, d, s->content_digest, trust, &s->sig);
    s->ok = 1;
  }
  ms_reader_close(&in);
  return rc;
}

void chain_stream_free(chain_stream *s) {
  if (s->header) json_decref(s->header);
  if (s->trailer) json_decref(s->trailer);
  if (s->sig.report) json_decref(s->sig.report);
  s->header = s->trailer = s->sig.report = NULL;
}

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }
static const char *digest(json_t *o, const char *k) { return str(json_object_get(o, k), "xxh3_128"); }

/* The member of a parents array whose key equals value. */
static json_t *find(json_t *arr, const char *key, const char *value) {
  size_t i;
  json_t *x;
  json_array_foreach(arr, i, x) {
    const char *v = str(x, key);
    if (v && !strcmp(v, value)) return x;
  }
  return NULL;
}

static int names_commitment(json_t *arr) {
  size_t i;
  json_t *x;
  json_array_foreach(arr, i, x) if (str(x, "commitment")) return 1;
  return 0;
}

/* commit(label, value) under the key, as the protocol names a secret parent. */
static void commitment(const server_key *key, const char *label, const char *value, char hex[65]) {
  key_commit(key, label, value, hex);
}

const char *chain_link_check(const chain_stream *child, const chain_stream *parent, const server_key *key,
                             int *committed) {
  json_t *declared = json_object_get(child->header, "parents");
  json_t *verified = json_object_get(child->trailer, "parents_verified");
  if (committed) *committed = 0;
  json_t *d = find(declared, "stream_id", parent->stream_id);
  if (!d && key) {
    char ident[66], cm[65];
    model_identity(ident, parent->stream_id, parent->header_digest);
    commitment(key, "model", ident, cm);
    if (find(declared, "commitment", cm)) {
      /* the header commits to exactly this parent; does the trailer commit
       * to its content? */
      commitment(key, "model-content", parent->content_digest, cm);
      return find(verified, "commitment", cm) ? NULL
                                               : "is committed to in the header, but the trailer commits to other "
                                                 "content (its content digest differs)";
    }
  }
  if (!d) {
    if (committed && !key && names_commitment(declared)) *committed = 1;
    return "is not a parent of this stream (its stream id is not in the header)";
  }
  const char *hd = digest(d, "header_digest");
  if (!hd || strcmp(hd, parent->header_digest)) return "has another header than the one this stream names";
  json_t *v = find(verified, "stream_id", parent->stream_id);
  if (!v) return "is named in the header but the trailer records no verified read of it";
  const char *cd = digest(v, "content_digest");
  if (!cd || strcmp(cd, parent->content_digest))
    return "has other content than this stream read (its content digest differs)";
  return NULL;
}

size_t chain_links(const chain_stream *s, size_t n, const server_key *key, chain_link **links) {
  size_t count = 0, cap = 0;
  *links = NULL;
  for (size_t c = 0; c < n; c++) {
    if (!s[c].ok) continue;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(s[c].header, "parents"), i, x) {
      chain_link L = {c, i, -1, LINK_EXTERNAL, NULL};
      const char *id = str(x, "stream_id"), *cm = str(x, "commitment");
      if (cm) L.state = LINK_COMMITTED;
      for (size_t p = 0; p < n && L.parent < 0; p++) {
        if (p == c || !s[p].ok) continue;
        if (id && !strcmp(id, s[p].stream_id)) {
          L.parent = (long)p;
        } else if (cm && key) {
          char ident[66], want[65];
          model_identity(ident, s[p].stream_id, s[p].header_digest);
          commitment(key, "model", ident, want);
          if (!strcmp(want, cm)) L.parent = (long)p;
        }
      }
      if (L.parent >= 0) {
        L.why = chain_link_check(&s[c], &s[L.parent], key, NULL);
        L.state = L.why ? LINK_BROKEN : LINK_OK;
      }
      if (count == cap) {
        cap = cap ? 2 * cap : 16;
        chain_link *grown = realloc(*links, cap * sizeof *grown);
        if (!grown) break; /* a shorter answer; the caller's judge still sees every file */
        *links = grown;
      }
      (*links)[count++] = L;
    }
  }
  return count;
}

static size_t root(size_t *up, size_t i) {
  while (up[i] != i) i = up[i] = up[up[i]];
  return i;
}

const char *chain_judge(const chain_stream *s, size_t n, const chain_link *links, size_t nlinks, char *buf,
                        size_t len) {
  /* A hole: a stream some of whose parents are given while another, plain
   * one is not -- the file that should be there was left out or replaced. */
  for (size_t k = 0; k < nlinks; k++) {
    if (links[k].state != LINK_EXTERNAL) continue;
    for (size_t j = 0; j < nlinks; j++)
      if (links[j].child == links[k].child && links[j].parent >= 0) {
        json_t *x = json_array_get(json_object_get(s[links[k].child].header, "parents"), links[k].named);
        snprintf(buf, len, "%s names parent %s, which is none of the files given (while its parent %s is)",
                 s[links[k].child].path, str(x, "stream_id"), s[links[j].parent].path);
        return buf;
      }
  }
  /* Every file linked to the others, as one graph.  A parent outside the
   * files joins its children too (copies split from one stream that was
   * not kept): it is a node of its own, n + the first link naming it. */
  if (n < 2) return NULL;
  size_t *up = malloc((n + nlinks) * sizeof *up);
  if (!up) return NULL;
  for (size_t i = 0; i < n + nlinks; i++) up[i] = i;
  int unresolved = 0;
  for (size_t k = 0; k < nlinks; k++) {
    if (links[k].parent >= 0) up[root(up, links[k].child)] = root(up, (size_t)links[k].parent);
    unresolved |= links[k].state == LINK_COMMITTED;
    if (links[k].state != LINK_EXTERNAL) continue;
    const char *id = str(json_array_get(json_object_get(s[links[k].child].header, "parents"), links[k].named), "stream_id");
    size_t first = k;
    for (size_t j = 0; j < k && first == k; j++) {
      const char *other = links[j].state == LINK_EXTERNAL
                              ? str(json_array_get(json_object_get(s[links[j].child].header, "parents"), links[j].named),
                                    "stream_id")
                              : NULL;
      if (id && other && !strcmp(id, other)) first = j;
    }
    up[root(up, links[k].child)] = root(up, n + first);
  }
  const char *answer = NULL;
  size_t first = 0;
  while (first < n && !s[first].ok) first++;
  for (size_t i = first + 1; i < n; i++)
    if (s[i].ok && root(up, i) != root(up, first)) {
      snprintf(buf, len, "%s is not linked to %s: no chain of parents joins them%s", s[i].path, s[first].path,
               unresolved ? " (a parent named by commitment may join them: give --key on the server)" : "");
      answer = buf;
      break;
    }
  free(up);
  return answer;
}
