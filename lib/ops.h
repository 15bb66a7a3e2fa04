/*
 * ops.h -- the transformer's layers, forward and backward, in fp32 on the CPU.
 *
 * In the manner of llm.c: one free function per layer and direction, outputs
 * first, shapes in the comment, gradients accumulated with +=.  N is the
 * number of token positions (B*T).  Matrices follow Hugging Face's [out, in]
 * layout: y = x W^T + b.  Matrix products go to BLAS; the rest is parallel
 * over rows or columns with OpenMP in a fixed order, so results depend only
 * on the thread count (and not even on that where each output element is
 * computed by one thread).
 */
#ifndef MPU_OPS_H
#define MPU_OPS_H

#include <stddef.h>
#include <stdint.h>

/* out[N,H] = embed[ids[n]] */
void embed_forward(float *out, const int32_t *ids, const float *embed, size_t N, size_t H);
/* dembed[ids[n]] += dout[n] */
void embed_backward(float *dembed, const float *dout, const int32_t *ids, size_t N, size_t H);

/* out[N,H] = w * x * rstd, rstd[N] = 1/sqrt(mean(x^2) + eps) */
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, size_t N, size_t H, float eps);
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                      size_t N, size_t H);

/* out[N,OUT] = x[N,IN] W[OUT,IN]^T (+ b[OUT]) */
void matmul_forward(float *out, const float *x, const float *W, const float *b, size_t N, size_t IN, size_t OUT);
/* dx += dout W;  dW += dout^T x;  db += sum_n dout (dx, db may be NULL) */
void matmul_backward(float *dx, float *dW, float *db, const float *dout, const float *x, const float *W, size_t N,
                     size_t IN, size_t OUT);

/* Rotary embedding in Hugging Face's rotate-half convention, in place on
 * x[B,T,heads*D]: for i < D/2, (x_i, x_{i+D/2}) rotates by angle pos*inv_freq_i.
 * cos/sin are [T, D/2] tables. */
void rope_forward(float *x, const float *cos, const float *sin, size_t B, size_t T, size_t heads, size_t D);
/* The inverse rotation, which is the backward of the forward. */
void rope_backward(float *dx, const float *cos, const float *sin, size_t B, size_t T, size_t heads, size_t D);
/* Tables for positions 0..T-1 of inv_freq[D/2]. */
void rope_tables(float *cos, float *sin, const float *inv_freq, size_t T, size_t D);

/* Causal (optionally sliding-window) attention with grouped queries.
 * q[B,T,Hq*D], k,v[B,T,Hkv*D] -> out[B,T,Hq*D]; att[B,Hq,T,T] keeps the
 * probabilities for the backward.  Query head h reads kv head h/(Hq/Hkv). */
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v, size_t B, size_t T,
                       size_t Hq, size_t Hkv, size_t D, size_t window);
/* dq, dk, dv are written (not accumulated); scratch holds T*T floats. */
void attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, size_t B, size_t T, size_t Hq, size_t Hkv,
                        size_t D);

/* out[N] = silu(gate) * up */
void swiglu_forward(float *out, const float *gate, const float *up, size_t N);
/* dgate, dup written from dout */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t N);

/* out[N] += x[N] */
void add_inplace(float *out, const float *x, size_t N);

/* Per position: nll[n] = -log softmax(logits[n])[target[n]] (0 where target < 0);
 * lse[n] keeps log-sum-exp for the backward. */
void crossentropy_forward(float *nll, float *lse, const float *logits, const int32_t *target, size_t N, size_t V);
/* In place: logits[n] becomes w[n] * (softmax(logits[n]) - onehot(target[n])),
 * the gradient of sum_n w[n] nll[n]; rows with w[n] = 0 become 0. */
void crossentropy_backward(float *logits, const float *lse, const int32_t *target, const float *w, size_t N, size_t V);

/* Thread count for OpenMP loops and BLAS. */
void ops_set_threads(int n);
int ops_threads(void);

#endif
