/*
 * mkvector -- writes the spec's synthetic test vectors through format/ alone,
 * for the shapes no program makes yet:
 *   mkvector multicopy   3 copies, a shared tensor, blobs, an empty tensor
 *   mkvector empty       no blobs, no tensors
 * Content is a fixed arithmetic pattern; the stream goes to stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpuc.h"

static int flush(mpuc_writer *w) {
  uint8_t buf[1 << 16];
  for (;;) {
    mpuc_out o = {buf, sizeof buf, 0};
    size_t left = mpuc_writer_flush(w, &o);
    if (fwrite(buf, 1, o.pos, stdout) != o.pos) return -1;
    if (!left) return 0;
  }
}

static int entry(mpuc_writer *w, const char *name, int kind, int dtype, unsigned ndim, const uint64_t *dims,
                 uint32_t copy, const uint8_t *data, uint64_t size) {
  mpuc_entry e = {.name = name, .name_len = strlen(name), .kind = kind, .dtype = dtype, .ndim = ndim,
                  .copy = copy, .raw_size = size};
  for (unsigned i = 0; i < ndim; i++) e.dims[i] = dims[i];
  if (mpuc_writer_entry_begin(w, &e) || flush(w)) return -1;
  mpuc_in in = {data, size, 0};
  while (in.pos < in.size)
    if (mpuc_writer_data(w, &in) || flush(w)) return -1;
  return mpuc_writer_entry_end(w) || flush(w) ? -1 : 0;
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "";
  mpuc_writer *w = mpuc_writer_create();
  mpuc_writer_set(w, MPUC_W_CHUNK_SIZE, 4096); /* several chunks even for small tensors */
  int rc;
  if (!strcmp(which, "empty")) {
    const char *h = "{\"blobs\":[],\"copies\":1,\"parents\":[],\"stage\":{\"name\":\"mkvector\",\"params\":{\"vector\":\"empty\"}},"
                    "\"tensors\":[],\"tool\":{\"name\":\"mkvector\",\"version\":\"1\"}}";
    rc = mpuc_writer_begin(w, h, strlen(h)) || flush(w);
  } else if (!strcmp(which, "multicopy")) {
    const char *h =
        "{\"blobs\":[{\"name\":\"notes.txt\",\"bytes\":14}],\"copies\":3,\"parents\":[],"
        "\"config\":null,\"stage\":{\"name\":\"mkvector\",\"params\":{\"vector\":\"multicopy\"}},"
        "\"tensors\":[{\"name\":\"embed\",\"dtype\":\"BF16\",\"shape\":[40,64],\"shared\":true},"
        "{\"name\":\"layers.0.w\",\"dtype\":\"F32\",\"shape\":[48,32]},"
        "{\"name\":\"layers.0.b\",\"dtype\":\"F16\",\"shape\":[5]},"
        "{\"name\":\"layers.0.empty\",\"dtype\":\"F32\",\"shape\":[0,4]},"
        "{\"name\":\"mask\",\"dtype\":\"BOOL\",\"shape\":[3,3]}],"
        "\"tool\":{\"name\":\"mkvector\",\"version\":\"1\"}}";
    rc = mpuc_writer_begin(w, h, strlen(h)) || flush(w);
    uint8_t *buf = malloc(1 << 16);
    for (int i = 0; i < (1 << 16); i++) buf[i] = (uint8_t)((i * 37 + (i >> 8) * 11) ^ (i % 4 == 3 ? 0x3c : 0));
    uint64_t d_embed[2] = {40, 64}, d_w[2] = {48, 32}, d_b[1] = {5}, d_e[2] = {0, 4}, d_m[2] = {3, 3};
    rc = rc || entry(w, "notes.txt", MPUC_KIND_BLOB, MPUC_DT_U8, 1, (uint64_t[]){14}, 0,
                     (const uint8_t *)"hello, vector\n", 14);
    rc = rc || entry(w, "embed", MPUC_KIND_TENSOR, MPUC_DT_BF16, 2, d_embed, MPUC_COPY_SHARED, buf, 40 * 64 * 2);
    for (uint32_t c = 0; c < 3 && !rc; c++) rc = entry(w, "layers.0.w", 0, MPUC_DT_F32, 2, d_w, c, buf + 100 * c, 48 * 32 * 4);
    for (uint32_t c = 0; c < 3 && !rc; c++) rc = entry(w, "layers.0.b", 0, MPUC_DT_F16, 1, d_b, c, buf + 7 * c, 10);
    for (uint32_t c = 0; c < 3 && !rc; c++) rc = entry(w, "layers.0.empty", 0, MPUC_DT_F32, 2, d_e, c, buf, 0);
    for (uint32_t c = 0; c < 3 && !rc; c++) rc = entry(w, "mask", 0, MPUC_DT_BOOL, 2, d_m, c, buf + c, 9);
    free(buf);
  } else {
    fprintf(stderr, "usage: mkvector multicopy|empty > out.mpuc\n");
    return 2;
  }
  rc = rc || mpuc_writer_end(w, NULL, 0) || flush(w);
  if (rc) fprintf(stderr, "mkvector: %s\n", mpuc_writer_message(w));
  mpuc_writer_free(w);
  return rc ? 1 : 0;
}
