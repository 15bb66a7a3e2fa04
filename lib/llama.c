/*
 * llama.c -- Llama-family configurations and tensor layout.
 */
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf.h"
#include "mpuc.h"

static int get_int(json_t *cfg, const char *key, int64_t dflt, int64_t *out, mpu_err *e) {
  json_t *v = json_object_get(cfg, key);
  if (!v || json_is_null(v)) {
    if (dflt == INT64_MIN) return mpu_fail(e, MPU_EVERIFY, "config: '%s' is missing", key);
    *out = dflt;
    return 0;
  }
  if (!json_is_integer(v)) return mpu_fail(e, MPU_EVERIFY, "config: '%s' must be an integer", key);
  *out = json_integer_value(v);
  return 0;
}

static int get_num(json_t *cfg, const char *key, double dflt, double *out, mpu_err *e) {
  json_t *v = json_object_get(cfg, key);
  if (!v || json_is_null(v)) {
    *out = dflt;
    return 0;
  }
  if (!json_is_number(v)) return mpu_fail(e, MPU_EVERIFY, "config: '%s' must be a number", key);
  *out = json_number_value(v);
  return 0;
}

static int get_bool(json_t *cfg, const char *key, int dflt) {
  json_t *v = json_object_get(cfg, key);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

int llama_config_parse(json_t *cfg, llama_config *c, mpu_err *e) {
  memset(c, 0, sizeof *c);
  if (!json_is_object(cfg)) return mpu_fail(e, MPU_EVERIFY, "the stream carries no model configuration (config.json)");
  const char *arch = json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0));
  const char *mt = json_string_value(json_object_get(cfg, "model_type"));
  if (!arch && mt) arch = !strcmp(mt, "llama") ? "LlamaForCausalLM" : !strcmp(mt, "qwen2") ? "Qwen2ForCausalLM"
                        : !strcmp(mt, "mistral") ? "MistralForCausalLM" : mt;
  if (!arch) return mpu_fail(e, MPU_EVERIFY, "config: no 'architectures' or 'model_type'");
  snprintf(c->arch_name, sizeof c->arch_name, "%s", arch);
  if (!strcmp(arch, "LlamaForCausalLM")) c->arch = ARCH_LLAMA;
  else if (!strcmp(arch, "Qwen2ForCausalLM")) c->arch = ARCH_QWEN2;
  else if (!strcmp(arch, "MistralForCausalLM")) c->arch = ARCH_MISTRAL;
  else
    return mpu_fail(e, MPU_EUSAGE,
                    "architecture '%s' is not supported (mpu handles LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM)",
                    arch);
  const char *act = json_string_value(json_object_get(cfg, "hidden_act"));
  if (act && strcmp(act, "silu"))
    return mpu_fail(e, MPU_EUSAGE, "config: hidden_act '%s' is not supported (only silu)", act);
  if (get_int(cfg, "vocab_size", INT64_MIN, &c->vocab, e) || get_int(cfg, "hidden_size", INT64_MIN, &c->hidden, e) ||
      get_int(cfg, "intermediate_size", INT64_MIN, &c->inter, e) ||
      get_int(cfg, "num_hidden_layers", INT64_MIN, &c->layers, e) ||
      get_int(cfg, "num_attention_heads", INT64_MIN, &c->heads, e))
    return e->status;
  if (get_int(cfg, "num_key_value_heads", c->heads, &c->kv_heads, e) ||
      get_int(cfg, "max_position_embeddings", 2048, &c->max_pos, e) ||
      get_num(cfg, "rms_norm_eps", 1e-6, &c->eps, e) || get_num(cfg, "rope_theta", 10000.0, &c->rope_theta, e) ||
      get_num(cfg, "initializer_range", 0.02, &c->init_range, e))
    return e->status;
  if (c->heads > 0 && get_int(cfg, "head_dim", c->hidden / c->heads, &c->head_dim, e)) return e->status;
  if (get_int(cfg, "bos_token_id", -1, &c->bos, e) || get_int(cfg, "pad_token_id", -1, &c->pad, e)) return e->status;
  json_t *eos = json_object_get(cfg, "eos_token_id");
  if (json_is_array(eos)) eos = json_array_get(eos, 0); /* Llama 3.1 lists several */
  c->eos = json_is_integer(eos) ? json_integer_value(eos) : -1;
  c->tied = get_bool(cfg, "tie_word_embeddings", 0);
  c->qkv_bias = c->arch == ARCH_QWEN2 || get_bool(cfg, "attention_bias", 0);
  c->o_bias = c->arch != ARCH_QWEN2 && get_bool(cfg, "attention_bias", 0);
  c->mlp_bias = c->arch == ARCH_LLAMA && get_bool(cfg, "mlp_bias", 0);
  json_t *sw = json_object_get(cfg, "sliding_window");
  if (json_is_integer(sw) && (c->arch == ARCH_MISTRAL || get_bool(cfg, "use_sliding_window", 0)))
    c->sliding_window = json_integer_value(sw);

  json_t *rs = json_object_get(cfg, "rope_scaling");
  if (json_is_object(rs)) {
    const char *type = json_string_value(json_object_get(rs, "rope_type"));
    if (!type) type = json_string_value(json_object_get(rs, "type"));
    if (!type) type = "default";
    if (!strcmp(type, "llama3")) {
      c->rope_scaling.type = ROPE_LLAMA3;
      if (get_num(rs, "factor", 8.0, &c->rope_scaling.factor, e) ||
          get_num(rs, "low_freq_factor", 1.0, &c->rope_scaling.low_freq_factor, e) ||
          get_num(rs, "high_freq_factor", 4.0, &c->rope_scaling.high_freq_factor, e) ||
          get_int(rs, "original_max_position_embeddings", 8192, &c->rope_scaling.original_max_pos, e))
        return mpu_fail_ctx(e, "rope_scaling");
      if (c->rope_scaling.high_freq_factor <= c->rope_scaling.low_freq_factor)
        return mpu_fail(e, MPU_EVERIFY, "config: rope_scaling needs high_freq_factor > low_freq_factor");
    } else if (!strcmp(type, "linear")) {
      c->rope_scaling.type = ROPE_LINEAR;
      if (get_num(rs, "factor", 1.0, &c->rope_scaling.factor, e)) return e->status;
    } else if (strcmp(type, "default")) {
      return mpu_fail(e, MPU_EUSAGE, "config: rope_scaling type '%s' is not supported (llama3, linear)", type);
    }
  } else if (rs && !json_is_null(rs)) {
    return mpu_fail(e, MPU_EVERIFY, "config: rope_scaling must be an object or null");
  }

  /* Sizes must be positive and fit together. */
  struct {
    const char *name;
    int64_t v;
  } pos[] = {{"vocab_size", c->vocab}, {"hidden_size", c->hidden}, {"intermediate_size", c->inter},
             {"num_hidden_layers", c->layers}, {"num_attention_heads", c->heads},
             {"num_key_value_heads", c->kv_heads}, {"head_dim", c->head_dim},
             {"max_position_embeddings", c->max_pos}};
  for (size_t i = 0; i < sizeof pos / sizeof *pos; i++)
    if (pos[i].v <= 0 || pos[i].v > (1ll << 31))
      return mpu_fail(e, MPU_EVERIFY, "config: %s = %lld is not a sensible size", pos[i].name, (long long)pos[i].v);
  if (c->heads % c->kv_heads)
    return mpu_fail(e, MPU_EVERIFY, "config: num_attention_heads (%lld) is not a multiple of num_key_value_heads (%lld)",
                    (long long)c->heads, (long long)c->kv_heads);
  if (c->head_dim % 2)
    return mpu_fail(e, MPU_EVERIFY, "config: head_dim %lld is odd (RoPE rotates pairs)", (long long)c->head_dim);
  if (!json_object_get(cfg, "head_dim") && c->hidden % c->heads)
    return mpu_fail(e, MPU_EVERIFY, "config: hidden_size %lld is not a multiple of num_attention_heads %lld (set head_dim)",
                    (long long)c->hidden, (long long)c->heads);
  if (c->eps <= 0 || c->rope_theta <= 0 || c->init_range < 0)
    return mpu_fail(e, MPU_EVERIFY, "config: rms_norm_eps, rope_theta must be positive");
  return 0;
}

