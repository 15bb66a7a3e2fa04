/*
 * tap.h -- a minimal TAP producer for the C unit tests.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ_U64(a, b); }
 *   int main(void) { RUN(name); return tap_done(); }
 *
 * Each TEST is one TAP line; a failed CHECK marks it "not ok" with the
 * condition and location as a diagnostic, and the test goes on.
 */
#ifndef TAP_H
#define TAP_H
#include <stdio.h>
#include <stdint.h>

static int tap_n, tap_failed_tests, tap_cur_failed;

#define TEST(name) static void name(void)
#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      tap_cur_failed = 1;                                                           \
      printf("# CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);            \
    }                                                                               \
  } while (0)
#define CHECK_EQ_U64(a, b)                                                          \
  do {                                                                              \
    unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b);  \
    if (a_ != b_) {                                                                 \
      tap_cur_failed = 1;                                                           \
      printf("# CHECK failed: %s == %s (%llu vs %llu) (%s:%d)\n", #a, #b, a_, b_,   \
             __FILE__, __LINE__);                                                   \
    }                                                                               \
  } while (0)
#define RUN(name)                                                                   \
  do {                                                                              \
    tap_cur_failed = 0;                                                             \
    name();                                                                         \
    tap_n++;                                                                        \
    if (tap_cur_failed) tap_failed_tests++;                                         \
    printf("%s %d - %s\n", tap_cur_failed ? "not ok" : "ok", tap_n, #name);         \
    fflush(stdout);                                                                 \
  } while (0)

static inline int tap_done(void) {
  printf("1..%d\n", tap_n);
  return tap_failed_tests ? 1 : 0;
}
#endif
