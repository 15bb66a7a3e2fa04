/*
 * protocol.c -- MPU's server-side math and records (see protocol.h and
 * spec/protocol.md).
 */
#include "protocol.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "jsonx.h"
#include "prov.h"
#include "reparam.h"
#include "stage.h"

/* ---------------------------------------------------------------- the record */
static const char *alphas_name(int m) { return m == ALPHAS_PAPER ? "paper" : m == ALPHAS_LIST ? "list" : "secret"; }

json_t *round_record(const round_params *p) {
  json_t *r = json_pack("{s:i, s:I, s:i, s:f, s:s, s:s, s:s, s:s}", "protocol", MPU_PROTOCOL, "round",
                        (json_int_t)p->round, "copies", p->copies, "kappa", p->kappa, "alphas", alphas_name(p->alphas_mode),
                        "scope", p->scope == SCOPE_ALL ? "all" : "layers", "dtype", p->keep_dtype ? "keep" : "f32",
                        "model", p->model_commit);
  json_object_set_new(r, "base", p->has_base ? json_string(p->base_commit) : json_null());
  if (p->copy) json_object_set_new(r, "copy", json_integer(p->copy));
  return r;
}

int round_record_parse(json_t *header, round_params *p, const char *what, mpu_err *e) {
  memset(p, 0, sizeof *p);
  json_t *r = json_object_get(header, "mpu");
  if (!json_is_object(r))
    return mpu_fail(e, MPU_EVERIFY, "%s carries no MPU round record: it was not made by 'mpu perturb' (or its descendants)",
                    what);
  json_t *proto = json_object_get(r, "protocol"), *round = json_object_get(r, "round"), *copies = json_object_get(r, "copies");
  json_t *kappa = json_object_get(r, "kappa"), *alphas = json_object_get(r, "alphas"), *scope = json_object_get(r, "scope");
  json_t *dtype = json_object_get(r, "dtype"), *model = json_object_get(r, "model"), *base = json_object_get(r, "base");
  json_t *copy = json_object_get(r, "copy");
  if (!json_is_integer(proto) || json_integer_value(proto) != MPU_PROTOCOL)
    return mpu_fail(e, MPU_EVERIFY, "%s: MPU protocol version %lld is not %d", what,
                    (long long)json_integer_value(proto), MPU_PROTOCOL);
  if (!json_is_integer(round) || !json_is_integer(copies) || !json_is_number(kappa) || !json_is_string(alphas) ||
      !json_is_string(scope) || !json_is_string(dtype) || !json_is_string(model) ||
      json_string_length(model) != 64 || (copy && !json_is_integer(copy)))
    return mpu_fail(e, MPU_EVERIFY, "%s: malformed MPU round record", what);
  p->round = (uint64_t)json_integer_value(round);
  p->copies = (int)json_integer_value(copies);
  p->kappa = json_number_value(kappa);
  const char *a = json_string_value(alphas);
  p->alphas_mode = !strcmp(a, "paper") ? ALPHAS_PAPER : !strcmp(a, "list") ? ALPHAS_LIST : ALPHAS_SECRET;
  p->scope = !strcmp(json_string_value(scope), "all") ? SCOPE_ALL : SCOPE_LAYERS;
  p->keep_dtype = !strcmp(json_string_value(dtype), "keep");
  snprintf(p->model_commit, sizeof p->model_commit, "%s", json_string_value(model));
  p->has_base = json_is_string(base);
  if (p->has_base) snprintf(p->base_commit, sizeof p->base_commit, "%s", json_string_value(base));
  p->copy = copy ? (int)json_integer_value(copy) : 0;
  if (p->copies < 2 || p->copies > MAX_PERTURB_COPIES || p->copy < 0 || p->copy > p->copies)
    return mpu_fail(e, MPU_EVERIFY, "%s: MPU round record has copies %d, copy %d", what, p->copies, p->copy);
  return 0;
}

