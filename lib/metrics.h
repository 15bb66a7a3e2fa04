/*
 * metrics.h -- the statistics of unlearning evaluations (TOFU, OpenUnlearning).
 *
 * Each function reproduces the Python reference that those evaluations call,
 * named in its comment, down to its quirks; tests/unit/test_metrics.c checks
 * them against fixtures the references made (tests/fixtures/metrics/).
 * Every function is deterministic: same inputs, same bits, on any thread.
 */
#ifndef MPU_METRICS_H
#define MPU_METRICS_H

#include <stddef.h>

#include "err.h"

/* scipy.stats.ks_2samp(a, b).pvalue: two-sided, method "auto" (exact when
 * max(n, m) <= 10000, else asymptotic; scipy falls back to asymptotic when the
 * exact computation is not possible), ties handled as scipy does.
 * NAN where scipy raises or warns instead of answering: n or m is 0, a value
 * is NaN; also when out of memory. */
double ks_2samp_pvalue(const double *a, size_t n, const double *b, size_t m);
/* The KS statistic D itself, as scipy reports it: on the exact path it is
 * rounded to a multiple of 1/lcm(n, m), as scipy rounds it. NAN as above. */
double ks_2samp_stat(const double *a, size_t n, const double *b, size_t m);

/* sklearn.metrics.roc_auc_score(labels, scores): labels 0/1, ties get half
 * credit (the trapezoid/average-rank result). NAN when one class is absent,
 * and where sklearn raises: a label other than 0 or 1, a score not finite;
 * also when out of memory. */
double roc_auc(const double *scores, const int *labels, size_t n);

/* scipy.stats.hmean of positive values; 0 if any value is 0; NAN if n == 0.
 * NAN also where scipy gives NaN or raises: a NaN, a negative value. */
double harmonic_mean(const double *x, size_t n);

/* ROUGE-L as Google's rouge_score package computes it with use_stemmer=True:
 * tokenize (lowercase; every char not [a-z0-9] becomes a space; split on
 * whitespace; tokens of length > 3 stemmed with NLTK's PorterStemmer in its
 * default NLTK_EXTENSIONS mode), LCS of the token sequences;
 * recall = LCS/|ref|, precision = LCS/|pred|, f = 2PR/(P+R) (0 when LCS is 0).
 * The texts are UTF-8. Python lowercases with Unicode rules, so two non-ASCII
 * characters become letters: U+0130 (to "i" and a combining dot, which splits
 * the token) and U+212A KELVIN SIGN (to "k"). All other non-ASCII characters
 * and invalid bytes separate tokens.
 * Returns 0 or MPU_EUSAGE (out of memory). */
typedef struct {
  double precision, recall, f1;
} rouge_score;
int rouge_l(const char *prediction, const char *reference, rouge_score *out, mpu_err *e);

/* NLTK PorterStemmer().stem(word) (NLTK_EXTENSIONS mode) of a lowercase ASCII
 * word: writes the stem into out (cap bytes, NUL-terminated); returns its length.
 * As NLTK does, an uppercase word is lowercased but not looked up in the
 * irregular forms ("SKIES" stems as "skies" would without them, to "ski").
 * Like snprintf, the return is the stem's full length even when cap is too
 * small; the stem is never longer than the word. */
size_t porter_stem(const char *word, size_t len, char *out, size_t cap);

/* len(zlib.compress(text.encode("utf-8"))) as Python computes it (level 6).
 * 0 when zlib fails (out of memory): a zlib stream is never empty. */
size_t zlib_length(const char *text, size_t len);

#endif
