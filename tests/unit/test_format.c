/*
 * test_format.c -- the .mpuc library against itself and against XXH3 and
 * zstd computed independently: round trips under every encoding and every
 * way of cutting the input and output, truncation at every byte, a flipped
 * bit at every byte, layout violations, canonical JSON, sniffing.
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "mpuc.h"
#include "tap.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

typedef struct {
  uint8_t *p;
  size_t len, cap;
} buf;

static void buf_put(buf *b, const void *s, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

/* The model written in the round-trip tests. */
typedef struct {
  const char *name;
  const char *dtype;
  int ndim;
  uint64_t dims[3];
  int shared;
  int blob;
  size_t bytes;
} item;

static const item items3[] = {
  {"tokenizer.json", "U8", 1, {0}, 0, 1, 5000},
  {"empty.txt", "U8", 1, {0}, 0, 1, 0},
  {"model.embed_tokens.weight", "BF16", 2, {300, 64}, 1, 0, 300 * 64 * 2},
  {"model.layers.0.self_attn.q_proj.weight", "F32", 2, {64, 100}, 0, 0, 64 * 100 * 4},
  {"model.layers.0.input_layernorm.weight", "F16", 1, {64}, 0, 0, 128},
  {"odd.bias", "I8", 1, {7}, 0, 0, 7},
  {"zero.size", "F32", 2, {0, 5}, 0, 0, 0},
};

static char *header_for(const item *it, size_t n, int copies) {
  buf b = {0};
  char tmp[512];
  int len = snprintf(tmp, sizeof tmp, "{\"copies\":%d,\"parents\":[],\"stage\":{\"name\":\"test\"},\"blobs\":[", copies);
  buf_put(&b, tmp, (size_t)len);
  int first = 1;
  for (size_t i = 0; i < n; i++) {
    if (!it[i].blob) continue;
    len = snprintf(tmp, sizeof tmp, "%s{\"name\":\"%s\",\"bytes\":%zu}", first ? "" : ",", it[i].name, it[i].bytes);
    buf_put(&b, tmp, (size_t)len);
    first = 0;
  }
  buf_put(&b, "],\"tensors\":[", 13);
  first = 1;
  for (size_t i = 0; i < n; i++) {
    if (it[i].blob) continue;
    len = snprintf(tmp, sizeof tmp, "%s{\"name\":\"%s\",\"dtype\":\"%s\",\"shape\":[", first ? "" : ",", it[i].name,
                   it[i].dtype);
    buf_put(&b, tmp, (size_t)len);
    for (int d = 0; d < it[i].ndim; d++) {
      len = snprintf(tmp, sizeof tmp, "%s%llu", d ? "," : "", (unsigned long long)it[i].dims[d]);
      buf_put(&b, tmp, (size_t)len);
    }
    buf_put(&b, it[i].shared && copies > 1 ? "],\"shared\":true}" : "]}", it[i].shared && copies > 1 ? 16 : 2);
    first = 0;
  }
  buf_put(&b, "]}", 3);
  return (char *)b.p;
}

/* Deterministic content of entry i, copy c: float-like bytes. */
static void fill(uint8_t *p, size_t n, size_t i, uint32_t c) {
  uint64_t s = 1234567 + i * 7919 + c * 104729;
  for (size_t k = 0; k < n; k++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    p[k] = (k % 4 == 3) ? (uint8_t)(0x3c + (s >> 62)) : (uint8_t)(s >> 56);
  }
}

static void drain(mpuc_writer *w, buf *out, size_t piece) {
  uint8_t tmp[70000];
  if (piece > sizeof tmp) piece = sizeof tmp;
  for (;;) {
    mpuc_out o = {tmp, piece, 0};
    size_t left = mpuc_writer_flush(w, &o);
    buf_put(out, tmp, o.pos);
    if (!left) break;
  }
}

