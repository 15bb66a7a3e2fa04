/*
 * cli.h -- the conventions every mpu program follows (design.md, "Command-line
 * conventions"): named messages, input from a file or '-', output to stdout
 * or an atomic -o FILE, no binary to a terminal, progress on stderr only when
 * it is a terminal, --help/--version.
 */
#ifndef MPU_CLI_H
#define MPU_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"

/* Program name used in messages ("mpu-import"); set once in main. */
extern const char *cli_prog;
void cli_init(const char *prog, int argc, char **argv);

/* "mpu-import: <msg>" on stderr. */
void cli_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the error and returns its status, for `return cli_report(&e);`. */
int cli_report(const mpu_err *e);
/* "mpu-import: <msg>\nTry 'mpu import --help'." and status 2. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_version(void);

/* Parses sizes like 4096, 64K, 16MiB, 2G, 4.5GB (K/M/G/T = powers of 1024;
 * KB/MB/GB/TB = powers of 1000).  -1 on error. */
int64_t cli_parse_size(const char *s);
int cli_parse_int(const char *s, long long lo, long long hi, long long *v);

/* ---- input ---- */
/* Opens path for reading ("-" or NULL: stdin, refused when it is a terminal). */
int cli_open_input(const char *path, int *fd, mpu_err *e);
const char *cli_input_name(const char *path);

/* ---- output ---- */
/* An output that appears complete only when committed: -o FILE is written to
 * FILE.tmp.XXXXXX beside it and renamed at the end; on failure, or on
 * SIGINT/SIGTERM/SIGHUP, the temporary is removed. */
typedef struct {
  int fd;
  char *path;      /* final path, NULL for stdout */
  char *tmp;       /* temporary path while writing */
  uint64_t bytes;  /* written so far */
  /* volumes: the output cut into PATH.001, PATH.002, ... of at most
   * `volume` bytes each, which cat joins back; all renamed at commit */
  uint64_t volume, in_volume;
  char **vol_tmp;
  int nvol;
  int force;
} cli_output;

/* path NULL: stdout, refused when a terminal; "-": stdout, forced.
 * Refuses to replace an existing FILE unless force. */
int cli_output_open(cli_output *o, const char *path, int force, mpu_err *e);
/* What cli_output_open would refuse, checked before long work begins. */
int cli_output_check(const char *path, int force, mpu_err *e);
/* The same, cut into volumes of at most `volume` bytes (PATH.001, ...). */
int cli_output_open_volumes(cli_output *o, const char *path, uint64_t volume, int force, mpu_err *e);
int cli_output_write(cli_output *o, const void *p, size_t n, mpu_err *e);
int cli_output_commit(cli_output *o, mpu_err *e);
void cli_output_abort(cli_output *o);

/* A temporary path removed if the program is interrupted (directories too). */
void cli_cleanup_register(const char *path);
void cli_cleanup_unregister(const char *path);
/* Removes a file or a whole directory tree (links are not followed). */
void cli_remove_tree(const char *path);

/* Writes all of p to fd, retrying short writes. */
int write_all(int fd, const void *p, size_t n);
/* Reads up to n bytes, retrying short reads until n or end of file. */
long long read_full(int fd, void *p, size_t n);

/* ---- options every program shares ---- */
enum {
  OPT_PROGRESS = 1000, OPT_NO_PROGRESS, OPT_FORCE, OPT_JSON, OPT_LEVEL, OPT_STORE, OPT_NO_GROUP,
  OPT_CHUNK_SIZE, OPT_SIGN_KEY, OPT_DEVICE, OPT_PROGRAM = 1100 /* first value free for a program's own options */
};
#define CLI_COMMON_OPTIONS                                                                \
  {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},                        \
  {"quiet", no_argument, 0, 'q'}, {"progress", no_argument, 0, OPT_PROGRESS},             \
  {"no-progress", no_argument, 0, OPT_NO_PROGRESS}
