/*
 * fixture.h -- what the unit tests against PyTorch fixtures share: loading a
 * fixture model, reading expected tensors, and comparing with tolerances.
 * Header-only (static) because each unit test is one program.
 */
#ifndef MPU_TEST_FIXTURE_H
#define MPU_TEST_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "hf.h"
#include "model.h"
#include "safetensors.h"

/* Imports a fixture's safetensors (a directory, or a file with config_path)
 * into a stream file, then loads it. */
static int fixture_model(const char *path, const char *config_path, model *m) {
  char tmp[] = "/tmp/mpu-test-fixture-XXXXXX";
  int fd = mkstemp(tmp);
  if (fd < 0) return -1;
  close(fd);
  mpu_err e = {0};
  hf_source src;
  ms_writer w;
  stream_options o = {.level = 0, .bytegroup = 0, .chunk = 1 << 20, .force = 1};
  int rc = hf_source_open(&src, path, config_path, &e);
  if (!rc) rc = hf_import(&src, &w, tmp, &o, NULL, 0, &e);
  hf_source_close(&src);
  ms_reader in;
  if (!rc) rc = ms_reader_open(&in, tmp, &e);
  if (!rc) rc = model_load(m, &in, -1, &e);
  ms_reader_close(&in);
  unlink(tmp);
  if (rc) printf("# %s: %s\n", path, e.msg);
  return rc;
}

/* Normwise relative error of a against the reference r, and the largest
 * elementwise relative error over elements above 1e-3 of the largest. */
static void fixture_compare(const float *a, const float *r, size_t n, double *normwise, double *elementwise) {
  double mx = 0, err = 0, el = 0;
  for (size_t i = 0; i < n; i++) {
    if (fabs(r[i]) > mx) mx = fabs(r[i]);
    if (fabs(a[i] - r[i]) > err) err = fabs(a[i] - r[i]);
  }
  for (size_t i = 0; i < n; i++)
    if (fabs(r[i]) > 1e-3 * mx) {
      double d = fabs(a[i] - r[i]) / fabs(r[i]);
      if (d > el) el = d;
    }
  *normwise = mx > 0 ? err / mx : err;
  *elementwise = el;
}

/* A whole F32 tensor of an expected-values file (NULL if absent). */
static float *fixture_tensor(st_file *f, const char *name, size_t *n) {
  long i = st_find(f, name);
  if (i < 0) return NULL;
  size_t bytes = (size_t)(f->t[i].end - f->t[i].begin);
  float *p = malloc(bytes + 4);
  mpu_err e = {0};
  if (!p || st_read(f, (size_t)i, 0, p, bytes, &e)) {
    free(p);
    return NULL;
  }
  *n = bytes / 4;
  return p;
}

/* Elements of parameter tensor t of m. */
static size_t fixture_param_len(const model *m, size_t t) {
  return (t + 1 < m->ntensors ? m->offset[t + 1] : m->nparams) - m->offset[t];
}

#endif
