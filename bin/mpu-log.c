/*
 * mpu-log -- the provenance graph across files: which stream was made from
 * which (fan-out at split, fan-in at invert and denoise, rounds in
 * sequence), each with its stage, tool, parameters, digests and signers,
 * as an indented text graph, JSON (--json) or Graphviz (--dot).
 *
 * Everything shown is what the streams' headers and trailers already carry
 * (secrets appear only as the commitments the headers hold); links are
 * resolved and checked by lib/chain.h, as `mpu verify --chain` does.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "cli.h"
#include "jsonx.h"
#include "secret.h"
#include "sign.h"

static void help(void) {
  printf("Usage: mpu log [OPTION]... STREAM...\n"
         "Show the provenance graph of the streams given: for each, the stage that wrote\n"
         "it, the tool, its parameters, its digests, its signers, and its parents --\n"
         "matched to the other files given by stream id and header digest, and checked\n"
         "as 'mpu verify --chain' checks them; parents not given are shown as external.\n"
         "Each stream is read and verified to its end.\n\n"
         "Options:\n"
         "      --json           the graph as one JSON object (streams and edges)\n"
         "      --dot            the graph in Graphviz's DOT language (dot -Tsvg)\n"
         "      --trust FILE     check signatures against the public keys in FILE\n"
         "                       (repeat for more keys); without it signers are shown\n"
         "                       unchecked\n"
         "      --key FILE       the server key: match parents named by commitment to\n"
         "                       the files given (on the server only)\n" CLI_COMMON_HELP
         "\nExit status: 0 ok, 1 a stream failed verification or a link is broken,\n"
         "2 usage or I/O error.\n");
}

static const char *const state_names[] = {"ok", "broken", "external", "committed"};

/* Depth of each stream: 0 for those with no parent among the files, else
 * one more than its deepest parent (bounded: a crafted loop cannot spin). */
static void depths(size_t n, const chain_link *links, size_t nl, int *depth) {
  for (size_t i = 0; i < n; i++) depth[i] = 0;
  for (size_t round = 0; round < n; round++) {
    int changed = 0;
    for (size_t k = 0; k < nl; k++)
      if (links[k].parent >= 0 && depth[links[k].child] < depth[links[k].parent] + 1) {
        depth[links[k].child] = depth[links[k].parent] + 1;
        changed = 1;
      }
    if (!changed) break;
  }
}

/* The parents a stream names, as the graph resolved them. */
static json_t *parents_json(const chain_stream *st, size_t c, const chain_link *links, size_t nl) {
  json_t *arr = json_array();
  for (size_t k = 0; k < nl; k++) {
    if (links[k].child != c) continue;
    const chain_link *L = &links[k];
    json_t *o = json_deep_copy(json_array_get(json_object_get(st[c].header, "parents"), L->named));
    if (!json_is_object(o)) {
      json_decref(o);
      o = json_object();
    }
    json_object_set_new(o, "state", json_string(state_names[L->state]));
    if (L->parent >= 0) json_object_set_new(o, "file", json_string(st[L->parent].path));
    if (L->why) json_object_set_new(o, "error", json_string(L->why));
    json_array_append_new(arr, o);
  }
  return arr;
}

static json_t *graph_json(const chain_stream *st, size_t n, const chain_link *links, size_t nl, const int *depth) {
  json_t *streams = json_array(), *edges = json_array();
  for (size_t i = 0; i < n; i++) {
    const chain_stream *s = &st[i];
    json_t *o = json_pack("{s:s, s:b}", "file", s->path, "ok", s->ok);
    if (!s->ok) {
      json_object_set_new(o, "error", json_string(s->err.msg));
      json_array_append_new(streams, o);
      continue;
    }
    json_object_set_new(o, "depth", json_integer(depth[i]));
    json_object_set_new(o, "stream_id", json_string(s->stream_id));
    json_object_set_new(o, "header_digest", json_pack("{s:s}", "xxh3_128", s->header_digest));
    json_object_set_new(o, "content_digest", json_pack("{s:s}", "xxh3_128", s->content_digest));
    json_object_set_new(o, "stream_digest", json_pack("{s:s}", "xxh3_128", s->stream_digest));
    if (s->has_signed_digest) {
      char hex[65];
      sign_hex(s->signed_digest, 32, hex);
      json_object_set_new(o, "signed_digest", json_pack("{s:s}", "blake2b_256", hex));
    }
    static const char *const carried[] = {"copies", "stage", "tool", "mpu"};
    for (size_t k = 0; k < sizeof carried / sizeof *carried; k++) {
      json_t *v = json_object_get(s->header, carried[k]);
      if (v) json_object_set_new(o, !strcmp(carried[k], "mpu") ? "round" : carried[k], json_deep_copy(v));
    }
    json_object_set_new(o, "parents", parents_json(st, i, links, nl));
    json_object_set(o, "signatures", s->sig.report);
    json_array_append_new(streams, o);
  }
  for (size_t k = 0; k < nl; k++)
    if (links[k].parent >= 0)
      json_array_append_new(edges, json_pack("{s:s, s:s, s:s}", "from", st[links[k].parent].path, "to",
                                             st[links[k].child].path, "state", state_names[links[k].state]));
  return json_pack("{s:o, s:o}", "streams", streams, "edges", edges);
}