/* Writes the model; returns 0 on success and the content digest. */
static int write_model(buf *out, const item *it, size_t n, int copies, int level, int group, uint32_t chunk,
                       char digest[33]) {
  mpuc_writer *w = mpuc_writer_create();
  mpuc_writer_set(w, MPUC_W_LEVEL, level);
  mpuc_writer_set(w, MPUC_W_BYTEGROUP, group);
  mpuc_writer_set(w, MPUC_W_CHUNK_SIZE, chunk);
  char *h = header_for(it, n, copies);
  int rc = mpuc_writer_begin(w, h, strlen(h));
  free(h);
  if (rc) {
    printf("# begin: %s\n", mpuc_writer_message(w));
    mpuc_writer_free(w);
    return -1;
  }
  drain(w, out, 1 + next_rand() % 5000);
  for (size_t i = 0; i < n && !rc; i++) {
    int ncopies = it[i].blob || (it[i].shared && copies > 1) ? 1 : copies;
    for (int c = 0; c < ncopies && !rc; c++) {
      mpuc_entry e = {0};
      e.name = it[i].name;
      e.name_len = strlen(it[i].name);
      e.kind = it[i].blob ? MPUC_KIND_BLOB : MPUC_KIND_TENSOR;
      e.dtype = mpuc_dtype_from_name(it[i].dtype);
      e.ndim = (unsigned)it[i].ndim;
      memcpy(e.dims, it[i].dims, sizeof it[i].dims);
      e.copy = it[i].blob ? 0 : ncopies == 1 && copies > 1 ? MPUC_COPY_SHARED : (uint32_t)c;
      e.raw_size = it[i].bytes;
      rc = mpuc_writer_entry_begin(w, &e);
      uint8_t *data = malloc(it[i].bytes + 1);
      fill(data, it[i].bytes, i, (uint32_t)c);
      size_t off = 0;
      while (!rc && off < it[i].bytes) {
        size_t piece = 1 + next_rand() % 9000;
        if (piece > it[i].bytes - off) piece = it[i].bytes - off;
        mpuc_in in = {data + off, piece, 0};
        while (!rc && in.pos < in.size) {
          rc = mpuc_writer_data(w, &in);
          drain(w, out, 1 + next_rand() % 70000);
        }
        off += piece;
      }
      free(data);
      if (!rc) rc = mpuc_writer_entry_end(w);
      drain(w, out, 1 + next_rand() % 70000);
    }
  }
  if (!rc) rc = mpuc_writer_end(w, "{\"note\":\"x\"}", 12);
  drain(w, out, 1 + next_rand() % 70000);
  if (rc) printf("# write: %s\n", mpuc_writer_message(w));
  if (digest) memcpy(digest, mpuc_writer_content_digest(w), 33);
  mpuc_writer_free(w);
  return rc;
}

typedef struct {
  int entries, ends, headers, end;
  int mismatches;
  mpuc_status status;
  char msg[600];
  char digest[33];
} read_result;

/* Reads a stream in pieces of random size, checking each entry's bytes. */
static read_result read_model(const uint8_t *s, size_t len, const item *it, size_t n, size_t max_in,
                              size_t max_out, int discard) {
  read_result R = {0};
  mpuc_reader *r = mpuc_reader_create();
  size_t off = 0;
  uint8_t *got = malloc(1 << 20);
  size_t got_len = 0;
  uint8_t *obuf = malloc(max_out);
  size_t cur = 0;
  uint32_t cur_copy = 0;
  mpuc_status st = MPUC_OK;
  for (;;) {
    size_t piece = 1 + next_rand() % max_in;
    if (piece > len - off) piece = len - off;
    mpuc_in in = {s + off, piece, 0};
    for (;;) {
      mpuc_out o = {discard ? NULL : obuf, 1 + next_rand() % max_out, 0};
      mpuc_event ev;
      st = mpuc_reader_next(r, &in, &o, &ev);
      if (st) break;
      if (!discard && o.pos) {
        memcpy(got + got_len, obuf, o.pos);
        got_len += o.pos;
      }
      if (ev == MPUC_EV_NEED_INPUT) break;
      if (ev == MPUC_EV_HEADER) R.headers++;
      if (ev == MPUC_EV_ENTRY) {
        const mpuc_entry *e = mpuc_reader_entry(r);
        R.entries++;
        got_len = 0;
        for (cur = 0; cur < n; cur++)
          if (strlen(it[cur].name) == e->name_len && memcmp(it[cur].name, e->name, e->name_len) == 0) break;
        cur_copy = e->copy == MPUC_COPY_SHARED ? 0 : e->copy;
      }
      if (ev == MPUC_EV_ENTRY_END) {
        const mpuc_entry *e = mpuc_reader_entry(r);
        R.ends++;
        uint8_t *want = malloc(it[cur].bytes + 1);
        fill(want, it[cur].bytes, cur, cur_copy);
        if (!discard && (got_len != it[cur].bytes || memcmp(got, want, got_len) != 0)) R.mismatches++;
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits(want, it[cur].bytes));
        if (memcmp(c.digest, e->xxh3, 16) != 0) R.mismatches++;
        free(want);
      }
      if (ev == MPUC_EV_END) R.end++;
    }
    off += piece;
    if (st || off == len) break;
  }
  if (!st) st = mpuc_reader_finish(r);
  R.status = st;
  snprintf(R.msg, sizeof R.msg, "%s", mpuc_reader_message(r));
  if (!st) memcpy(R.digest, mpuc_reader_content_digest(r), 33);
  free(got);
  free(obuf);
  mpuc_reader_free(r);
  return R;
}

