/*
 * hd.h -- what lets one header hold math that runs on the CPU and the GPU
 * (design.md: "math that runs on both CPU and GPU lives once").
 *
 *   MPU_HD         a function for both: static inline in C; in CUDA
 *                  __host__ __device__ __forceinline__ as well
 *   FADD ... DMUL  one IEEE operation, rounded to nearest, never fused:
 *                  plain operators on the host (the Makefile compiles C
 *                  with -ffp-contract=off), the _rn intrinsics on the
 *                  device (which ptxas never contracts into an FMA, even
 *                  were -fmad=false forgotten)
 *   MPU_DSQRT      correctly rounded double square root on both
 *
 * Device code of these headers may use only these operations, +, -, *, /
 * (IEEE-exact on the GPU unless built with --use_fast_math or
 * -prec-div=false, which the Makefile never passes), integer arithmetic and
 * conversions with the default rounding; never libm (sinf, logf, ... differ
 * between glibc and CUDA in the last bit) nor CUDA's fast intrinsics.
 */
#ifndef MPU_HD_H
#define MPU_HD_H

#ifdef __CUDACC__
#define MPU_HD static __host__ __device__ __forceinline__
#else
#define MPU_HD static inline
#endif

#ifdef __CUDA_ARCH__
#define FMUL(a, b) __fmul_rn((a), (b))
#define FADD(a, b) __fadd_rn((a), (b))
#define FSUB(a, b) __fsub_rn((a), (b))
#define DMUL(a, b) __dmul_rn((a), (b))
#define DADD(a, b) __dadd_rn((a), (b))
#define MPU_DSQRT(x) __dsqrt_rn(x)
#else
#define FMUL(a, b) ((a) * (b))
#define FADD(a, b) ((a) + (b))
#define FSUB(a, b) ((a) - (b))
#define DMUL(a, b) ((a) * (b))
#define DADD(a, b) ((a) + (b))
#define MPU_DSQRT(x) __builtin_sqrt(x)
#endif

#endif