#define CLI_OUTPUT_OPTIONS                                                                \
  {"output", required_argument, 0, 'o'}, {"force", no_argument, 0, OPT_FORCE},            \
  {"level", required_argument, 0, OPT_LEVEL}, {"store", no_argument, 0, OPT_STORE},       \
  {"no-group", no_argument, 0, OPT_NO_GROUP}, {"chunk-size", required_argument, 0, OPT_CHUNK_SIZE}, \
  {"sign-key", required_argument, 0, OPT_SIGN_KEY}
/* Help text for the two option groups above. */
#define CLI_OUTPUT_HELP                                                                   \
  "  -o, --output FILE    write to FILE (atomically) instead of standard output\n"         \
  "      --force          replace FILE if it exists\n"                                      \
  "      --level N        zstd level 1..19 (default 1), or 0 to store uncompressed\n"       \
  "      --store          store uncompressed (fastest; same as --level 0)\n"                \
  "      --no-group       do not byte-group 2-, 4- and 8-byte elements before compressing\n" \
  "      --chunk-size S   bytes per chunk frame (default 4MiB; 4KiB..64MiB)\n"        \
  "      --sign-key FILE  sign the stream with this key (mpu keygen --sign)\n"
#define CLI_COMMON_HELP                                                                   \
  "  -q, --quiet          no notes on standard error, only errors\n"                        \
  "      --progress       show progress on standard error (default: when it is a terminal)\n" \
  "      --no-progress    never show progress\n"                                             \
  "  -h, --help           show this help and exit\n"                                        \
  "  -V, --version        show the version and exit\n"

/* --device auto|cpu|cuda, for programs that can compute on a GPU: parse
 * with gpu_parse_device() and open with gpu_open() (kernels/gpu.h). */
#define CLI_DEVICE_OPTION {"device", required_argument, 0, OPT_DEVICE}
#define CLI_DEVICE_HELP                                                                   \
  "      --device D       auto (default: a CUDA GPU if one is usable, else the CPU), cpu,\n" \
  "                       or cuda (fail if there is none); the output is the same\n"

/* How a program writes its output stream. */
typedef struct {
  int level;            /* 0 store, 1..19 zstd; default 1 */
  int bytegroup;        /* byte-group float data; default 1 */
  uint32_t chunk;       /* raw bytes per chunk frame */
  int force;            /* replace an existing -o FILE */
  uint64_t volume;      /* cut -o FILE into volumes of this size (0: one file) */
  /* sign the stream in its trailer (--sign-key; lib/sign.h); NULL: unsigned */
  const struct sign_secret *sign;
} stream_options;

typedef struct {
  int progress;         /* -1 auto, 0 off, 1 on */
  int quiet;
  const char *output;   /* -o */
  stream_options enc;
} cli_common;
#define CLI_COMMON_DEFAULT {-1, 0, NULL, {1, 1, 4u << 20, 0, 0, NULL}}

/* Handles an option of CLI_COMMON_OPTIONS / CLI_OUTPUT_OPTIONS: returns 1 if
 * handled, 0 if not one of them, -1 after printing a usage error.  'h' and
 * 'V' are the program's to handle (it prints its own help). */
int cli_common_option(cli_common *c, int opt, const char *arg);

/* ---- reading files through a sliding mapping ---- */
/* Bytes [off, off+n) of a file, mapped read-only (the previous window is
 * unmapped, so resident memory stays at one window whatever the file size).
 * Avoids the copy a read(2) into a buffer would make. */
typedef struct {
  int fd;
  void *map;
  size_t len;
} file_window;
const uint8_t *file_window_map(file_window *w, uint64_t off, size_t n);
void file_window_close(file_window *w);
#define FILE_WINDOW (64u << 20)

/* ---- progress ---- */
typedef struct {
  int on;
  uint64_t total, done;
  double start, last;
  const char *what;
} cli_progress;

/* mode: -1 auto (on when stderr is a terminal), 0 off, 1 on. */
void cli_progress_start(cli_progress *p, int mode, const char *what, uint64_t total);
void cli_progress_update(cli_progress *p, uint64_t done);
void cli_progress_end(cli_progress *p);
double cli_now(void);

#endif