#define NITEMS (sizeof items3 / sizeof *items3)

TEST(round_trip_every_encoding) {
  int levels[] = {0, 1, 3};
  for (int li = 0; li < 3; li++)
    for (int group = 0; group < 2; group++)
      for (int copies = 1; copies <= 3; copies += 2) {
        buf s = {0};
        char wd[33];
        CHECK(write_model(&s, items3, NITEMS, copies, levels[li], group, 4096, wd) == 0);
        for (int trial = 0; trial < 4; trial++) {
          size_t max_in = trial == 0 ? 1 : trial == 1 ? 7 : 100000;
          read_result R = read_model(s.p, s.len, items3, NITEMS, max_in, trial == 3 ? 1 << 20 : 3000, trial == 2);
          if (R.status) printf("# level %d group %d copies %d: %s\n", levels[li], group, copies, R.msg);
          CHECK(R.status == MPUC_OK);
          CHECK(R.headers == 1 && R.end == 1);
          CHECK_EQ_U64(R.entries, 2 + (copies > 1 ? 1 : copies) + 4 * copies);
          CHECK(R.ends == R.entries);
          CHECK(R.mismatches == 0);
          CHECK(strcmp(R.digest, wd) == 0);
        }
        free(s.p);
      }
}

/* The writer's output must not depend on how the caller cut its input or
 * drained its output, or on the compression level (for the content digest). */
TEST(output_independent_of_buffering) {
  buf a = {0}, b = {0}, c = {0};
  char da[33], db[33], dc[33];
  write_model(&a, items3, NITEMS, 3, 1, 1, 4096, da);
  write_model(&b, items3, NITEMS, 3, 1, 1, 4096, db);
  write_model(&c, items3, NITEMS, 3, 0, 0, 8192, dc);
  CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
  CHECK(strcmp(da, db) == 0);
  CHECK(strcmp(da, dc) == 0); /* content digest ignores codec and chunking */
  CHECK(!(a.len == c.len && memcmp(a.p, c.p, a.len) == 0));
  free(a.p);
  free(b.p);
  free(c.p);
}

/* Every .mpuc is a valid sequence of zstd frames: libzstd itself walks it. */
TEST(stream_is_zstd_frames) {
  for (int level = 0; level <= 1; level++) {
    buf s = {0};
    write_model(&s, items3, NITEMS, 2, level, 1, 4096, NULL);
    size_t off = 0, frames = 0;
    int ok = 1;
    while (off < s.len) {
      size_t f = ZSTD_findFrameCompressedSize(s.p + off, s.len - off);
      if (ZSTD_isError(f)) {
        ok = 0;
        break;
      }
      off += f;
      frames++;
    }
    CHECK(ok && off == s.len && frames > 10);
    free(s.p);
  }
}

