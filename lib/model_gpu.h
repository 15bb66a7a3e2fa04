/*
 * model_gpu.h -- the glue between a model (model.h) and the GPU engine
 * (kernels/engine_gpu.h): the layout the GPU is given, attaching and
 * detaching, planning.  model.c calls these where the device is CUDA; the
 * public face is model.h's model_set_device and friends.
 */
#ifndef MPU_MODEL_GPU_H
#define MPU_MODEL_GPU_H

#include "../kernels/engine_gpu.h"
#include "model.h"

/* The GPU's description of m: sizes and every tensor's offset in m->params
 * (taken from m's own views, so the two layouts cannot differ).  layers has
 * m->c.layers entries; tensor_offset points at m->offset. */
void model_gpu_layout(const model *m, egpu_model *d, egpu_layer *layers);
/* Uploads m's parameters to a new GPU engine (when device is CUDA and none
 * is attached yet). */
int model_gpu_attach(model *m, mpu_err *e);
/* Brings the parameters back to the host, then frees the GPU engine. */
int model_gpu_detach(model *m, mpu_err *e);
/* model_plan on the GPU: host buffers only for what the host reads (logits,
 * lse, nll, ids, the rotary tables), the rest on the device. */
int model_gpu_plan(model *m, size_t B, size_t T, mpu_err *e);
/* model_decode_init on the GPU: the cache on the device, logits[V] on the host. */
int model_gpu_decode_init(model *m, size_t max_len, mpu_err *e);
/* The per-tensor weight decay egpu_step takes: wd[t] = decay[t] ? wd : 0. */
void model_gpu_decay(const model *m, const uint8_t *decay, double weight_decay, float *wd);

#endif
