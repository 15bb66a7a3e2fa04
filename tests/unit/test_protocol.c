/*
 * test_protocol.c -- MPU's per-element math on its own: zero-sum noise is
 * exactly zero-sum, transforms invert, the 1/alpha-weighted average of the
 * noised copies is the model while the plain mean is not, key derivation
 * separates purposes, copies and layers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "reparam.h"
#include "tap.h"

TEST(noise_is_exactly_zero_sum) {
  for (int M = 2; M <= 8; M++) {
    uint32_t keys[8][2];
    for (int k = 0; k < M; k++) keys[k][0] = 11u * (uint32_t)k + 1, keys[k][1] = 7;
    float c = (float)sqrt((double)M / (M - 1));
    int bad = 0;
    for (uint64_t b = 0; b < 20000; b++) {
      float eps[RP_MAX_COPIES][4];
      noise_zero_sum4(eps, (const uint32_t(*)[2])keys, M, b, 0.37f, c);
      for (int j = 0; j < 4; j++) {
        float s = 0;
        for (int k = 0; k < M; k++) s = s + eps[k][j];
        if (s != 0.0f) bad++;
      }
    }
    CHECK(bad == 0);
  }
}

TEST(noise_has_sigma_and_the_right_correlation) {
  /* marginal variance sigma^2, covariance -sigma^2/(M-1) between copies */
  int M = 3;
  uint32_t keys[3][2] = {{1, 2}, {3, 4}, {5, 6}};
  float c = (float)sqrt(1.5), sigma = 0.5f;
  double ss[3] = {0}, cross = 0;
  size_t n = 0;
  for (uint64_t b = 0; b < 100000; b++) {
    float eps[RP_MAX_COPIES][4];
    noise_zero_sum4(eps, (const uint32_t(*)[2])keys, M, b, sigma, c);
    for (int j = 0; j < 4; j++, n++) {
      for (int k = 0; k < M; k++) ss[k] += (double)eps[k][j] * eps[k][j];
      cross += (double)eps[0][j] * eps[1][j];
    }
  }
  for (int k = 0; k < M; k++) {
    double sd = sqrt(ss[k] / n);
    printf("# copy %d: sd %.5f (want %.5f)\n", k, sd, sigma);
    CHECK(fabs(sd / sigma - 1) < 0.01);
  }
  double corr = cross / n / (sigma * sigma);
  printf("# correlation %.4f (want %.4f)\n", corr, -1.0 / (M - 1));
  CHECK(fabs(corr + 0.5) < 0.01);
}

TEST(rotations_and_permutations_invert) {
  size_t heads = 4, D = 8, cols = 5, rep = 2, kv = heads / rep;
  float w[4 * 8 * 5], orig[4 * 8 * 5], cs[2 * 4], sn[2 * 4];
  for (size_t i = 0; i < sizeof w / sizeof *w; i++) orig[i] = w[i] = (float)sin((double)i * 1.7) * 3;
  uint32_t key[2] = {9, 10};
  for (size_t a = 0; a < kv * D / 2; a++) rotation_angle(key, a, &cs[a], &sn[a]);
  rotate_rows(w, heads, D, cols, rep, cs, sn, 0);
  int changed = memcmp(w, orig, sizeof w) != 0;
  rotate_rows(w, heads, D, cols, rep, cs, sn, 1);
  double worst = 0;
  for (size_t i = 0; i < sizeof w / sizeof *w; i++) worst = fmax(worst, fabs(w[i] - orig[i]));
  CHECK(changed);
  CHECK(worst < 1e-5);
  /* a rotation keeps each head's norm */
  uint32_t perm[100];
  permutation_make(perm, 100, key);
  int seen[100] = {0}, ok = 1;
  for (int i = 0; i < 100; i++) ok &= perm[i] < 100 && !seen[perm[i]]++;
  CHECK(ok);
  float a[100 * 3], b[100 * 3], back[100 * 3];
  for (int i = 0; i < 300; i++) a[i] = (float)i;
  permute_rows(b, a, perm, 100, 3, 0);
  permute_rows(back, b, perm, 100, 3, 1);
  CHECK(memcmp(a, back, sizeof a) == 0);
  permute_cols(b, a, perm, 3, 100, 0);
  permute_cols(back, b, perm, 3, 100, 1);
  CHECK(memcmp(a, back, sizeof a) == 0);
}