TEST(truncation_at_every_byte) {
  buf s = {0};
  write_model(&s, items3, NITEMS, 2, 1, 1, 4096, NULL);
  int bad = 0;
  for (size_t cut = 0; cut < s.len; cut += (cut < 200 || s.len - cut < 400) ? 1 : 97) {
    read_result R = read_model(s.p, cut, items3, NITEMS, 100000, 100000, 1);
    int ok = cut == 0 ? R.status == MPUC_ERR_NOT_MPUC : R.status == MPUC_ERR_TRUNCATED;
    if (ok && cut && !strstr(R.msg, "truncated")) ok = 0;
    if (!ok && bad++ < 5) printf("# cut %zu: status %d: %s\n", cut, R.status, R.msg);
  }
  CHECK(bad == 0);
  free(s.p);
}

TEST(flipped_bit_anywhere_is_detected) {
  buf s = {0};
  write_model(&s, items3, NITEMS, 2, 1, 1, 4096, NULL);
  uint8_t *copy = malloc(s.len);
  int missed = 0, wrong_class = 0;
  for (size_t pos = 0; pos < s.len; pos += (pos < 600 || s.len - pos < 3000) ? 1 : 13) {
    memcpy(copy, s.p, s.len);
    copy[pos] ^= (uint8_t)(1u << (pos % 8));
    read_result R = read_model(copy, s.len, items3, NITEMS, 100000, 100000, 1);
    if (R.status == MPUC_OK) {
      if (missed++ < 5) printf("# flip at %zu undetected\n", pos);
    } else if (!mpuc_status_is_verification(R.status)) {
      if (wrong_class++ < 5) printf("# flip at %zu: status %d: %s\n", pos, R.status, R.msg);
    }
  }
  CHECK(missed == 0);
  CHECK(wrong_class == 0);
  free(copy);
  free(s.p);
}

TEST(trailing_garbage_and_concatenation_refused) {
  buf s = {0};
  write_model(&s, items3, 2, 1, 1, 1, 4096, NULL);
  buf t = {0};
  buf_put(&t, s.p, s.len);
  buf_put(&t, "x", 1);
  read_result R = read_model(t.p, t.len, items3, 2, 100000, 100000, 1);
  CHECK(R.status == MPUC_ERR_CORRUPT && strstr(R.msg, "trailing"));
  uint8_t *twice = malloc(s.len);
  memcpy(twice, s.p, s.len);
  buf_put(&s, twice, s.len);
  free(twice);
  R = read_model(s.p, s.len, items3, 2, 100000, 100000, 1);
  CHECK(R.status == MPUC_ERR_CORRUPT);
  free(s.p);
  free(t.p);
}

TEST(writer_refuses_layout_violations) {
  const char *h = "{\"copies\":2,\"parents\":[],\"stage\":{\"name\":\"t\"},\"blobs\":[],"
                  "\"tensors\":[{\"name\":\"a\",\"dtype\":\"F32\",\"shape\":[2]},"
                  "{\"name\":\"b\",\"dtype\":\"F32\",\"shape\":[2]}]}";
  mpuc_writer *w = mpuc_writer_create();
  CHECK(mpuc_writer_begin(w, h, strlen(h)) == MPUC_OK);
  mpuc_entry e = {.name = "a", .name_len = 1, .dtype = MPUC_DT_F32, .ndim = 1, .dims = {2}, .copy = 1};
  CHECK(mpuc_writer_entry_begin(w, &e) == MPUC_ERR_USAGE); /* copy 1 before copy 0 */
  CHECK(strstr(mpuc_writer_message(w), "copy 1") != NULL);
  mpuc_writer_free(w);

  w = mpuc_writer_create();
  mpuc_writer_begin(w, h, strlen(h));
  e.copy = 0;
  CHECK(mpuc_writer_entry_begin(w, &e) == MPUC_OK);
  float x[3] = {1, 2, 3};
  mpuc_in in = {x, 12, 0};
  CHECK(mpuc_writer_data(w, &in) == MPUC_ERR_USAGE); /* 12 bytes into an 8-byte tensor */
  mpuc_writer_free(w);

  w = mpuc_writer_create();
  mpuc_writer_begin(w, h, strlen(h));
  mpuc_writer_entry_begin(w, &e);
  in = (mpuc_in){x, 8, 0};
  mpuc_writer_data(w, &in);
  mpuc_writer_entry_end(w);
  CHECK(mpuc_writer_end(w, NULL, 0) == MPUC_ERR_USAGE); /* copy 2 and tensor b missing */
  mpuc_writer_free(w);

  const char *dup = "{\"copies\":1,\"parents\":[],\"stage\":{\"name\":\"t\"},\"blobs\":[{\"name\":\"a\",\"bytes\":1}],"
                    "\"tensors\":[{\"name\":\"a\",\"dtype\":\"F32\",\"shape\":[2]}]}";
  w = mpuc_writer_create();
  CHECK(mpuc_writer_begin(w, dup, strlen(dup)) == MPUC_ERR_USAGE);
  CHECK(strstr(mpuc_writer_message(w), "twice") != NULL);
  mpuc_writer_free(w);
}