/* First 12 hex digits, as people compare ids. */
static const char *shortid(const char *hex, char buf[16]) {
  snprintf(buf, 16, "%.12s", hex ? hex : "?");
  return buf;
}

static void print_text(const chain_stream *st, size_t n, const chain_link *links, size_t nl, const int *depth) {
  /* Roots first, then each generation, in the order the files were given. */
  int maxd = 0;
  for (size_t i = 0; i < n; i++) maxd = depth[i] > maxd ? depth[i] : maxd;
  char b1[16], b2[16], b3[16];
  for (int d = 0; d <= maxd; d++)
    for (size_t i = 0; i < n; i++) {
      const chain_stream *s = &st[i];
      if (depth[i] != d && s->ok) continue;
      if (!s->ok) {
        if (d == 0) printf("* %s: FAILED: %s\n", s->path, s->err.msg);
        continue;
      }
      int ind = 2 * d;
      json_t *stage = json_object_get(s->header, "stage"), *tool = json_object_get(s->header, "tool");
      printf("%*s* %s  %s", ind, "", s->path, json_string_value(json_object_get(stage, "name")) ?: "?");
      if (tool)
        printf(" (%s %s)", json_string_value(json_object_get(tool, "name")) ?: "?",
               json_string_value(json_object_get(tool, "version")) ?: "?");
      long long copies = (long long)json_integer_value(json_object_get(s->header, "copies"));
      printf(", %lld cop%s\n", copies, copies == 1 ? "y" : "ies");
      printf("%*s  id %s  header %s  content %s\n", ind, "", shortid(s->stream_id, b1), shortid(s->header_digest, b2),
             shortid(s->content_digest, b3));
      char *params = json_canonical(json_object_get(stage, "params"));
      if (params && strcmp(params, "{}")) printf("%*s  params %s\n", ind, "", params);
      free(params);
      json_t *round = json_object_get(s->header, "mpu");
      if (round) {
        char *r = json_canonical(round);
        printf("%*s  round %s\n", ind, "", r ? r : "?");
        free(r);
      }
      printf("%*s  parents:", ind, "");
      int any = 0;
      for (size_t k = 0; k < nl; k++) {
        const chain_link *L = &links[k];
        if (L->child != i) continue;
        json_t *named = json_array_get(json_object_get(s->header, "parents"), L->named);
        printf("%s ", any++ ? "," : "");
        if (L->state == LINK_OK) printf("%s", st[L->parent].path);
        else if (L->state == LINK_BROKEN) printf("%s (BROKEN: %s)", st[L->parent].path, L->why);
        else if (L->state == LINK_EXTERNAL)
          printf("external %s (not given)", shortid(json_string_value(json_object_get(named, "stream_id")), b1));
        else
          printf("committed %s (not checkable without the server key)",
                 shortid(json_string_value(json_object_get(named, "commitment")), b1));
      }
      printf("%s\n", any ? "" : " none");
      printf("%*s  children:", ind, "");
      any = 0;
      for (size_t k = 0; k < nl; k++)
        if (links[k].parent == (long)i) printf("%s %s", any++ ? "," : "", st[links[k].child].path);
      printf("%s\n", any ? "" : " none");
      printf("%*s  signed:", ind, "");
      size_t j;
      json_t *x;
      json_array_foreach(s->sig.report, j, x)
        printf("%s %s (%s)", j ? "," : "", json_string_value(json_object_get(x, "key_id")) ?: "?",
               json_string_value(json_object_get(x, "status")));
      printf("%s\n", json_array_size(s->sig.report) ? "" : " no");
    }
}

/* A DOT string literal. */
static void dot_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') putchar('\\');
    if (*s == '\n') fputs("\\n", stdout);
    else putchar(*s);
  }
  putchar('"');
}

