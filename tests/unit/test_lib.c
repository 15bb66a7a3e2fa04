/*
 * test_lib.c -- lib/ pieces on their own: Philox against Random123's
 * known-answer vectors, the Gaussian transform, float formats, the Llama
 * layout, natural name order, size parsing, safetensors headers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fp.h"
#include "hf.h"
#include "llama.h"
#include "rng.h"
#include "safetensors.h"
#include "tap.h"

/* Random123 tests/kat_vectors, the three "philox4x32 10" lines. */
TEST(philox_known_answers) {
  static const uint32_t kat[3][10] = {
    {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
    {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
     0x6d5451fd},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
     0x24126ea1},
  };
  for (int i = 0; i < 3; i++) {
    rng_u4 c = {{kat[i][0], kat[i][1], kat[i][2], kat[i][3]}};
    rng_u4 r = rng_philox(c, kat[i][4], kat[i][5]);
    for (int k = 0; k < 4; k++) CHECK_EQ_U64(r.v[k], kat[i][6 + k]);
  }
}

TEST(log_and_sincos_match_libm_closely) {
  double worst_log = 0, worst_trig = 0;
  for (int i = 1; i < 200000; i++) {
    double x = i / 200000.0;
    double d = fabs(rng_log(x) - log(x)) / fabs(log(x) + 1e-300);
    if (i != 200000 && d > worst_log) worst_log = d;
    double s, c;
    rng_sincos2pi(x, &s, &c);
    double ds = fabs(s - sin(2 * M_PI * x)), dc = fabs(c - cos(2 * M_PI * x));
    if (ds > worst_trig) worst_trig = ds;
    if (dc > worst_trig) worst_trig = dc;
  }
  printf("# worst relative log error %.3g, worst sin/cos error %.3g\n", worst_log, worst_trig);
  CHECK(worst_log < 1e-13);
  CHECK(worst_trig < 1e-13);
}

TEST(normals_have_the_right_moments) {
  double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  const int n = 1 << 20;
  int beyond4 = 0;
  for (int i = 0; i < n; i++) {
    double z = rng_normal_at(12345, 678, 1, 2, (uint64_t)i);
    s1 += z;
    s2 += z * z;
    s3 += z * z * z;
    s4 += z * z * z * z;
    if (fabs(z) > 4) beyond4++;
  }
  double mean = s1 / n, var = s2 / n - mean * mean;
  printf("# mean %.5f var %.5f skew %.5f kurt %.5f beyond 4 sigma %d\n", mean, var, s3 / n, s4 / n, beyond4);
  CHECK(fabs(mean) < 0.005);         /* sd of the mean is 0.001 */
  CHECK(fabs(var - 1) < 0.006);      /* sd about 0.0014 */
  CHECK(fabs(s3 / n) < 0.015);
  CHECK(fabs(s4 / n - 3) < 0.04);
  CHECK(beyond4 > 20 && beyond4 < 110); /* expected 66 */
  /* addressing: an element is the same however it is reached */
  CHECK(rng_normal_at(1, 2, 3, 4, 1000003) == rng_normal_at(1, 2, 3, 4, 1000003));
  CHECK(rng_normal_at(1, 2, 3, 4, 5) != rng_normal_at(1, 2, 3, 5, 5));
}

TEST(half_formats_round_trip_every_pattern) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f16 = f16_to_f32((uint16_t)h), b16 = bf16_to_f32((uint16_t)h);
    if (!isnan(f16) && f32_to_f16(f16) != h) bad++;
    if (!isnan(b16) && f32_to_bf16(b16) != h) bad++;
    if (isnan(f16) != ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))) bad++;
  }
  CHECK(bad == 0);
  CHECK(f32_to_f16(65520.0f) == 0x7c00);
  CHECK(f32_to_f16(65519.0f) == 0x7bff);
  CHECK(f32_to_bf16(fp_from_bits(0x3f808000)) == 0x3f80); /* tie to even */
  CHECK(f32_to_bf16(fp_from_bits(0x3f818000)) == 0x3f82);
}