int round_same(const round_params *a, const round_params *b) {
  return a->round == b->round && a->copies == b->copies && a->kappa == b->kappa && a->alphas_mode == b->alphas_mode &&
         a->scope == b->scope && a->keep_dtype == b->keep_dtype && a->has_base == b->has_base &&
         !strcmp(a->model_commit, b->model_commit) && (!a->has_base || !strcmp(a->base_commit, b->base_commit));
}

void round_alphas(round_params *p, const round_secrets *rs) {
  int M = p->copies;
  if (p->alphas_mode == ALPHAS_PAPER) {
    for (int k = 0; k < M; k++) p->alphas[k] = 1.0 + (double)k / (double)(M - 1);
  } else if (p->alphas_mode == ALPHAS_SECRET) {
    /* One alpha per stratum of [1, 2): a secret permutation of the strata and
     * a secret place in each, so the alphas are distinct and spread. */
    uint32_t key[2], perm[MAX_PERTURB_COPIES];
    round_philox_key(rs, PURPOSE_ALPHA, 0, 0, key);
    permutation_make(perm, (size_t)M, key);
    for (int k = 0; k < M; k++) {
      rng_u4 ctr = {{(uint32_t)k, 0, 0x616c7068u /* "alph" */, 0}};
      double u = rng_open01(rng_philox(ctr, key[0], key[1]).v[0]);
      p->alphas[k] = 1.0 + ((double)perm[k] + u) / (double)M;
    }
  }
}

void model_identity(char out[66], const char *stream_id, const char *header_digest) {
  snprintf(out, 66, "%s:%s", stream_id, header_digest);
}

/* ---------------------------------------------------------------- headers */
int tensor_perturbed(const group_tensor *t, int scope) {
  if (!t->f32) return 0;
  if (t->role >= 0 && t->layer >= 0) return 1;
  return scope == SCOPE_ALL && t->role >= 0;
}

static int listing_perturbed(json_t *item, int scope) {
  const char *name = json_string_value(json_object_get(item, "name"));
  int layer, role = llama_role(name, &layer);
  int dt = mpuc_dtype_from_name(json_string_value(json_object_get(item, "dtype")));
  if (!is_float_dtype(dt) || role < 0) return 0;
  return layer >= 0 || scope == SCOPE_ALL;
}

json_t *perturb_header(json_t *model_header, const round_params *p) {
  json_t *h = prov_header("perturb", NULL);
  prov_copy_model(h, model_header);
  json_object_set_new(h, "copies", json_integer(p->copies));
  json_t *parent = json_pack("{s:s}", "commitment", p->model_commit);
  json_array_append_new(json_object_get(h, "parents"), parent);
  json_object_set_new(h, "blobs", json_deep_copy(json_object_get(model_header, "blobs")));
  json_t *listing = json_array(), *t;
  size_t i;
  json_array_foreach(json_object_get(model_header, "tensors"), i, t) {
    json_t *item = json_pack("{s:O, s:O, s:O}", "name", json_object_get(t, "name"), "dtype", json_object_get(t, "dtype"),
                             "shape", json_object_get(t, "shape"));
    if (!listing_perturbed(t, p->scope)) json_object_set_new(item, "shared", json_true());
    else if (!p->keep_dtype) json_object_set_new(item, "dtype", json_string("F32"));
    json_array_append_new(listing, item);
  }
  json_object_set_new(h, "tensors", listing);
  round_params rec = *p;
  rec.copy = 0;
  json_object_set_new(h, "mpu", round_record(&rec));
  return h;
}

json_t *split_header(json_t *perturb_hdr, const char *perturb_id, const char *perturb_digest, int k) {
  json_t *h = prov_header("split", json_pack("{s:i}", "copy", k));
  prov_copy_model(h, perturb_hdr);
  json_array_append_new(json_object_get(h, "parents"), json_pack("{s:s, s:{s:s}}", "stream_id", perturb_id,
                                                                  "header_digest", "xxh3_128", perturb_digest));
  json_object_set_new(h, "blobs", json_deep_copy(json_object_get(perturb_hdr, "blobs")));
  json_t *listing = json_deep_copy(json_object_get(perturb_hdr, "tensors")), *t;
  size_t i;
  json_array_foreach(listing, i, t) json_object_del(t, "shared");
  json_object_set_new(h, "tensors", listing);
  json_t *rec = json_deep_copy(json_object_get(perturb_hdr, "mpu"));
  json_object_set_new(rec, "copy", json_integer(k));
  json_object_set_new(h, "mpu", rec);
  return h;
}

int header_ids(json_t *h, char id[33], char digest[33], mpu_err *e) {
  char *j = json_canonical(h);
  mpuc_writer *w = mpuc_writer_create();
  int rc = !j || !w ? mpu_fail(e, MPU_EUSAGE, "out of memory") : 0;
  if (!rc && mpuc_writer_begin(w, j, strlen(j)))
    rc = mpu_fail(e, MPU_EUSAGE, "header: %s", mpuc_writer_message(w));
  if (!rc) {
    snprintf(id, 33, "%s", mpuc_writer_stream_id(w));
    snprintf(digest, 33, "%s", mpuc_writer_header_digest(w));
  }
  mpuc_writer_free(w);
  free(j);
  return rc;
}

/* ---------------------------------------------------------------- perturbation */
int perturber_init(perturber *pt, const server_key *k, json_t *model_header, const char *model_id,
                   const char *model_digest, const round_params *p, mpu_err *e) {
  memset(pt, 0, sizeof *pt);
  if (llama_config_parse(json_object_get(model_header, "config"), &pt->c, e))
    return mpu_fail_ctx(e, "cannot reparameterize this model");
  pt->p = *p;
  char ident[66];
  model_identity(ident, model_id, model_digest);
  key_commit(k, "model", ident, pt->p.model_commit);
  round_derive(&pt->rs, k, model_id, model_digest, p->round);
  round_alphas(&pt->p, &pt->rs);
  for (int i = 0; i < p->copies; i++) {
    if (!(pt->p.alphas[i] > 0)) return mpu_fail(e, MPU_EUSAGE, "alpha %d is %g; alphas must be positive", i + 1, pt->p.alphas[i]);
    pt->alpha_f[i] = (float)pt->p.alphas[i];
  }
  return 0;
}

void perturber_wipe(perturber *pt) {
  round_wipe(&pt->rs);
  memset(pt->p.alphas, 0, sizeof pt->p.alphas);
  memset(pt->alpha_f, 0, sizeof pt->alpha_f);
}

double group_sigma(const tensor_group *g, const tensor_group *base, double kappa, int scope) {
  /* Sums in stream order, in double: the same on every machine. */
  double ss = 0;
  size_t n = 0;
  for (size_t i = 0; i < g->n; i++) {
    const group_tensor *t = &g->t[i];
    if (!tensor_perturbed(t, scope)) continue;
    const float *b = base ? base->t[i].f32 : NULL;
    for (size_t j = 0; j < t->elems; j++) {
      double d = (double)t->f32[j] - (b ? (double)b[j] : 0.0);
      ss += d * d;
    }
    n += t->elems;
  }
  return n ? kappa * sqrt(ss / (double)n) : 0.0;
}

static void rotation_tables(const perturber *pt, int k, int layer, float *cs, float *sn) {
  uint32_t key[2];
  round_philox_key(&pt->rs, PURPOSE_ROTATION, (uint32_t)k, (uint32_t)layer, key);
  size_t n = (size_t)(pt->c.kv_heads * pt->c.head_dim / 2);
  for (size_t a = 0; a < n; a++) rotation_angle(key, a, &cs[a], &sn[a]);
}

/* Applies T_k (inverse = 0) or T_k^-1 to a tensor of the layout, in place. */
static void transform(const perturber *pt, const group_tensor *t, int k, float *x, int inverse) {
  const llama_config *c = &pt->c;
  size_t H = (size_t)c->hidden, F = (size_t)c->inter, D = (size_t)c->head_dim;
  size_t Hq = (size_t)c->heads, Hkv = (size_t)c->kv_heads, rep = Hq / Hkv;
  int r = t->role;
  int rot = r == LT_Q || r == LT_Q_BIAS || r == LT_K || r == LT_K_BIAS || r == LT_V || r == LT_V_BIAS || r == LT_O;
  int perm = r == LT_GATE || r == LT_GATE_BIAS || r == LT_UP || r == LT_UP_BIAS || r == LT_DOWN;
  if (t->layer < 0 || (!rot && !perm)) return;
  if (rot) {
    size_t n = Hkv * D / 2;
    float *cs = malloc(2 * n * sizeof(float)), *sn = cs + n;
    rotation_tables(pt, k, t->layer, cs, sn);
    if (r == LT_Q || r == LT_Q_BIAS) rotate_rows(x, Hq, D, r == LT_Q ? H : 1, rep, cs, sn, inverse);
    else if (r == LT_O) rotate_cols(x, H, Hq, D, rep, cs, sn, inverse);
    else rotate_rows(x, Hkv, D, (r == LT_K || r == LT_V) ? H : 1, 1, cs, sn, inverse);
    free(cs);
    return;
  }
  uint32_t key[2], *p = malloc(F * sizeof *p);
  round_philox_key(&pt->rs, PURPOSE_PERMUTATION, (uint32_t)k, (uint32_t)t->layer, key);
  permutation_make(p, F, key);
  float *tmp = malloc(t->elems * sizeof(float));
  if (r == LT_DOWN) permute_cols(tmp, x, p, H, F, inverse);
  else permute_rows(tmp, x, p, F, (r == LT_GATE || r == LT_UP) ? H : 1, inverse);
  memcpy(x, tmp, t->elems * sizeof(float));
  free(tmp);
  free(p);
}

void unperturb_tensor(const perturber *pt, const group_tensor *t, int k, float *x) { transform(pt, t, k, x, 1); }
void reparam_tensor(const perturber *pt, const group_tensor *t, int k, float *x) { transform(pt, t, k, x, 0); }

/* Standard normals of blocks b0..b0+NB-1 of one key, 4 per block: the same
 * bits as rng_normal4 block by block, in loops the compiler vectorizes (the
 * polynomials of lib/rng.h have no branches), for the widest vector unit the
 * CPU has. */
#define NB 64
__attribute__((target_clones("avx512f", "avx2", "default")))
static void normals_batch(uint32_t k0, uint32_t k1, uint64_t b0, float *z) {
  uint32_t w[4 * NB];
#pragma omp simd
  for (int i = 0; i < NB; i++) {
    rng_u4 r = rng_philox(noise_counter(b0 + (uint64_t)i), k0, k1);
    w[4 * i] = r.v[0];
    w[4 * i + 1] = r.v[1];
    w[4 * i + 2] = r.v[2];
    w[4 * i + 3] = r.v[3];
  }
#pragma omp simd
  for (int p = 0; p < 2 * NB; p++) rng_normal2(w[2 * p], w[2 * p + 1], &z[2 * p], &z[2 * p + 1]);
}

void perturb_tensor(const perturber *pt, const group_tensor *t, float sigma, float **out) {
  int M = pt->p.copies;
  uint32_t keys[MAX_PERTURB_COPIES][2];
  for (int k = 0; k < M; k++) round_philox_key(&pt->rs, PURPOSE_NOISE, (uint32_t)k, (uint32_t)t->index, keys[k]);
  float c = (float)sqrt((double)M / (double)(M - 1)), sg = (float)sigma;
  size_t n = t->elems, blocks = (n + 3) / 4, chunks = (blocks + NB - 1) / NB;
  const float *theta = t->f32;
#pragma omp parallel for schedule(static)
  for (size_t ch = 0; ch < chunks; ch++) {
    float z[MAX_PERTURB_COPIES][4 * NB], zb[MAX_PERTURB_COPIES][4], eps[MAX_PERTURB_COPIES][4];
    uint64_t b0 = (uint64_t)ch * NB;
    for (int k = 0; k < M; k++) normals_batch(keys[k][0], keys[k][1], b0, z[k]);
    for (size_t b = b0; b < b0 + NB && b < blocks; b++) {
      for (int k = 0; k < M; k++) memcpy(zb[k], &z[k][4 * (b - b0)], sizeof zb[k]);
      zero_sum4(eps, zb, M, sg, c);
      for (int k = 0; k < M; k++)
        for (size_t j = 0; j < 4 && 4 * b + j < n; j++)
          out[k][4 * b + j] = FADD(theta[4 * b + j], FMUL(pt->alpha_f[k], eps[k][j]));
    }
  }
  for (int k = 0; k < M; k++) {
    transform(pt, t, k, out[k], 0);
    if (pt->p.keep_dtype && t->en.dtype != MPUC_DT_F32) {
      /* what the client receives: rounded through the tensor's dtype */
      uint8_t *tmp = malloc(t->en.raw_size);
      from_float(tmp, out[k], n, t->en.dtype);
      to_float(out[k], tmp, n, t->en.dtype);
      free(tmp);
    }
  }
}

/* ---------------------------------------------------------------- on a device */
/* The layout T_k sees for a tensor: the same cases as transform() above. */
static rp_layout tensor_layout(const perturber *pt, const group_tensor *t) {
  const llama_config *c = &pt->c;
  size_t H = (size_t)c->hidden, F = (size_t)c->inter, D = (size_t)c->head_dim;
  size_t Hq = (size_t)c->heads, Hkv = (size_t)c->kv_heads;
  int r = t->role;
  rp_layout L = {RP_NONE, 1, t->elems, 0, 0, 1};
  if (t->layer < 0) return L;
  if (r == LT_Q || r == LT_Q_BIAS || r == LT_K || r == LT_K_BIAS || r == LT_V || r == LT_V_BIAS) {
    int q = r == LT_Q || r == LT_Q_BIAS;
    L = (rp_layout){RP_ROT_ROWS, (q ? Hq : Hkv) * D, (r == LT_Q || r == LT_K || r == LT_V) ? H : 1, q ? Hq : Hkv, D,
                    q ? Hq / Hkv : 1};
  } else if (r == LT_O) {
    L = (rp_layout){RP_ROT_COLS, H, Hq * D, Hq, D, Hq / Hkv};
  } else if (r == LT_GATE || r == LT_GATE_BIAS || r == LT_UP || r == LT_UP_BIAS) {
    L = (rp_layout){RP_PERM_ROWS, F, (r == LT_GATE || r == LT_UP) ? H : 1, 0, 0, 1};
  } else if (r == LT_DOWN) {
    L = (rp_layout){RP_PERM_COLS, H, F, 0, 0, 1};
  }
  return L;
}

void perturb_job_free(stage_job *j) {
  free((void *)j->keys);
  free((void *)j->alpha);
  free((void *)j->cs);
  free((void *)j->perm);
  memset(j, 0, sizeof *j);
}

int perturb_job(const perturber *pt, const group_tensor *t, float sigma, stage_job *j, mpu_err *e) {
  int M = pt->p.copies;
  memset(j, 0, sizeof *j);
  j->L = tensor_layout(pt, t);
  j->n = t->elems;
  j->M = M;
  j->sigma = sigma;
  j->c = (float)sqrt((double)M / (double)(M - 1));
  j->round = !pt->p.keep_dtype ? RP_ROUND_NONE : t->en.dtype == MPUC_DT_BF16 ? RP_ROUND_BF16
             : t->en.dtype == MPUC_DT_F16 ? RP_ROUND_F16 : RP_ROUND_NONE;
  uint32_t (*keys)[2] = malloc((size_t)M * sizeof *keys);
  float *alpha = malloc((size_t)M * sizeof *alpha);
  j->keys = (const uint32_t(*)[2])keys;
  j->alpha = alpha;
  if (!keys || !alpha) return perturb_job_free(j), mpu_fail(e, MPU_EUSAGE, "out of memory");
  for (int k = 0; k < M; k++) {
    round_philox_key(&pt->rs, PURPOSE_NOISE, (uint32_t)k, (uint32_t)t->index, keys[k]);
    alpha[k] = pt->alpha_f[k];
  }
  if (j->L.kind == RP_ROT_ROWS || j->L.kind == RP_ROT_COLS) {
    j->nangles = (size_t)(pt->c.kv_heads * pt->c.head_dim / 2);
    float *cs = malloc(2 * (size_t)M * j->nangles * sizeof(float));
    if (!cs) return perturb_job_free(j), mpu_fail(e, MPU_EUSAGE, "out of memory");
    j->cs = cs;
    j->sn = cs + (size_t)M * j->nangles;
    for (int k = 0; k < M; k++)
      rotation_tables(pt, k, t->layer, cs + (size_t)k * j->nangles, (float *)j->sn + (size_t)k * j->nangles);
  } else if (j->L.kind == RP_PERM_ROWS || j->L.kind == RP_PERM_COLS) {
    j->nperm = (size_t)pt->c.inter;
    uint32_t *perm = malloc(2 * (size_t)M * j->nperm * sizeof *perm);
    if (!perm) return perturb_job_free(j), mpu_fail(e, MPU_EUSAGE, "out of memory");
    j->perm = perm;
    j->pinv = perm + (size_t)M * j->nperm;
    for (int k = 0; k < M; k++) {
      uint32_t key[2], *pk = perm + (size_t)k * j->nperm, *ik = (uint32_t *)j->pinv + (size_t)k * j->nperm;
      round_philox_key(&pt->rs, PURPOSE_PERMUTATION, (uint32_t)k, (uint32_t)t->layer, key);
      permutation_make(pk, j->nperm, key);
      for (size_t r = 0; r < j->nperm; r++) ik[pk[r]] = (uint32_t)r;
    }
  }
  return 0;
}

int perturb_tensor_on(const perturber *pt, const group_tensor *t, float sigma, float **out, mpu_err *e) {
  if (!pt->gpu) {
    perturb_tensor(pt, t, sigma, out);
    return 0;
  }
  stage_job j;
  int rc = perturb_job(pt, t, sigma, &j, e);
  if (!rc) rc = gpu_perturb(pt->gpu, &j, t->f32, NULL, out, NULL, e);
  perturb_job_free(&j);
  return rc;
}

int invert_tensor(const perturber *pt, const group_tensor *t, float sigma, float *const *ret, float **pub,
                  float **delta, mpu_err *e) {
  if (pt->gpu) {
    stage_job j;
    int rc = perturb_job(pt, t, sigma, &j, e);
    if (!rc) rc = gpu_perturb(pt->gpu, &j, t->f32, ret, pub, delta, e);
    perturb_job_free(&j);
    return rc;
  }
  perturb_tensor(pt, t, sigma, pub);
  for (int k = 0; k < pt->p.copies; k++) {
    for (size_t i = 0; i < t->elems; i++) delta[k][i] = ret[k][i] - pub[k][i];
    transform(pt, t, k, delta[k], 1);
  }
  return 0;
}

int aggregate_tensor(struct gpu_ctx *gpu, const float *theta, const float *delta, size_t n, const double *w, int M,
                     double eta, float *out, mpu_err *e) {
  if (gpu) return gpu_aggregate(gpu, theta, delta, n, w, M, eta, out, e);
#pragma omp parallel for schedule(static)
  for (size_t j = 0; j < n; j++) out[j] = aggregate(theta[j], delta + j, n, w, M, eta);
  return 0;
}