const char *torch_dtype_name(int dtype) {
  return dtype == MPUC_DT_BF16 ? "bfloat16" : dtype == MPUC_DT_F16 ? "float16" : "float32";
}

static void add(llama_tensor *t, size_t *n, int role, int layer, const char *name, uint64_t d0, uint64_t d1) {
  llama_tensor *x = &t[(*n)++];
  snprintf(x->name, sizeof x->name, "%s", name);
  x->role = role;
  x->layer = layer;
  x->ndim = d1 ? 2 : 1;
  x->dims[0] = d0;
  x->dims[1] = d1;
}

static int cmp_tensor(const void *a, const void *b) {
  return natural_cmp(((const llama_tensor *)a)->name, ((const llama_tensor *)b)->name);
}

size_t llama_tensors(const llama_config *c, llama_tensor **out) {
  size_t cap = 3 + (size_t)c->layers * 16, n = 0;
  llama_tensor *t = calloc(cap, sizeof *t);
  if (!t) return 0;
  uint64_t H = (uint64_t)c->hidden, F = (uint64_t)c->inter, D = (uint64_t)c->head_dim;
  uint64_t Q = (uint64_t)c->heads * D, KV = (uint64_t)c->kv_heads * D;
  add(t, &n, LT_EMBED, -1, "model.embed_tokens.weight", (uint64_t)c->vocab, H);
  char nm[96];
#define L(role, suffix, d0, d1)                                         \
  do {                                                                  \
    snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);           \
    add(t, &n, role, l, nm, d0, d1);                                    \
  } while (0)
  for (int l = 0; l < c->layers; l++) {
    L(LT_ATTN_NORM, "input_layernorm.weight", H, 0);
    L(LT_Q, "self_attn.q_proj.weight", Q, H);
    L(LT_K, "self_attn.k_proj.weight", KV, H);
    L(LT_V, "self_attn.v_proj.weight", KV, H);
    L(LT_O, "self_attn.o_proj.weight", H, Q);
    if (c->qkv_bias) {
      L(LT_Q_BIAS, "self_attn.q_proj.bias", Q, 0);
      L(LT_K_BIAS, "self_attn.k_proj.bias", KV, 0);
      L(LT_V_BIAS, "self_attn.v_proj.bias", KV, 0);
    }
    if (c->o_bias) L(LT_O_BIAS, "self_attn.o_proj.bias", H, 0);
    L(LT_MLP_NORM, "post_attention_layernorm.weight", H, 0);
    L(LT_GATE, "mlp.gate_proj.weight", F, H);
    L(LT_UP, "mlp.up_proj.weight", F, H);
    L(LT_DOWN, "mlp.down_proj.weight", H, F);
    if (c->mlp_bias) {
      L(LT_GATE_BIAS, "mlp.gate_proj.bias", F, 0);
      L(LT_UP_BIAS, "mlp.up_proj.bias", F, 0);
      L(LT_DOWN_BIAS, "mlp.down_proj.bias", H, 0);
    }
  }
