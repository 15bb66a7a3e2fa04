/*
 * fp.h -- float formats: bf16 and IEEE half to and from fp32, with
 * round-to-nearest-even, exactly as PyTorch and NumPy convert.
 * Compiles as C and as CUDA (host and device), so both paths share it.
 */
#ifndef MPU_FP_H
#define MPU_FP_H

#include <stdint.h>
#include <string.h>

#include "hd.h"

MPU_HD uint32_t fp_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

MPU_HD float fp_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

MPU_HD float bf16_to_f32(uint16_t h) { return fp_from_bits((uint32_t)h << 16); }

/* Round to nearest even; NaN stays NaN (quieted), as torch does. */
MPU_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = fp_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

MPU_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0x1f) return fp_from_bits(sign | 0x7f800000u | mant << 13);
  if (exp == 0) {
    if (!mant) return fp_from_bits(sign);
    /* subnormal: normalise the mantissa */
    int e = -1;
    do {
      mant <<= 1;
      e++;
    } while (!(mant & 0x400));
    return fp_from_bits(sign | (uint32_t)(112 - e) << 23 | (mant & 0x3ff) << 13);
  }
  return fp_from_bits(sign | (exp + 112) << 23 | mant << 13);
}

MPU_HD uint16_t f32_to_f16(float f) {
  uint32_t u = fp_bits(f), sign = (u >> 16) & 0x8000;
  u &= 0x7fffffffu;
  if (u >= 0x7f800000u) return (uint16_t)(sign | (u > 0x7f800000u ? 0x7e00u | ((u >> 13) & 0x3ff) : 0x7c00u));
  if (u >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: infinity */
  if (u < 0x38800000u) {                                    /* below 2^-14: subnormal half */
    if (u <= 0x33000000u) return (uint16_t)sign;            /* at most half of 2^-24: zero (ties to even) */
    uint32_t e = u >> 23, mant = (u & 0x7fffffu) | 0x800000u, shift = 126 - e;
    uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t base = (u >> 13) - (112u << 10), rem = u & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (base & 1))) base++;
  return (uint16_t)(sign | base);
}

#endif
