/*
 * test_metrics.c -- lib/metrics.c against the Python references it restates:
 * scipy.stats.ks_2samp and hmean (scipy 1.10), sklearn's roc_auc_score
 * (1.2), NLTK's PorterStemmer (3.8), rouge_score's ROUGE-L (restated in
 * Python over NLTK's stemmer) and Python's zlib.compress.  The answers are in
 * tests/fixtures/metrics/ (make_fixtures.py); the larger samples there are
 * given as generator seeds, which gen() below expands to the same bits.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "metrics.h"
#include "tap.h"

#define DIR "tests/fixtures/metrics/"

static json_t *load(const char *name) {
  char path[256];
  snprintf(path, sizeof path, DIR "%s", name);
  json_error_t err;
  json_t *j = json_load_file(path, JSON_ALLOW_NUL, &err);
  if (!j) printf("# %s: %s (line %d)\n", path, err.text, err.line);
  return j;
}

/* make_fixtures.py's gen(): splitmix64's top 53 bits as a double, then the
 * same IEEE operations in the same order. */
static double *gen(uint64_t seed, size_t n, double quant, double scale, double shift, int grid) {
  double *v = malloc((n ? n : 1) * sizeof *v);
  uint64_t x = seed;
  for (size_t i = 0; i < n; i++) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    double u = (double)(z >> 11) * 0x1p-53;
    if (grid) u = (i + 0.5) / (double)n;
    if (quant != 0) u = floor(u * quant) / quant;
    v[i] = u * scale + shift;
  }
  return v;
}