#undef L
  add(t, &n, LT_FINAL_NORM, -1, "model.norm.weight", H, 0);
  if (!c->tied) add(t, &n, LT_LM_HEAD, -1, "lm_head.weight", (uint64_t)c->vocab, H);
  qsort(t, n, sizeof *t, cmp_tensor);
  *out = t;
  return n;
}

int llama_role(const char *name, int *layer) {
  static const struct {
    const char *suffix;
    int role;
  } layer_roles[] = {
    {"input_layernorm.weight", LT_ATTN_NORM}, {"self_attn.q_proj.weight", LT_Q}, {"self_attn.q_proj.bias", LT_Q_BIAS},
    {"self_attn.k_proj.weight", LT_K}, {"self_attn.k_proj.bias", LT_K_BIAS}, {"self_attn.v_proj.weight", LT_V},
    {"self_attn.v_proj.bias", LT_V_BIAS}, {"self_attn.o_proj.weight", LT_O}, {"self_attn.o_proj.bias", LT_O_BIAS},
    {"post_attention_layernorm.weight", LT_MLP_NORM}, {"mlp.gate_proj.weight", LT_GATE},
    {"mlp.gate_proj.bias", LT_GATE_BIAS}, {"mlp.up_proj.weight", LT_UP}, {"mlp.up_proj.bias", LT_UP_BIAS},
    {"mlp.down_proj.weight", LT_DOWN}, {"mlp.down_proj.bias", LT_DOWN_BIAS},
  };
  *layer = -1;
  if (!strcmp(name, "model.embed_tokens.weight")) return LT_EMBED;
  if (!strcmp(name, "model.norm.weight")) return LT_FINAL_NORM;
  if (!strcmp(name, "lm_head.weight")) return LT_LM_HEAD;
  int l, off = 0;
  if (sscanf(name, "model.layers.%d.%n", &l, &off) != 1 || off == 0 || l < 0) return -1;
  for (size_t i = 0; i < sizeof layer_roles / sizeof *layer_roles; i++)
    if (!strcmp(name + off, layer_roles[i].suffix)) {
      *layer = l;
      return layer_roles[i].role;
    }
  return -1;
}
