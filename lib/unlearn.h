/*
 * unlearn.h -- the client's unlearning objectives, as OpenUnlearning defines
 * them (shared research notes, unlearning-anchors.md 2.3-2.5), on the engine.
 *
 * Every loss here is either a weighting of per-token NLLs or (UnDIAL) a
 * soft-target cross-entropy, so one micro-batch is one forward pass over its
 * forget rows, its retain rows and (IdkDPO) its "I don't know" rows together,
 * the weights computed from that pass, and one backward:
 *
 *   ga        L = -CE(forget)
 *   graddiff  L = gamma (-CE(forget)) + alpha CE(retain)
 *   npo       L_f = -(2/beta) mean_i log sigmoid(-beta r_i), r_i = NLL_ref,i - NLL_i
 *   simnpo    L_f = -(2/beta) mean_i log sigmoid(beta (NLL_i/|y_i| - delta))
 *   wga       L_f = -mean_t p_t^beta CE_t                (weights detached)
 *   satimp    L_f = -mean_t p_t^beta1 (1-p_t)^beta2 CE_t  (weights detached)
 *   undial    L_f = mean over all positions CE(z, softmax(z_ref - beta onehot(y)))
 *   idkdpo    L_f = -(2/beta) mean_i log sigmoid(beta Delta_i), win = "I don't know"
 *   and L = gamma L_f + alpha CE(retain) for all but ga.
 *
 * The reference is the client's own copy before unlearning: per-sequence
 * reference NLLs are computed once up front (npo, idkdpo); UnDIAL's teacher is
 * a frozen copy of the model.  Each micro-batch's loss is divided by the
 * number of micro-batches in its step, as transformers' Trainer does.
 */
#ifndef MPU_UNLEARN_H
#define MPU_UNLEARN_H

#include "data.h"
#include "train.h"

enum { ALG_GA, ALG_GRADDIFF, ALG_NPO, ALG_SIMNPO, ALG_UNDIAL, ALG_SATIMP, ALG_WGA, ALG_IDKDPO, ALG_COUNT };
enum { PAIR_RANDOM = 0, PAIR_CYCLE = 1 };

typedef struct {
  int algo;
  double beta, beta2, gamma, alpha, delta;
  int pairing;             /* retain item per forget item: random (OpenUnlearning) or i mod |retain| */
  uint64_t seed;
} unlearn_config;

const char *algo_name(int algo);
int algo_from_name(const char *name); /* -1 if unknown */
/* OpenUnlearning's defaults for an algorithm. */
void unlearn_defaults(int algo, unlearn_config *c);
int algo_uses_retain(const unlearn_config *c);
/* The hyperparameters the algorithm uses, for provenance. */
json_t *unlearn_hyperparameters(const unlearn_config *c);
int algo_uses_reference(int algo);

typedef struct {
  objective base;
  unlearn_config cfg;
  const dataset *forget, *retain;
  /* idkdpo: "I don't know" answers, tokenized, and per (epoch, item) draws */
  int32_t **idk;
  uint32_t *idk_len;
  size_t nidk;
  int32_t eos, pad;
  float *ref_forget;       /* per forget item: the reference NLL (npo, idkdpo) */
  float *ref_win;          /* idkdpo: per (epoch, item) */
  int epochs;
  model *teacher;          /* undial: a frozen copy */
  /* work */
  size_t step_micro;       /* micro-batches in the current step */
  batch b;
  float *w;
  size_t wcap;
  sequence *win_rows;
  size_t win_cap;
} unlearn_objective;

/* Prepares an objective; m as it is now is the reference (its NLLs are
 * computed here; UnDIAL's teacher is a copy of it).  idk/idk_len: the
 * tokenized answers idkdpo uses (NULL for the others); eos ends them; pad
 * fills short rows. */
int unlearn_init(unlearn_objective *u, const unlearn_config *c, model *m, const dataset *forget,
                 const dataset *retain, int32_t *const *idk, const uint32_t *idk_len, size_t nidk, int32_t eos,
                 int32_t pad, int epochs, mpu_err *e);
/* Tokenizes answers (the built-in list when texts is NULL) for unlearn_init. */
int idk_tokenize(const tokenizer *t, const char *const *texts, size_t n, int32_t ***ids, uint32_t **lens, mpu_err *e);
void unlearn_free(unlearn_objective *u);
/* The built-in "I don't know" answers. */
extern const char *const idk_default[];
extern const size_t idk_default_count;

/* One micro-batch of forget items idx[0..n): for tests, the objective's
 * value and gradients with the model's current weights.  Uses the retain and
 * win rows the training would pair with them in epoch `epoch`. */
int unlearn_micro(unlearn_objective *u, model *m, const size_t *idx, size_t n, step_report *r, mpu_err *e);
/* The retain row paired with forget item `item` in epoch `epoch`. */
const sequence *unlearn_retain_row(const unlearn_objective *u, size_t item, uint32_t epoch);
/* The "I don't know" row for a forget item in an epoch (idkdpo): its prompt,
 * a drawn answer, eos.  s->ids is reallocated. */
int unlearn_win_row(unlearn_objective *u, sequence *s, size_t item, uint32_t epoch, mpu_err *e);

#endif
