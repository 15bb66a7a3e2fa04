/*
 * test_eval.c -- the per-item pieces of lib/evaluate.c on cases worked out by
 * hand (OpenUnlearning's definitions, unlearning-anchors.md 2.6).
 */
#include <math.h>

#include "evaluate.h"
#include "tap.h"

/* ES = 1 - k/|y|, k the first position from which every prediction matches. */
TEST(extraction_strength_by_hand) {
  uint8_t all[4] = {1, 1, 1, 1}, none[4] = {0, 0, 0, 0}, tail[5] = {0, 1, 0, 1, 1}, last[3] = {1, 1, 0};
  CHECK(extraction_strength(all, 4) == 1.0);       /* k = 0 */
  CHECK(extraction_strength(none, 4) == 0.0);      /* k = 4 */
  CHECK(extraction_strength(tail, 5) == 1.0 - 3.0 / 5.0); /* matches from position 3 on */
  CHECK(extraction_strength(last, 3) == 0.0);      /* the last token is wrong */
  CHECK(isnan(extraction_strength(all, 0)));
}

/* Min-K% = -mean of the max(1, int(n k)) lowest log-probabilities. */
TEST(min_k_by_hand) {
  double lp[5] = {-0.1, -3.0, -0.5, -2.0, -1.0};
  CHECK(fabs(min_k_score(lp, 5, 0.4) - 2.5) < 1e-15); /* int(2.0) = 2: -3 and -2 */
  double lp2[5] = {-0.1, -3.0, -0.5, -2.0, -1.0};
  CHECK(fabs(min_k_score(lp2, 5, 0.1) - 3.0) < 1e-15); /* int(0.5) = 0 -> 1 */
  double lp3[3] = {-1, -2, -4};
  CHECK(fabs(min_k_score(lp3, 3, 1.0) - 7.0 / 3.0) < 1e-15);
  double lp4[3] = {-1, -2, -4};
  CHECK(fabs(min_k_score(lp4, 3, 0.7) - 3.0) < 1e-15); /* int(2.1) = 2: -4 and -2 */
}

int main(void) {
  RUN(extraction_strength_by_hand);
  RUN(min_k_by_hand);
  return tap_done();
}
