/*
 * rng.h -- counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11;
 * Random123) and a Gaussian transform built from IEEE basic operations only.
 *
 * A number is a pure function of (key, counter), so any element of any tensor
 * can be drawn on its own: the results do not depend on chunking, thread
 * count or device.  The Gaussian uses Box-Muller with its own logarithm and
 * sine/cosine written as double-precision polynomials: no libm call whose
 * last bit could differ between glibc and CUDA.  Compiled with FMA
 * contraction off (-ffp-contract=off, nvcc -fmad=false) every platform
 * produces the same bits.  The header compiles as C and as CUDA.
 */
#ifndef MPU_RNG_H
#define MPU_RNG_H

#include <stdint.h>
#include <string.h>

#include "hd.h"

typedef struct {
  uint32_t v[4];
} rng_u4;

MPU_HD uint32_t rng_mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
  uint64_t p = (uint64_t)a * b;
  *hi = (uint32_t)(p >> 32);
  return (uint32_t)p;
}

/* Philox4x32 with 10 rounds: ctr is the counter, key the 64-bit key. */
MPU_HD rng_u4 rng_philox(rng_u4 ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; round++) {
    uint32_t hi0, hi1;
    uint32_t lo0 = rng_mulhilo(0xD2511F53u, ctr.v[0], &hi0);
    uint32_t lo1 = rng_mulhilo(0xCD9E8D57u, ctr.v[2], &hi1);
    rng_u4 n;
    n.v[0] = hi1 ^ ctr.v[1] ^ k0;
    n.v[1] = lo1;
    n.v[2] = hi0 ^ ctr.v[3] ^ k1;
    n.v[3] = lo0;
    ctr = n;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return ctr;
}

/* A uniform double in (0, 1) from 32 random bits: never 0, never 1. */
MPU_HD double rng_open01(uint32_t x) { return ((double)x + 0.5) * (1.0 / 4294967296.0); }

/* ln(x) for x > 0 (normal doubles): x = m 2^e with m in [sqrt(1/2), sqrt(2)),
 * ln m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172, by its series to s^23. */
MPU_HD double rng_log(double x) {
  uint64_t b;
  memcpy(&b, &x, 8);
  int e = (int)((b >> 52) & 0x7ff) - 1023;
  b = (b & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
  double m;
  memcpy(&m, &b, 8);
  /* selects, not branches: the same bits, and loops over many draws vectorize */
  int big = m > 1.4142135623730951;
  m = big ? m * 0.5 : m;
  e = e + big;
  double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double t = 1.0 / 23.0;
  t = t * s2 + 1.0 / 21.0;
  t = t * s2 + 1.0 / 19.0;
  t = t * s2 + 1.0 / 17.0;
  t = t * s2 + 1.0 / 15.0;
  t = t * s2 + 1.0 / 13.0;
  t = t * s2 + 1.0 / 11.0;
  t = t * s2 + 1.0 / 9.0;
  t = t * s2 + 1.0 / 7.0;
  t = t * s2 + 1.0 / 5.0;
  t = t * s2 + 1.0 / 3.0;
  t = t * s2 + 1.0;
  return (double)e * 0.6931471805599453 + 2.0 * s * t;
}

/* sin and cos of 2*pi*u for u in [0, 1): quadrant from 4u, then Taylor
 * series of the angle within the quadrant (|a| <= pi/4 after centring). */
MPU_HD void rng_sincos2pi(double u, double *s, double *c) {
  double q4 = u * 4.0;
  int q = (int)q4;                 /* 0..3 */
  double f = q4 - (double)q;       /* [0, 1) */
  double a = (f - 0.5) * 1.5707963267948966; /* [-pi/4, pi/4) around the quadrant's middle */
  double a2 = a * a;
  double sn = -1.0 / 1307674368000.0;          /* -1/15! */
  sn = sn * a2 + 1.0 / 6227020800.0;
  sn = sn * a2 - 1.0 / 39916800.0;
  sn = sn * a2 + 1.0 / 362880.0;
  sn = sn * a2 - 1.0 / 5040.0;
  sn = sn * a2 + 1.0 / 120.0;
  sn = sn * a2 - 1.0 / 6.0;
  sn = sn * a2 + 1.0;
  sn = sn * a;
  double cs = 1.0 / 20922789888000.0;          /* 1/16! */
  cs = cs * a2 - 1.0 / 87178291200.0;
  cs = cs * a2 + 1.0 / 479001600.0;
  cs = cs * a2 - 1.0 / 3628800.0;
  cs = cs * a2 + 1.0 / 40320.0;
  cs = cs * a2 - 1.0 / 720.0;
  cs = cs * a2 + 1.0 / 24.0;
  cs = cs * a2 - 0.5;
  cs = cs * a2 + 1.0;
  /* The angle is (q + 0.5) pi/2 + a: rotate (cos a, sin a) by (q + 0.5) quarters. */
  const double h = 0.7071067811865476; /* cos(pi/4) = sin(pi/4) */
  double c45 = (cs - sn) * h, s45 = (sn + cs) * h;
  *c = q == 0 ? c45 : q == 1 ? -s45 : q == 2 ? -c45 : s45;
  *s = q == 0 ? s45 : q == 1 ? c45 : q == 2 ? -s45 : -c45;
}

/* Two standard normals (Box-Muller) from two 32-bit random words. */
MPU_HD void rng_normal2(uint32_t w0, uint32_t w1, float *z0, float *z1) {
  double radius = rng_log(rng_open01(w0));
  radius = -2.0 * radius;
  radius = MPU_DSQRT(radius); /* correctly rounded in IEEE 754 on every platform */
  double s, c;
  rng_sincos2pi((double)w1 * (1.0 / 4294967296.0), &s, &c);
  *z0 = (float)(radius * c);
  *z1 = (float)(radius * s);
}

/* Four standard normals from one Philox block (two Box-Muller pairs). */
MPU_HD void rng_normal4(rng_u4 r, float out[4]) {
  rng_normal2(r.v[0], r.v[1], &out[0], &out[1]);
  rng_normal2(r.v[2], r.v[3], &out[2], &out[3]);
}

/* Element i of a stream of standard normals addressed by (key, a, b). */
MPU_HD float rng_normal_at(uint32_t k0, uint32_t k1, uint32_t a, uint32_t b, uint64_t i) {
  rng_u4 ctr = {{(uint32_t)(i >> 2), (uint32_t)(i >> 34), a, b}};
  float z[4];
  rng_normal4(rng_philox(ctr, k0, k1), z);
  return z[i & 3];
}

#endif
