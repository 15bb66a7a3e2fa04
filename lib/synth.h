/*
 * synth.h -- a TOFU-style synthetic unlearning benchmark made from a seed:
 * fictitious authors with question/answer pairs about them, forget, retain
 * and holdout splits, general knowledge of a fictional world, and "I don't
 * know" answers, as JSON Lines files in a directory.
 *
 * Everything comes from built-in word lists and sentence templates; every
 * choice is a Philox draw (rng.h) addressed by (seed, entity, attribute,
 * purpose), so the same options give the same bytes on every machine, and
 * adding authors, questions or facts leaves the ones already there as they
 * were.
 */
#ifndef MPU_SYNTH_H
#define MPU_SYNTH_H

#include <stdint.h>

#include "err.h"

/* Raised whenever the same options would give different bytes. */
#define SYNTH_VERSION 1

#define SYNTH_MAX_AUTHORS 1000  /* trained authors, and holdout authors */
#define SYNTH_MAX_SPLITS 50     /* forget percentages 1..50 */
#define SYNTH_MAX_PERTURBED 20  /* wrong answers per question */
#define SYNTH_RETAIN_EVAL 20    /* authors in retain_perturbed.jsonl, at most */
#define SYNTH_WORLD_EVAL 100    /* facts in world_facts.jsonl, at most */
#define SYNTH_IDK 100           /* lines of idk.jsonl */

typedef struct {
  uint64_t seed;
  int authors;         /* trained authors (default 200) */
  int qa;              /* questions per author (default 20) */
  int perturbed;       /* wrong answers per question (default 5) */
  int splits[SYNTH_MAX_SPLITS], nsplits; /* forget percentages, increasing (default 1, 5, 10) */
  int holdout;         /* holdout authors; -1: as many as the largest split forgets */
  int facts;           /* general facts (default 200) */
} synth_options;

void synth_defaults(synth_options *o);
/* Questions an author can be asked (the most --qa may be). */
int synth_max_qa(void);
/* General facts the world holds (the most --facts may be). */
int synth_max_facts(void);
/* Authors forgotten by a split of pct percent of n authors: round(n pct / 100),
 * at least 1. */
int synth_split_authors(int n, int pct);
/* Parses "1,5,10" into o->splits: status 2 unless increasing, in 1..50. */
int synth_parse_splits(synth_options *o, const char *s, mpu_err *e);
/* Checks the options as a whole and settles the holdout default: status 2
 * with what is wrong. */
int synth_check(synth_options *o, mpu_err *e);

/* Writes the benchmark into the directory dir, made whole beside it as
 * dir.tmp.XXXXXX and renamed into place at the end (removed on failure or
 * interruption).  An existing dir is refused unless it is an empty directory
 * or force is set (it is replaced then, and removed only once the new one is
 * in place).  Status 2 on an I/O error. */
int synth_write(const synth_options *o, const char *dir, int force, mpu_err *e);

#endif