/* The leak the method relies on hiding: aligned copies, averaged with
 * weights 1/alpha_k, give the model back; the plain mean does not. */
TEST(harmonic_average_of_aligned_copies_is_the_model) {
  int M = 3;
  double alpha[3] = {1.0, 1.5, 2.0}, s0 = 0, wh[3], wm[3];
  for (int k = 0; k < M; k++) s0 += 1 / alpha[k];
  for (int k = 0; k < M; k++) wh[k] = (1 / alpha[k]) / s0, wm[k] = 1.0 / M;
  uint32_t keys[3][2] = {{1, 1}, {2, 2}, {3, 3}};
  float c = (float)sqrt(1.5);
  double err_h = 0, err_m = 0;
  for (uint64_t b = 0; b < 5000; b++) {
    float eps[RP_MAX_COPIES][4];
    noise_zero_sum4(eps, (const uint32_t(*)[2])keys, M, b, 0.1f, c);
    for (int j = 0; j < 4; j++) {
      float theta = (float)cos((double)(4 * b + j)), x[3];
      for (int k = 0; k < M; k++) x[k] = FADD(theta, FMUL((float)alpha[k], eps[k][j]));
      /* aggregate() adds eta * sum w_k delta_k to a base: base 0, eta 1 */
      err_h = fmax(err_h, fabs(aggregate(0.0f, x, 1, wh, M, 1.0) - theta));
      err_m = fmax(err_m, fabs(aggregate(0.0f, x, 1, wm, M, 1.0) - theta));
    }
  }
  printf("# harmonic error %.2e, plain mean error %.2e\n", err_h, err_m);
  CHECK(err_h < 1e-6);
  CHECK(err_m > 1e-2);
}

TEST(alphas_and_keys) {
  round_params p = {.copies = 4, .alphas_mode = ALPHAS_PAPER};
  round_secrets rs;
  server_key k;
  memset(&k, 7, sizeof k);
  round_derive(&rs, &k, "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100", 1);
  round_alphas(&p, &rs);
  CHECK(p.alphas[0] == 1.0 && fabs(p.alphas[1] - 4.0 / 3) < 1e-15 && p.alphas[3] == 2.0);
  p.alphas_mode = ALPHAS_SECRET;
  round_alphas(&p, &rs);
  int distinct = 1;
  for (int i = 0; i < 4; i++) {
    CHECK(p.alphas[i] >= 1.0 && p.alphas[i] < 2.0);
    for (int j = 0; j < i; j++) distinct &= fabs(p.alphas[i] - p.alphas[j]) > 1e-9;
  }
  CHECK(distinct);
  /* keys differ by purpose, copy, index and round */
  uint32_t a[2], b[2], c2[2], d[2], r2[2];
  round_philox_key(&rs, PURPOSE_NOISE, 0, 5, a);
  round_philox_key(&rs, PURPOSE_ROTATION, 0, 5, b);
  round_philox_key(&rs, PURPOSE_NOISE, 1, 5, c2);
  round_philox_key(&rs, PURPOSE_NOISE, 0, 6, d);
  round_secrets rs2;
  round_derive(&rs2, &k, "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100", 2);
  round_philox_key(&rs2, PURPOSE_NOISE, 0, 5, r2);
  CHECK(memcmp(a, b, 8) && memcmp(a, c2, 8) && memcmp(a, d, 8) && memcmp(a, r2, 8));
  char c1[65], c3[65];
  key_commit(&k, "model", "x:y", c1);
  key_commit(&k, "model", "x:z", c3);
  CHECK(strlen(c1) == 64 && strcmp(c1, c3));
}

int main(void) {
  RUN(noise_is_exactly_zero_sum);
  RUN(noise_has_sigma_and_the_right_correlation);
  RUN(rotations_and_permutations_invert);
  RUN(harmonic_average_of_aligned_copies_is_the_model);
  RUN(alphas_and_keys);
  return tap_done();
}
