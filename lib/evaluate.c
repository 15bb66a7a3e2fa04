/*
 * evaluate.c -- TOFU's per-item measurements (see evaluate.h).
 */
#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "decode.h"
#include "metrics.h"

/* ---------------------------------------------------------------- sets */
static void item_free(eval_item *it) {
  free(it->id);
  free(it->question);
  free(it->answer);
  free(it->paraphrased);
  for (size_t j = 0; j < it->nperturbed; j++) free(it->perturbed[j]);
  free(it->perturbed);
}

static char *dup_string(json_t *v) { return json_is_string(v) ? strdup(json_string_value(v)) : NULL; }

static int item_line(void *ctx, char *line, size_t len, mpu_err *e) {
  eval_set *s = ctx;
  json_error_t je;
  json_t *j = json_loadb(line, len, 0, &je);
  if (!j || !json_is_object(j)) {
    if (j) json_decref(j);
    return mpu_fail(e, MPU_EUSAGE, "not a JSON object%s%s", j ? "" : ": ", j ? "" : je.text);
  }
  eval_item it = {0};
  it.question = dup_string(json_object_get(j, "question"));
  it.answer = dup_string(json_object_get(j, "answer"));
  it.paraphrased = dup_string(json_object_get(j, "paraphrased_answer"));
  json_t *id = json_object_get(j, "id"), *pert = json_object_get(j, "perturbed_answer");
  char num[32];
  snprintf(num, sizeof num, "%zu", s->n + 1);
  it.id = json_is_string(id) ? strdup(json_string_value(id)) : strdup(num);
  int rc = 0;
  if (!it.question || !it.answer) rc = mpu_fail(e, MPU_EUSAGE, "an item needs \"question\" and \"answer\" strings");
  if (!rc && json_is_string(pert)) {
    it.perturbed = malloc(sizeof *it.perturbed);
    it.perturbed[it.nperturbed++] = strdup(json_string_value(pert));
  } else if (!rc && json_is_array(pert)) {
    size_t i;
    json_t *v;
    it.perturbed = calloc(json_array_size(pert) + 1, sizeof *it.perturbed);
    json_array_foreach(pert, i, v) {
      if (!json_is_string(v)) {
        rc = mpu_fail(e, MPU_EUSAGE, "perturbed_answer[%zu] is not a string", i);
        break;
      }
      it.perturbed[it.nperturbed++] = strdup(json_string_value(v));
    }
  } else if (!rc && pert && !json_is_null(pert)) {
    rc = mpu_fail(e, MPU_EUSAGE, "perturbed_answer is neither a list nor a string");
  }
  json_decref(j);
  eval_item *grown = rc ? NULL : realloc(s->items, (s->n + 1) * sizeof *s->items);
  if (!rc && !grown) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  if (rc) {
    item_free(&it);
    return rc;
  }
  s->items = grown;
  s->items[s->n++] = it;
  return 0;
}

int eval_set_load(eval_set *s, const char *path, mpu_err *e) {
  memset(s, 0, sizeof *s);
  int rc = lines_each(path, item_line, s, e);
  if (!rc && !s->n) rc = mpu_fail(e, MPU_EUSAGE, "%s: no items", path);
  return rc;
}

