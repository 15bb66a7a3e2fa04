/*
 * test_fuzz_regressions.c -- replays every input the fuzzer ever crashed on
 * (tests/fuzz/regressions) and every spec vector through the fuzz target, so
 * a fixed bug stays fixed in the ordinary test run (and under SAN=1).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
#include "../fuzz/fuzz_reader.c"

static int replay_dir(const char *dir, int with_modes) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *de;
  int n = 0;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.' || strstr(de->d_name, ".md") || strstr(de->d_name, ".sh") || strstr(de->d_name, ".json") ||
        strstr(de->d_name, ".txt") || strstr(de->d_name, ".expect"))
      continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    FILE *f = fopen(path, "rb");
    if (!f) continue;
    static uint8_t buf[1 << 20];
    size_t len = fread(buf + 1, 1, sizeof buf - 1, f);
    fclose(f);
    if (with_modes) {
      /* the vectors are plain streams: try them under several buffering modes */
      static const uint8_t modes[] = {0x00, 0x01, 0x05, 0x1c, 0x23, 0x30};
      for (size_t m = 0; m < sizeof modes; m++) {
        buf[0] = modes[m];
        LLVMFuzzerTestOneInput(buf, len + 1);
      }
    } else {
      LLVMFuzzerTestOneInput(buf + 1, len);
    }
    n++;
  }
  closedir(d);
  return n;
}

TEST(fuzz_regressions_do_not_crash) { CHECK(replay_dir("tests/fuzz/regressions", 0) >= 1); }
TEST(vectors_through_the_fuzz_target) {
  CHECK(replay_dir("spec/vectors", 1) >= 5);
  CHECK(replay_dir("spec/vectors/bad", 1) >= 5);
}

int main(void) {
  RUN(fuzz_regressions_do_not_crash);
  RUN(vectors_through_the_fuzz_target);
  return tap_done();
}