TEST(llama_layout) {
  json_t *cfg = json_pack("{s:[s], s:i, s:i, s:i, s:i, s:i, s:i, s:b}", "architectures", "Qwen2ForCausalLM",
                          "vocab_size", 100, "hidden_size", 32, "intermediate_size", 50, "num_hidden_layers", 12,
                          "num_attention_heads", 4, "num_key_value_heads", 2, "tie_word_embeddings", 1);
  llama_config c;
  mpu_err e = {0};
  CHECK(llama_config_parse(cfg, &c, &e) == 0);
  llama_tensor *t;
  size_t n = llama_tensors(&c, &t);
  CHECK_EQ_U64(n, 1 + 12 * 12 + 1); /* embed, 12 per layer with q/k/v bias, norm; tied head */
  CHECK(!strcmp(t[0].name, "model.embed_tokens.weight"));
  CHECK(!strcmp(t[1].name, "model.layers.0.input_layernorm.weight"));
  CHECK(!strcmp(t[13].name, "model.layers.1.input_layernorm.weight"));  /* 1 before 10 */
  CHECK(!strcmp(t[n - 1].name, "model.norm.weight"));
  int layer;
  for (size_t i = 0; i < n; i++) {
    CHECK(llama_role(t[i].name, &layer) == t[i].role);
    CHECK(layer == t[i].layer);
    if (t[i].role == LT_K) CHECK(t[i].dims[0] == 16 && t[i].dims[1] == 32);
  }
  free(t);
  json_object_set_new(cfg, "architectures", json_pack("[s]", "GPT2LMHeadModel"));
  e = (mpu_err){0};
  CHECK(llama_config_parse(cfg, &c, &e) == MPU_EUSAGE && strstr(e.msg, "GPT2LMHeadModel"));
  json_object_set_new(cfg, "architectures", json_pack("[s]", "LlamaForCausalLM"));
  json_object_set_new(cfg, "num_key_value_heads", json_integer(3));
  e = (mpu_err){0};
  CHECK(llama_config_parse(cfg, &c, &e) == MPU_EVERIFY && strstr(e.msg, "num_key_value_heads"));
  json_decref(cfg);
}

TEST(natural_order_and_sizes) {
  CHECK(natural_cmp("layers.2.w", "layers.10.w") < 0);
  CHECK(natural_cmp("layers.10.w", "layers.9.w") > 0);
  CHECK(natural_cmp("a", "a") == 0);
  CHECK(natural_cmp("x07", "x7") == 0);
  CHECK(cli_parse_size("4096") == 4096);
  CHECK(cli_parse_size("64K") == 65536);
  CHECK(cli_parse_size("64KiB") == 65536);
  CHECK(cli_parse_size("5GB") == 5000000000ll);
  CHECK(cli_parse_size("1.5M") == 1572864);
  CHECK(cli_parse_size("12Q") == -1);
  CHECK(cli_parse_size("") == -1);
}

TEST(safetensors_header_layout) {
  st_tensor t[3] = {{.name = "b", .dtype = MPUC_DT_U8, .ndim = 1, .dims = {3}},
                    {.name = "a", .dtype = MPUC_DT_F32, .ndim = 2, .dims = {2, 2}},
                    {.name = "c", .dtype = MPUC_DT_F32, .ndim = 1, .dims = {1}}};
  size_t perm[3];
  st_sort_like_hf(t, 3, perm);
  CHECK(perm[0] == 1 && perm[1] == 2 && perm[2] == 0); /* F32 first (by name), then U8 */
  uint64_t at = 0;
  for (int i = 0; i < 3; i++) {
    uint64_t b;
    mpuc_tensor_bytes(t[perm[i]].dtype, t[perm[i]].ndim, t[perm[i]].dims, &b);
    t[perm[i]].begin = at;
    t[perm[i]].end = at += b;
  }
  mpu_err e = {0};
  size_t len;
  uint8_t *h = st_header_build(t, 3, NULL, &len, &e);
  CHECK(h && len % 8 == 0);
  uint64_t n = 0;
  for (int i = 0; i < 8; i++) n |= (uint64_t)h[i] << (8 * i);
  CHECK(n == len - 8);
  CHECK(memmem(h, len, "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}", 54) != NULL);
  free(h);
}

int main(void) {
  RUN(philox_known_answers);
  RUN(log_and_sincos_match_libm_closely);
  RUN(normals_have_the_right_moments);
  RUN(half_formats_round_trip_every_pattern);
  RUN(llama_layout);
  RUN(natural_order_and_sizes);
  RUN(safetensors_header_layout);
  return tap_done();
}
