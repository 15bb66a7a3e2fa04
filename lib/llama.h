/*
 * llama.h -- the Llama family's configuration (as Hugging Face's config.json
 * states it) and its tensors: names, shapes and roles.  Llama 2/3, Qwen2 and
 * Mistral share one layout; they differ in biases, tying and rope scaling.
 */
#ifndef MPU_LLAMA_H
#define MPU_LLAMA_H

#include <jansson.h>
#include <stdint.h>

#include "err.h"

enum { ARCH_LLAMA = 1, ARCH_QWEN2, ARCH_MISTRAL };
enum { ROPE_DEFAULT = 0, ROPE_LLAMA3, ROPE_LINEAR };

typedef struct {
  int arch;
  char arch_name[64];
  int64_t vocab, hidden, inter, layers, heads, kv_heads, head_dim, max_pos;
  double eps, rope_theta, init_range;
  int tied, qkv_bias, o_bias, mlp_bias;
  struct {
    int type;
    double factor, low_freq_factor, high_freq_factor;
    int64_t original_max_pos;
  } rope_scaling;
  int64_t sliding_window;    /* 0: none */
  int64_t bos, eos, pad;     /* -1 when absent */
} llama_config;

/* Reads and checks a config.json object; unknown architectures are refused
 * by name, inconsistent sizes with the field that is wrong. */
int llama_config_parse(json_t *cfg, llama_config *c, mpu_err *e);

/* What a tensor is for. */
enum {
  LT_EMBED, LT_ATTN_NORM, LT_Q, LT_Q_BIAS, LT_K, LT_K_BIAS, LT_V, LT_V_BIAS, LT_O, LT_O_BIAS,
  LT_MLP_NORM, LT_GATE, LT_GATE_BIAS, LT_UP, LT_UP_BIAS, LT_DOWN, LT_DOWN_BIAS, LT_FINAL_NORM, LT_LM_HEAD,
  LT_COUNT
};

typedef struct {
  char name[96];
  int role;                 /* LT_* */
  int layer;                /* -1 outside the layers */
  unsigned ndim;
  uint64_t dims[2];
} llama_tensor;

/* Every tensor of the model, in the order mpu writes streams: the natural
 * order of the names (layers by number).  Returns the count; *out is malloc'd. */
size_t llama_tensors(const llama_config *c, llama_tensor **out);
/* transformers' name of a float dtype ("float32", "bfloat16", "float16"). */
const char *torch_dtype_name(int dtype);

/* The role of a tensor name (and its layer), or -1 for a name outside the layout. */
int llama_role(const char *name, int *layer);

#endif
