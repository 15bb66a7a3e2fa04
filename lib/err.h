/*
 * err.h -- how lib/ reports failure: a status (the programs' exit status)
 * and one line saying what failed and what to do.  lib/ never prints an
 * error and never exits; bin/ does both.
 */
#ifndef MPU_ERR_H
#define MPU_ERR_H

enum {
  MPU_OK = 0,
  MPU_EVERIFY = 1, /* an input failed verification */
  MPU_EUSAGE = 2,  /* usage, I/O or resource error */
};

#ifdef __cplusplus /* the CUDA kernels (kernels/, .cu) are C++ */
extern "C" {
#endif

typedef struct {
  int status;
  char msg[1024];
} mpu_err;

/* Records the failure (the first one wins) and returns its status. */
int mpu_fail(mpu_err *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefixes the recorded message with context ("model.safetensors: ..."). */
int mpu_fail_ctx(mpu_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif
