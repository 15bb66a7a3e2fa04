/*
 * protocol.h -- MPU's server side as spec/protocol.md defines it: the round's
 * parameters and the "mpu" header record that carries them with the copies,
 * the copy scalings alpha_k, the headers perturb and split write (so invert
 * can regenerate their ids), and the perturbation of one tensor
 * theta_pub,k = T_k(theta + alpha_k eps0_k) and its inverse on updates.
 */
#ifndef MPU_PROTOCOL_H
#define MPU_PROTOCOL_H

#include <jansson.h>

#include "groups.h"
#include "llama.h"
#include "secret.h"
#include "stage.h"

#define MPU_PROTOCOL 1
#define MAX_PERTURB_COPIES 64

enum { ALPHAS_SECRET = 0, ALPHAS_PAPER = 1, ALPHAS_LIST = 2 };
enum { SCOPE_LAYERS = 0, SCOPE_ALL = 1 };

typedef struct {
  uint64_t round;
  int copies;                 /* M */
  double kappa;
  int alphas_mode;
  double alphas[MAX_PERTURB_COPIES];
  int scope;
  int keep_dtype;             /* 0: copies in F32; 1: in each tensor's dtype */
  int has_base;
  char model_commit[65];      /* keyed commitment to the model perturbed */
  char base_commit[65];
  int copy;                   /* 1-based copy a split stream holds; 0: all */
} round_params;

/* The header record {"mpu": {...}}; no secret and no plain digest in it. */
json_t *round_record(const round_params *p);
/* Reads a stream header's "mpu" record; status 1 when absent or malformed. */
int round_record_parse(json_t *header, round_params *p, const char *what, mpu_err *e);
/* Whether two records describe the same round of the same model (copy aside). */
int round_same(const round_params *a, const round_params *b);

/* alpha_k for k = 1..M: paper 1 + (k-1)/(M-1); secret: from the round key
 * (see the spec); list: as given. */
void round_alphas(round_params *p, const round_secrets *rs);

/* The model's identity as the round is bound to it: its stream id and header digest. */
void model_identity(char out[66], const char *stream_id, const char *header_digest);

/* The header perturb writes for a model header (its listing, config, blobs). */
json_t *perturb_header(json_t *model_header, const round_params *p);
/* The header split writes for copy k (1-based) of a perturb stream. */
json_t *split_header(json_t *perturb_hdr, const char *perturb_id, const char *perturb_digest, int k);
/* Stream id and header digest a header gets when written. */
int header_ids(json_t *h, char id[33], char digest[33], mpu_err *e);

/* Whether a tensor is perturbed under the scope (else it is passed on as is,
 * shared by every copy). */
int tensor_perturbed(const group_tensor *t, int scope);

/* One round's perturbation of one model. */
typedef struct {
  llama_config c;
  round_params p;
  round_secrets rs;
  float alpha_f[MAX_PERTURB_COPIES];
  struct gpu_ctx *gpu;        /* the device to compute on (kernels/gpu.h); NULL: the CPU */
} perturber;

/* Sets up the round for a model: its layout (refusing what cannot be
 * reparameterized, by name), its commitment, the round's secrets and alphas.
 * p carries round, copies, kappa, alphas mode (and list), scope, dtype. */
int perturber_init(perturber *pt, const server_key *k, json_t *model_header, const char *model_id,
                   const char *model_digest, const round_params *p, mpu_err *e);
void perturber_wipe(perturber *pt);

/* sigma of a layer group: kappa * RMS(theta - base) (base may be NULL). */
double group_sigma(const tensor_group *g, const tensor_group *base, double kappa, int scope);
/* The M published copies of one tensor, as floats: out[k][i] (each holding
 * t->elems floats).  When keep_dtype, the values are rounded through the
 * tensor's dtype, exactly as the client receives them. */
void perturb_tensor(const perturber *pt, const group_tensor *t, float sigma, float **out);
/* The same on pt->gpu when set (the same bits; spec/protocol.md 10), else
 * the CPU; status 2 on a device error. */
int perturb_tensor_on(const perturber *pt, const group_tensor *t, float sigma, float **out, mpu_err *e);
/* invert's work for a perturbed tensor: the published copies pub[k] (as
 * perturb_tensor) and the updates delta[k] = T_k^-1(ret[k] - pub[k]) of the
 * returned copies ret[k], on pt->gpu or the CPU. */
int invert_tensor(const perturber *pt, const group_tensor *t, float sigma, float *const *ret, float **pub,
                  float **delta, mpu_err *e);
/* denoise's step for one tensor of n elements: out[i] = aggregate(theta[i],
 * delta[k * n + i] ...) (lib/reparam.h), on gpu or, when NULL, the CPU. */
int aggregate_tensor(struct gpu_ctx *gpu, const float *theta, const float *delta, size_t n, const double *w, int M,
                     double eta, float *out, mpu_err *e);
/* The description of one perturbed tensor the kernels take
 * (kernels/stage.h), with its tables; free with perturb_job_free. */
int perturb_job(const perturber *pt, const group_tensor *t, float sigma, stage_job *j, mpu_err *e);
void perturb_job_free(stage_job *j);
/* T_k^-1 applied in place to an update (or any tensor) of copy k (0-based). */
void unperturb_tensor(const perturber *pt, const group_tensor *t, int k, float *x);
/* T_k applied in place (what the client sees of an update made in original coordinates). */
void reparam_tensor(const perturber *pt, const group_tensor *t, int k, float *x);

#endif