static void print_dot(const chain_stream *st, size_t n, const chain_link *links, size_t nl) {
  printf("digraph mpu {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n");
  char label[8192], b1[16];
  for (size_t i = 0; i < n; i++) {
    const chain_stream *s = &st[i];
    if (s->ok)
      snprintf(label, sizeof label, "%s\n%s\n%s", s->path,
               json_string_value(json_object_get(json_object_get(s->header, "stage"), "name")) ?: "?",
               shortid(s->content_digest, b1));
    else
      snprintf(label, sizeof label, "%s\nFAILED", s->path);
    printf("  ");
    dot_str(s->path);
    printf(" [label=");
    dot_str(label);
    printf("%s];\n", s->ok ? "" : ", color=red");
  }
  for (size_t k = 0; k < nl; k++) {
    const chain_link *L = &links[k];
    printf("  ");
    if (L->parent >= 0) {
      dot_str(st[L->parent].path);
      printf(" -> ");
      dot_str(st[L->child].path);
      printf("%s;\n", L->state == LINK_BROKEN ? " [color=red, label=\"broken\"]" : "");
      continue;
    }
    /* a parent outside the files given: a dashed node of its own */
    json_t *named = json_array_get(json_object_get(st[L->child].header, "parents"), L->named);
    const char *id = json_string_value(json_object_get(named, "stream_id"));
    const char *cm = json_string_value(json_object_get(named, "commitment"));
    char node[128];
    snprintf(node, sizeof node, "%s:%s", id ? "external" : "committed", id ? id : cm ? cm : "?");
    snprintf(label, sizeof label, "%s\n%s", id ? "external" : "committed", shortid(id ? id : cm, b1));
    dot_str(node);
    printf(" [label=");
    dot_str(label);
    printf(", style=dashed];\n  ");
    dot_str(node);
    printf(" -> ");
    dot_str(st[L->child].path);
    printf(" [style=dashed];\n");
  }
  printf("}\n");
}

int main(int argc, char **argv) {
  cli_init("mpu-log", argc, argv);
  enum { OPT_DOT = OPT_PROGRAM, OPT_TRUST, OPT_KEY };
  static const struct option longopts[] = {CLI_COMMON_OPTIONS, {"json", no_argument, 0, OPT_JSON},
                                           {"dot", no_argument, 0, OPT_DOT},
                                           {"trust", required_argument, 0, OPT_TRUST},
                                           {"key", required_argument, 0, OPT_KEY}, {0, 0, 0, 0}};
  cli_common c = CLI_COMMON_DEFAULT;
  int as_json = 0, as_dot = 0, opt;
  const char *key_path = NULL;
  sign_trust trust = {0};
  while ((opt = getopt_long(argc, argv, "hVq", longopts, NULL)) != -1) {
    int r = cli_common_option(&c, opt, optarg);
    if (r < 0) return 2;
    if (r) continue;
    switch (opt) {
    case 'h': help(); return 0;
    case 'V': cli_version(); return 0;
    case OPT_JSON: as_json = 1; break;
    case OPT_DOT: as_dot = 1; break;
    case OPT_KEY: key_path = optarg; break;
    case OPT_TRUST: {
      mpu_err e = {0};
      if (sign_trust_add_file(&trust, optarg, &e)) return cli_report(&e);
      break;
    }
    default: return cli_usage_error("bad option");
    }
  }
  if (as_json && as_dot) return cli_usage_error("--json and --dot: choose one");
  size_t n = (size_t)(argc - optind);
  if (!n) return cli_usage_error("give the streams to draw (files)");
  server_key key, *keyp = NULL;
  if (key_path) {
    mpu_err e = {0};
    char warning[256];
    if (key_load(&key, key_path, warning, sizeof warning, &e)) return cli_report(&e);
    if (warning[0] && !c.quiet) cli_msg("warning: %s", warning);
    keyp = &key;
  }
  chain_stream *st = calloc(n, sizeof *st);
  int *depth = calloc(n, sizeof *depth);
  if (!st || !depth) return cli_usage_error("out of memory");
  int worst = 0;
  for (size_t i = 0; i < n; i++) {
    if (chain_read(&st[i], argv[optind + i], trust.n ? &trust : NULL, c.progress)) {
      cli_report(&st[i].err);
      if (st[i].err.status > worst) worst = st[i].err.status;
    }
    st[i].path = cli_input_name(st[i].path);
  }
  chain_link *links;
  size_t nl = chain_links(st, n, keyp, &links);
  depths(n, links, nl, depth);
  for (size_t k = 0; k < nl; k++)
    if (links[k].state == LINK_BROKEN) {
      cli_msg("broken link: %s: parent %s %s", st[links[k].child].path, st[links[k].parent].path, links[k].why);
      if (worst < MPU_EVERIFY) worst = MPU_EVERIFY;
    }
  if (as_json) {
    json_t *g = graph_json(st, n, links, nl, depth);
    char *s = json_canonical(g);
    printf("%s\n", s ? s : "{}");
    free(s);
    json_decref(g);
  } else if (as_dot) {
    print_dot(st, n, links, nl);
  } else {
    print_text(st, n, links, nl, depth);
  }
  free(links);
  for (size_t i = 0; i < n; i++) chain_stream_free(&st[i]);
  free(st);
  free(depth);
  sign_trust_free(&trust);
  if (keyp) key_wipe(keyp);
  return worst;
}