TEST(stream_id_is_derived_from_the_header) {
  const char *h1 = "{\"copies\":1,\"parents\":[],\"stage\":{\"name\":\"t\",\"params\":{\"x\":1}},\"blobs\":[],\"tensors\":[]}";
  const char *h1b = "{ \"tensors\":[], \"stage\":{\"params\":{\"x\":1.0e0},\"name\":\"t\"},\"blobs\":[],\"parents\":[],\"copies\":1}";
  const char *h2 = "{\"copies\":1,\"parents\":[],\"stage\":{\"name\":\"t\",\"params\":{\"x\":2}},\"blobs\":[],\"tensors\":[]}";
  mpuc_writer *a = mpuc_writer_create(), *b = mpuc_writer_create(), *c = mpuc_writer_create();
  mpuc_writer_begin(a, h1, strlen(h1));
  mpuc_writer_begin(b, h1b, strlen(h1b));
  mpuc_writer_begin(c, h2, strlen(h2));
  /* h1b is h1 with other spacing and key order, but 1.0e0 is a real, not the integer 1 */
  CHECK(strcmp(mpuc_writer_stream_id(a), mpuc_writer_stream_id(c)) != 0);
  CHECK(strlen(mpuc_writer_stream_id(a)) == 32);
  size_t len;
  const char *j = mpuc_writer_header_json(b, &len);
  CHECK(strstr(j, "\"params\":{\"x\":1.0}") != NULL);
  CHECK(strncmp(j, "{\"blobs\":[],\"copies\":1,", 23) == 0);
  mpuc_writer_free(a);
  mpuc_writer_free(b);
  mpuc_writer_free(c);
}

static int formats_as(const char *in, const char *want) {
  size_t n;
  char *s = mpuc_json_format(in, strlen(in), MPUC_JSON_CANONICAL, &n);
  int ok = s && strcmp(s, want) == 0;
  if (!ok) printf("# %s -> %s (want %s)\n", in, s ? s : "NULL", want);
  free(s);
  return ok;
}

/* Numbers as Python's repr writes them (json.dumps uses repr for floats). */
TEST(canonical_json_numbers_and_strings) {
  CHECK(formats_as("[1e-05, 0.02, 1.0, 1e16, 123.456, -0.0, 5e-324, 1.7976931348623157e308]",
                   "[1e-05,0.02,1.0,1e+16,123.456,-0.0,5e-324,1.7976931348623157e+308]"));
  CHECK(formats_as("[0.0001, 0.00001, 1e15, 123456789012345678.0, 1.5e-7, 10000.0, 0.1]",
                   "[0.0001,1e-05,1000000000000000.0,1.2345678901234568e+17,1.5e-07,10000.0,0.1]"));
  CHECK(formats_as("{\"b\": 1, \"a\": [true, false, null], \"\\u00e9\": \"x\\ny\\u0001\\\"\"}",
                   "{\"a\":[true,false,null],\"b\":1,\"\xc3\xa9\":\"x\\ny\\u0001\\\"\"}"));
  CHECK(formats_as("{\"rope_theta\": 500000.0, \"vocab_size\": 128256}", "{\"rope_theta\":500000.0,\"vocab_size\":128256}"));
  size_t n;
  char *p = mpuc_json_format("{\"b\":[1,{}],\"a\":\"\xc3\xa9\",\"c\":[]}", 28, MPUC_JSON_PRETTY, &n);
  CHECK(p && strcmp(p, "{\n  \"a\": \"\\u00e9\",\n  \"b\": [\n    1,\n    {}\n  ],\n  \"c\": []\n}\n") == 0);
  free(p);
  CHECK(mpuc_json_format("{\"a\":1,\"a\":2}", 13, 0, &n) == NULL); /* duplicate keys */
}

