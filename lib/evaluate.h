/*
 * evaluate.h -- TOFU's per-item measurements of a model (OpenUnlearning's
 * definitions, shared research notes unlearning-anchors.md 2.6):
 *
 *   prob         exp(-NLL(a|q) / |a|), the length-normalised answer probability
 *   prob_norm    P(a) / (P(a) + sum_j P(a_pert,j)) with P = that probability
 *   truth_ratio  R = P_wrong / P_correct, P_correct = exp(-avgNLL(correct)),
 *                P_wrong = exp(-mean_j avgNLL(a_pert,j)); correct is the
 *                paraphrased answer (forget and retain sets) or the answer
 *                (general-knowledge sets)
 *   rouge        ROUGE-L of the greedy answer against the answer
 *   es           extraction strength: 1 - k/|a|, k the first answer position
 *                from which teacher-forced argmax predictions all match
 *   mia scores   LOSS = avgNLL, ZLib = avgNLL / len(zlib(answer)),
 *                Min-K% = -mean of the lowest k fraction of the answer's
 *                token log-probabilities; higher = less member-like
 *
 * Aggregates (means, KS p-value, AUCs, harmonic mean) are the caller's, from
 * lib/metrics.h.
 */
#ifndef MPU_EVALUATE_H
#define MPU_EVALUATE_H

#include "data.h"
#include "model.h"

typedef struct {
  char *id, *question, *answer;
  char *paraphrased;      /* NULL when the set has none */
  char **perturbed;
  size_t nperturbed;
} eval_item;

typedef struct {
  eval_item *items;
  size_t n;
} eval_set;

/* Reads TOFU's JSON Lines fields: question, answer, and where present
 * paraphrased_answer and perturbed_answer (a list, or one string). */
int eval_set_load(eval_set *s, const char *path, mpu_err *e);
void eval_set_free(eval_set *s);

typedef struct {
  double nll;             /* of the answer, summed over its tokens */
  size_t tokens;
  double prob, prob_norm, truth_ratio, es;
  double mia_loss, mia_zlib, mia_mink;
  char *generation;       /* NULL when not generated */
  double rouge_recall, rouge_f1;
} eval_result;

typedef struct {
  int truth_vs_answer;    /* the truth ratio's "correct" is the answer, not the paraphrase */
  int generate;           /* greedy answers and ROUGE */
  size_t max_new;         /* tokens per greedy answer */
  double mink_k;          /* Min-K%'s fraction */
  size_t batch;           /* sequences per forward pass */
} eval_options;

/* Measures every item of s (results in out[0..s->n); unavailable values are
 * NAN, e.g. the truth ratio without perturbed answers).  tok decodes the
 * greedy answers. */
int eval_set_run(model *m, const data_options *d, int32_t pad, const eval_set *s, const eval_options *o,
                 eval_result *out, mpu_err *e);
void eval_results_free(eval_result *r, size_t n);

/* 1 - k/n, k the first position from which hit[] is all true (0 if all are). */
double extraction_strength(const uint8_t *hit, size_t n);
/* -mean of the max(1, int(n*k)) smallest of lp[0..n) (sorts lp). */
double min_k_score(double *lp, size_t n, double k);

#endif