/* A sample: a JSON array of numbers, or a generator spec. */
static double *sample(json_t *s, size_t *n) {
  if (json_is_array(s)) {
    *n = json_array_size(s);
    double *v = malloc((*n ? *n : 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = json_number_value(json_array_get(s, i));
    return v;
  }
  *n = (size_t)json_integer_value(json_object_get(s, "n"));
  return gen((uint64_t)json_integer_value(json_object_get(s, "seed")), *n,
             json_number_value(json_object_get(s, "quant")), json_number_value(json_object_get(s, "scale")),
             json_number_value(json_object_get(s, "shift")), json_is_true(json_object_get(s, "grid")));
}

static double num(json_t *o, const char *key) { return json_number_value(json_object_get(o, key)); }

/* Relative difference, 0 for equal values (zeros and infinities included);
 * below 1e-300 absolute, as subnormal p-values carry no relative precision. */
static double reldiff(double got, double want) {
  if (got == want) return 0;
  if (isnan(got) || isnan(want)) return INFINITY;
  double d = fabs(got - want);
  return fabs(want) > 1e-300 ? d / fabs(want) : d;
}

/* ------------------------------------------------------------------------ */

typedef struct {
  char path[64];
  double worst_p, worst_stat;
  int cases, exact_bits;
} ks_bucket;

TEST(ks_2samp_matches_scipy) {
  json_t *j = load("ks.json");
  CHECK(j != NULL);
  if (!j) return;
  ks_bucket b[32];
  int nb = 0;
  double worst_p = 0, worst_stat = 0;
  const char *worst_label = "";
  for (size_t c = 0; c < json_array_size(j); c++) {
    json_t *o = json_array_get(j, c);
    size_t n, m;
    double *a = sample(json_object_get(o, "a"), &n), *bv = sample(json_object_get(o, "b"), &m);
    double stat = ks_2samp_stat(a, n, bv, m), p = ks_2samp_pvalue(a, n, bv, m);
    double ds = reldiff(stat, num(o, "stat")), dp = reldiff(p, num(o, "p"));
    const char *path = json_string_value(json_object_get(o, "path"));
    int k = 0;
    while (k < nb && strcmp(b[k].path, path)) k++;
    if (k == nb && nb < 32) {
      memset(&b[nb], 0, sizeof b[nb]);
      snprintf(b[nb].path, sizeof b[nb].path, "%s", path);
      nb++;
    }
    if (k < nb) {
      b[k].cases++;
      b[k].exact_bits += dp == 0 && ds == 0;
      if (dp > b[k].worst_p) b[k].worst_p = dp;
      if (ds > b[k].worst_stat) b[k].worst_stat = ds;
    }
    if (dp > worst_p) {
      worst_p = dp;
      worst_label = json_string_value(json_object_get(o, "label"));
    }
    if (ds > worst_stat) worst_stat = ds;
    if (dp > 1e-12 || ds > 1e-12)
      printf("# %s (%s): stat %.17g want %.17g, p %.17g want %.17g\n", json_string_value(json_object_get(o, "label")),
             path, stat, num(o, "stat"), p, num(o, "p"));
    free(a);
    free(bv);
  }
  for (int k = 0; k < nb; k++)
    printf("# %-28s %4d cases, %4d bit-exact, worst p %.3g, worst stat %.3g\n", b[k].path, b[k].cases,
           b[k].exact_bits, b[k].worst_p, b[k].worst_stat);
  printf("# worst p difference %.3g (%s), worst statistic difference %.3g\n", worst_p, worst_label, worst_stat);
  CHECK(json_array_size(j) > 500);
  CHECK(worst_p <= 1e-12);
  CHECK(worst_stat <= 1e-12);
  json_decref(j);
}

TEST(ks_2samp_edges) {
  double a[] = {1, 2, 3}, b[] = {1, 2, 3}, c[] = {10, 11}, bad[] = {1, NAN};
  CHECK(isnan(ks_2samp_pvalue(a, 0, b, 3)));
  CHECK(isnan(ks_2samp_stat(a, 3, b, 0)));
  CHECK(isnan(ks_2samp_pvalue(a, 3, bad, 2)));
  CHECK(ks_2samp_pvalue(a, 3, b, 3) == 1.0);
  CHECK(ks_2samp_stat(a, 3, b, 3) == 0.0);
  CHECK(ks_2samp_stat(a, 3, c, 2) == 1.0);
  /* 3 vs 2 disjoint: 2 of the C(5,2) = 10 orderings are as extreme */
  CHECK(fabs(ks_2samp_pvalue(a, 3, c, 2) - 0.2) < 1e-15);
  /* the order of the samples and of their values does not matter, to the bit */
  double x[] = {0.3, -1.2, 0.3, 2.5, 0.0, 1.1}, y[] = {0.5, 0.3, -0.7, 3.0};
  double xr[] = {1.1, 0.0, 2.5, 0.3, -1.2, 0.3};
  double p1 = ks_2samp_pvalue(x, 6, y, 4), p2 = ks_2samp_pvalue(y, 4, x, 6), p3 = ks_2samp_pvalue(xr, 6, y, 4);
  CHECK(memcmp(&p1, &p2, sizeof p1) == 0);
  CHECK(memcmp(&p1, &p3, sizeof p1) == 0);
}

/* ------------------------------------------------------------------------ */

TEST(roc_auc_matches_sklearn) {
  json_t *j = load("auc.json");
  CHECK(j != NULL);
  if (!j) return;
  double worst = 0;
  int exact = 0;
  for (size_t c = 0; c < json_array_size(j); c++) {
    json_t *o = json_array_get(j, c), *g = json_object_get(o, "gen");
    size_t n;
    double *s;
    int *y;
    if (g) {
      n = (size_t)json_integer_value(json_object_get(g, "n"));
      uint64_t seed = (uint64_t)json_integer_value(json_object_get(g, "seed"));
      s = gen(seed, n, num(g, "quant"), 1.0, 0.0, 0);
      double *u = gen(seed + 100, n, 0, 1.0, 0.0, 0);
      y = malloc(n * sizeof *y);
      for (size_t i = 0; i < n; i++) {
        y[i] = u[i] >= 0.5;
        s[i] = s[i] + num(g, "lift") * y[i];
      }
      free(u);
    } else {
      s = sample(json_object_get(o, "scores"), &n);
      json_t *l = json_object_get(o, "labels");
      y = malloc((n ? n : 1) * sizeof *y);
      for (size_t i = 0; i < n; i++) y[i] = (int)json_integer_value(json_array_get(l, i));
    }
    double got = roc_auc(s, y, n), d = reldiff(got, num(o, "auc"));
    exact += d == 0;
    if (d > worst) worst = d;
    if (d > 1e-12) printf("# case %zu: auc %.17g want %.17g\n", c, got, num(o, "auc"));
    free(s);
    free(y);
  }
  printf("# %zu cases, %d bit-exact, worst relative difference %.3g\n", json_array_size(j), exact, worst);
  CHECK(worst <= 1e-12);
  json_decref(j);
}

TEST(roc_auc_edges) {
  double s[] = {0.1, 0.4, 0.35, 0.8};
  int y[] = {0, 0, 1, 1}, one[] = {1, 1, 1, 1}, bad[] = {0, 2, 1, 1};
  CHECK(roc_auc(s, y, 4) == 0.75); /* sklearn's documented example */
  CHECK(isnan(roc_auc(s, one, 4)));
  CHECK(isnan(roc_auc(s, bad, 4)));
  CHECK(isnan(roc_auc(s, y, 0)));
  double inf[] = {0.1, INFINITY, 0.3, 0.2};
  CHECK(isnan(roc_auc(inf, y, 4)));
  double tied[] = {1, 1, 1, 1};
  CHECK(roc_auc(tied, y, 4) == 0.5);
}

/* ------------------------------------------------------------------------ */

TEST(harmonic_mean_matches_scipy) {
  json_t *j = load("hmean.json");
  CHECK(j != NULL);
  if (!j) return;
  double worst = 0;
  int exact = 0;
  for (size_t c = 0; c < json_array_size(j); c++) {
    json_t *o = json_array_get(j, c), *g = json_object_get(o, "gen");
    size_t n;
    double *x = sample(g ? g : json_object_get(o, "x"), &n);
    double got = harmonic_mean(x, n), d = reldiff(got, num(o, "hmean"));
    exact += d == 0;
    if (d > worst) worst = d;
    if (d > 1e-12) printf("# case %zu: hmean %.17g want %.17g\n", c, got, num(o, "hmean"));
    free(x);
  }
  printf("# %zu cases, %d bit-exact, worst relative difference %.3g\n", json_array_size(j), exact, worst);
  CHECK(worst <= 1e-12);
  json_decref(j);
  double z[] = {0.0, 1.0, 2.0}, neg[] = {1.0, -1.0}, nan[] = {1.0, NAN}, one[] = {4.0};
  CHECK(harmonic_mean(z, 3) == 0.0);
  CHECK(isnan(harmonic_mean(z, 0)));
  CHECK(isnan(harmonic_mean(neg, 2)));
  CHECK(isnan(harmonic_mean(nan, 2)));
  CHECK(harmonic_mean(one, 1) == 4.0);
}

/* ------------------------------------------------------------------------ */

TEST(porter_stem_matches_nltk) {
  json_t *j = load("porter.json");
  CHECK(j != NULL);
  if (!j) return;
  json_t *pairs = json_object_get(j, "pairs");
  size_t bad = 0;
  char out[256];
  for (size_t i = 0; i < json_array_size(pairs); i++) {
    json_t *p = json_array_get(pairs, i);
    const char *w = json_string_value(json_array_get(p, 0)), *want = json_string_value(json_array_get(p, 1));
    size_t len = porter_stem(w, strlen(w), out, sizeof out);
    if (len != strlen(want) || strcmp(out, want) != 0) {
      if (bad++ < 20) printf("# stem(%s) = %s, nltk says %s\n", w, out, want);
    }
  }
  printf("# %zu words (%lld from English text), %zu differ\n", json_array_size(pairs),
         (long long)json_integer_value(json_object_get(j, "english_words")), bad);
  CHECK(json_integer_value(json_object_get(j, "english_words")) >= 2000);
  CHECK(bad == 0);
  json_decref(j);
}

TEST(porter_stem_buffer) {
  char out[4];
  /* like snprintf: the full length back, the prefix that fits written */
  CHECK_EQ_U64(porter_stem("generously", 10, out, sizeof out), 5); /* "gener" */
  CHECK(strcmp(out, "gen") == 0);
  CHECK_EQ_U64(porter_stem("news", 4, NULL, 0), 4);
  /* a long word is no harder: "ational" goes to "ate", then step 4 drops it */
  size_t n = 100000;
  char *w = malloc(n + 1), *o = malloc(n + 1);
  for (size_t i = 0; i < n; i++) w[i] = "ya"[i % 2];
  memcpy(w + n - 7, "ational", 7);
  w[n] = 0;
  CHECK_EQ_U64(porter_stem(w, n, o, n + 1), n - 7);
  CHECK(memcmp(o, w, n - 7) == 0);
  /* y's alternate consonant and vowel: an even run ends "yi" (NLTK agrees up
   * to about 990 letters, beyond which its recursion overflows Python's stack) */
  memset(w, 'y', n);
  CHECK_EQ_U64(porter_stem(w, 500, o, n + 1), 500);
  CHECK(o[498] == 'y' && o[499] == 'i');
  CHECK_EQ_U64(porter_stem(w, 501, o, n + 1), 501);
  CHECK(o[500] == 'y');
  CHECK_EQ_U64(porter_stem(w, n, o, n + 1), n);
  CHECK(o[n - 1] == 'i');
  free(w);
  free(o);
}

/* ------------------------------------------------------------------------ */

TEST(rouge_l_matches_rouge_score) {
  json_t *j = load("rouge.json");
  CHECK(j != NULL);
  if (!j) return;
  double worst = 0;
  for (size_t c = 0; c < json_array_size(j); c++) {
    json_t *o = json_array_get(j, c);
    rouge_score r;
    mpu_err e = {0};
    int rc = rouge_l(json_string_value(json_object_get(o, "prediction")),
                     json_string_value(json_object_get(o, "reference")), &r, &e);
    CHECK(rc == 0);
    double d = fmax(reldiff(r.precision, num(o, "precision")),
                    fmax(reldiff(r.recall, num(o, "recall")), reldiff(r.f1, num(o, "f1"))));
    if (d > worst) worst = d;
    if (d > 1e-12)
      printf("# pair %zu: p %.17g r %.17g f %.17g, want %.17g %.17g %.17g\n", c, r.precision, r.recall, r.f1,
             num(o, "precision"), num(o, "recall"), num(o, "f1"));
  }
  printf("# %zu pairs, worst relative difference %.3g\n", json_array_size(j), worst);
  CHECK(json_array_size(j) >= 200);
  CHECK(worst <= 1e-12);
  json_decref(j);
}

TEST(rouge_l_by_hand) {
  rouge_score r;
  mpu_err e = {0};
  /* stems meet: "running" and "runs" are both "run" */
  CHECK(rouge_l("The runner was running", "runs the runner", &r, &e) == 0);
  CHECK(r.precision == 0.5 && fabs(r.recall - 2.0 / 3) < 1e-16);
  CHECK(rouge_l("", "anything", &r, &e) == 0);
  CHECK(r.precision == 0 && r.recall == 0 && r.f1 == 0);
  CHECK(rouge_l("a b", "c d", &r, &e) == 0);
  CHECK(r.f1 == 0);
  /* "İ" lowercases to "i" and a combining dot; "K" (Kelvin) to "k" */
  CHECK(rouge_l("\xc4\xb0s \xe2\x84\xaa" "elvin", "i s kelvin", &r, &e) == 0);
  CHECK(r.precision == 1 && r.recall == 1);
}

/* ------------------------------------------------------------------------ */

TEST(zlib_length_matches_python) {
  json_t *j = load("zlib.json");
  CHECK(j != NULL);
  if (!j) return;
  for (size_t c = 0; c < json_array_size(j); c++) {
    json_t *o = json_array_get(j, c);
    const char *t = json_string_value(json_object_get(o, "text"));
    CHECK_EQ_U64(zlib_length(t, json_string_length(json_object_get(o, "text"))),
                 json_integer_value(json_object_get(o, "length")));
  }
  json_decref(j);
}

int main(void) {
  RUN(ks_2samp_matches_scipy);
  RUN(ks_2samp_edges);
  RUN(roc_auc_matches_sklearn);
  RUN(roc_auc_edges);
  RUN(harmonic_mean_matches_scipy);
  RUN(porter_stem_matches_nltk);
  RUN(porter_stem_buffer);
  RUN(rouge_l_matches_rouge_score);
  RUN(rouge_l_by_hand);
  RUN(zlib_length_matches_python);
  return tap_done();
}