void eval_set_free(eval_set *s) {
  for (size_t i = 0; i < s->n; i++) item_free(&s->items[i]);
  free(s->items);
  memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------- scoring */
/* One sequence to score: an item's answer (kind 0), its paraphrase (1) or
 * perturbed answer j (2). */
typedef struct {
  size_t item;
  int kind;
  size_t j;
  sequence seq;
} row;

static int by_ascending(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double extraction_strength(const uint8_t *hit, size_t n) {
  size_t k = n; /* k*: just past the last miss, 0 when all hit */
  while (k > 0 && hit[k - 1]) k--;
  return n ? 1.0 - (double)k / (double)n : NAN;
}


double min_k_score(double *lp, size_t n, double k) {
  if (!n) return NAN;
  qsort(lp, n, sizeof *lp, by_ascending);
  size_t num = (size_t)((double)n * k); /* int(len * k), at least 1, as OpenUnlearning */
  if (num < 1) num = 1;
  if (num > n) num = n;
  double s = 0;
  for (size_t i = 0; i < num; i++) s += lp[i];
  return -s / (double)num;
}

/* What the answer row alone gives: extraction strength and Min-K%. */
static void answer_stats(const model *m, size_t r, size_t T, const int32_t *targets, double mink_k, double *lp,
                         uint8_t *hit, eval_result *out) {
  size_t V = (size_t)m->c.vocab, n = 0;
  for (size_t t = 0; t < T; t++) {
    size_t p = r * T + t;
    if (targets[p] < 0) continue;
    const float *z = m->logits + p * V;
    size_t best = 0; /* the first of equal maxima, as torch.argmax */
    for (size_t v = 1; v < V; v++)
      if (z[v] > z[best]) best = v;
    lp[n] = -(double)m->nll[p];
    hit[n] = (int32_t)best == targets[p];
    n++;
  }
  out->es = extraction_strength(hit, n);
  out->mia_mink = min_k_score(lp, n, mink_k);
}

int eval_set_run(model *m, const data_options *d, int32_t pad, const eval_set *s, const eval_options *o,
                 eval_result *out, mpu_err *e) {
  memset(out, 0, s->n * sizeof *out);
  size_t nrows = 0;
  for (size_t i = 0; i < s->n; i++) nrows += 1 + (s->items[i].paraphrased != NULL) + s->items[i].nperturbed;
  row *rows = calloc(nrows + 1, sizeof *rows);
  double *para = malloc((s->n + 1) * sizeof *para), *pert_sum = calloc(s->n + 1, sizeof *pert_sum),
         *pert_prob = calloc(s->n + 1, sizeof *pert_prob);
  if (!rows || !para || !pert_sum || !pert_prob) {
    free(rows);
    free(para);
    free(pert_sum);
    free(pert_prob);
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  int rc = 0;
  size_t k = 0;
  for (size_t i = 0; !rc && i < s->n; i++) {
    const eval_item *it = &s->items[i];
    para[i] = NAN;
    rows[k] = (row){i, 0, 0, {0}};
    rc = sequence_qa(&rows[k++].seq, it->question, it->answer, d, e);
    if (!rc && it->paraphrased) {
      rows[k] = (row){i, 1, 0, {0}};
      rc = sequence_qa(&rows[k++].seq, it->question, it->paraphrased, d, e);
    }
    for (size_t j = 0; !rc && j < it->nperturbed; j++) {
      rows[k] = (row){i, 2, j, {0}};
      rc = sequence_qa(&rows[k++].seq, it->question, it->perturbed[j], d, e);
    }
    if (rc) mpu_fail_ctx(e, "item %s", it->id);
  }
  /* forward passes over batches of rows */
  size_t B = o->batch ? o->batch : 8;
  batch b = {0};
  const sequence **ptrs = malloc(B * sizeof *ptrs);
  double *lp = NULL;
  uint8_t *hit = NULL;
  size_t lp_cap = 0;
  if (!rc && !ptrs) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  for (size_t first = 0; !rc && first < k; first += B) {
    size_t n = k - first < B ? k - first : B;
    for (size_t r = 0; r < n; r++) ptrs[r] = &rows[first + r].seq;
    if ((rc = batch_rows(&b, ptrs, n, pad, e)) || (rc = model_plan(m, b.B, b.T, e))) break;
    if (model_forward(m, b.ids, b.targets, b.B, b.T)) {
      rc = model_error(m, e);
      break;
    }
    if ((rc = model_fetch_logits(m, e))) break; /* answer_stats reads them */
    if (b.T > lp_cap) {
      free(lp);
      free(hit);
      lp = malloc((lp_cap = b.T) * sizeof *lp);
      hit = malloc(lp_cap);
      if (!lp || !hit) {
        rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
        break;
      }
    }
    for (size_t r = 0; r < n; r++) {
      const row *w = &rows[first + r];
      double nll = 0;
      size_t tokens = 0;
      for (size_t t = 0; t < b.T; t++)
        if (b.targets[r * b.T + t] >= 0) {
          nll += m->nll[r * b.T + t];
          tokens++;
        }
      double avg = nll / (double)(tokens ? tokens : 1);
      eval_result *res = &out[w->item];
      if (w->kind == 0) {
        res->nll = nll;
        res->tokens = tokens;
        res->prob = exp(-avg);
        res->mia_loss = avg;
        res->mia_zlib = avg / (double)zlib_length(s->items[w->item].answer, strlen(s->items[w->item].answer));
        answer_stats(m, r, b.T, b.targets, o->mink_k, lp, hit, res);
      } else if (w->kind == 1) {
        para[w->item] = avg;
      } else {
        pert_sum[w->item] += avg;
        pert_prob[w->item] += exp(-avg);
      }
    }
  }
  /* the per-item ratios */
  for (size_t i = 0; !rc && i < s->n; i++) {
    const eval_item *it = &s->items[i];
    eval_result *res = &out[i];
    double correct = o->truth_vs_answer ? res->mia_loss : para[i];
    res->truth_ratio = it->nperturbed && !isnan(correct) ? exp(correct - pert_sum[i] / (double)it->nperturbed) : NAN;
    res->prob_norm = it->nperturbed ? res->prob / (res->prob + pert_prob[i]) : NAN;
    res->rouge_recall = res->rouge_f1 = NAN;
  }
  /* greedy answers */
  for (size_t i = 0; !rc && o->generate && i < s->n; i++) {
    int32_t *prompt = NULL, *gen = NULL;
    size_t np = 0, ng = 0, len = 0;
    decode_stop stop;
    char *text = NULL;
    rc = question_ids(d, s->items[i].question, &prompt, &np, e);
    if (!rc) rc = greedy_decode(m, prompt, np, o->max_new, d->eos, &gen, &ng, &stop, e);
    if (!rc) rc = tok_decode(d->tok, gen, ng, 1, &text, &len, e);
    rouge_score rs;
    if (!rc) rc = rouge_l(text, s->items[i].answer, &rs, e);
    if (!rc) {
      out[i].generation = text;
      out[i].rouge_recall = rs.recall;
      out[i].rouge_f1 = rs.f1;
    } else {
      free(text);
      mpu_fail_ctx(e, "item %s", s->items[i].id);
    }
    free(prompt);
    free(gen);
  }
  for (size_t r = 0; r < k; r++) free(rows[r].seq.ids);
  free(rows);
  free(ptrs);
  free(lp);
  free(hit);
  free(para);
  free(pert_sum);
  free(pert_prob);
  batch_free(&b);
  return rc;
}

void eval_results_free(eval_result *r, size_t n) {
  for (size_t i = 0; r && i < n; i++) free(r[i].generation);
}