TEST(sniff_names_common_wrong_inputs) {
  uint8_t st[32] = {20, 0, 0, 0, 0, 0, 0, 0, '{', '"'};
  CHECK(strstr(mpuc_sniff(st, sizeof st), "safetensors") != NULL);
  CHECK(strstr(mpuc_sniff("GGUF\3\0\0\0", 8), "GGUF") != NULL);
  const char *lfs = "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n";
  CHECK(strstr(mpuc_sniff(lfs, strlen(lfs)), "git-lfs") != NULL);
  const char *html = "\n<!DOCTYPE html><html><body>404</body></html>";
  CHECK(strstr(mpuc_sniff(html, strlen(html)), "HTML") != NULL);
  CHECK(strstr(mpuc_sniff("", 0), "empty") != NULL);
  uint8_t rnd[64];
  for (int i = 0; i < 64; i++) rnd[i] = (uint8_t)(next_rand() >> 33 | 0x80);
  CHECK(strstr(mpuc_sniff(rnd, sizeof rnd), "binary") != NULL);
}

TEST(dtype_registry) {
  CHECK(mpuc_dtype_from_name("BF16") == MPUC_DT_BF16);
  CHECK(mpuc_dtype_from_name("bf16") == MPUC_DT_INVALID);
  CHECK(mpuc_dtype_bits(MPUC_DT_F4) == 4);
  uint64_t dims[2] = {3, 5}, bytes;
  CHECK(mpuc_tensor_bytes(MPUC_DT_F4, 2, dims, &bytes) == MPUC_ERR_LIMIT); /* 60 bits */
  dims[1] = 6;
  CHECK(mpuc_tensor_bytes(MPUC_DT_F4, 2, dims, &bytes) == MPUC_OK && bytes == 9);
  uint64_t huge[2] = {1ull << 40, 1ull << 40};
  CHECK(mpuc_tensor_bytes(MPUC_DT_F32, 2, huge, &bytes) == MPUC_ERR_LIMIT);
  for (int d = 1; d < MPUC_DT_COUNT; d++) CHECK(mpuc_dtype_from_name(mpuc_dtype_name(d)) == d);
}

/* The vector paths of byte grouping equal the scalar definition. */
void bytegroup_encode(uint8_t *dst, const uint8_t *src, size_t n, unsigned w);
void bytegroup_decode(uint8_t *dst, const uint8_t *src, size_t n, unsigned w);
TEST(bytegroup_matches_its_definition) {
  uint8_t src[1031], enc[1031], dec[1031];
  for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)(next_rand() >> 40);
  for (unsigned w = 1; w <= 8; w *= 2)
    for (size_t n = 0; n <= sizeof src; n += n < 80 ? 1 : 97) {
      bytegroup_encode(enc, src, n, w);
      size_t m = n / w;
      int ok = 1;
      for (size_t i = 0; i < m; i++)
        for (unsigned j = 0; j < w; j++) ok &= enc[j * m + i] == src[w * i + j];
      ok &= memcmp(enc + m * w, src + m * w, n - m * w) == 0;
      bytegroup_decode(dec, enc, n, w);
      ok &= memcmp(dec, src, n) == 0;
      if (!ok) printf("# width %u, %zu bytes\n", w, n);
      CHECK(ok);
    }
}

int main(void) {
  RUN(round_trip_every_encoding);
  RUN(output_independent_of_buffering);
  RUN(stream_is_zstd_frames);
  RUN(truncation_at_every_byte);
  RUN(flipped_bit_anywhere_is_detected);
  RUN(trailing_garbage_and_concatenation_refused);
  RUN(writer_refuses_layout_violations);
  RUN(stream_id_is_derived_from_the_header);
  RUN(canonical_json_numbers_and_strings);
  RUN(sniff_names_common_wrong_inputs);
  RUN(dtype_registry);
  RUN(bytegroup_matches_its_definition);
  return tap_done();
}
