/*
 * optim.h -- optimizers and schedules, as PyTorch and Hugging Face define them.
 *
 * AdamW: torch.optim.AdamW (decoupled weight decay, bias correction, eps
 * added after the square root); SGD: torch.optim.SGD without momentum
 * (weight decay added to the gradient).  Clipping: torch's
 * clip_grad_norm_ (total L2 norm, scale max/(norm + 1e-6) when above).
 * Schedule: transformers' linear schedule with warm-up, or constant.
 */
#ifndef MPU_OPTIM_H
#define MPU_OPTIM_H

#include <stdint.h>

#include "model.h"

enum { OPT_ADAMW = 0, OPT_SGD = 1 };
enum { SCHED_LINEAR = 0, SCHED_CONSTANT = 1 };

typedef struct {
  int kind;
  double lr, beta1, beta2, eps, weight_decay;
  double max_grad_norm;   /* 0: no clipping */
  int schedule;
  long warmup_steps;
} optim_config;

typedef struct {
  optim_config cfg;
  float *m, *v;           /* AdamW moments, same layout as the parameters */
  uint8_t *decay;         /* per tensor: takes weight decay */
  long step;              /* updates done */
} optimizer;

int optim_init(optimizer *o, const optim_config *cfg, const model *m, mpu_err *e);
void optim_free(optimizer *o);
/* Learning rate for update number `step` (0-based) of `total`. */
double optim_lr(const optim_config *cfg, long step, long total);
/* L2 norm of all gradients (accumulated in double, in a fixed order). */
double grad_global_norm(const model *m);
/* Clips (if configured), then applies one update with learning rate lr.
 * norm: grad_global_norm(m) if the caller has it, else negative.  Returns
 * the gradient norm before clipping. */
double optim_step(optimizer *o, model *m, double lr, double norm);

#endif
