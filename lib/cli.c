/*
 * cli.c -- program conventions shared by every mpu-<verb>.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mpuc.h"
#include "sign.h"

const char *cli_prog = "mpu";

/* ---------------------------------------------------------------- errors */
int mpu_fail(mpu_err *e, int status, const char *fmt, ...) {
  if (e->status) return e->status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  e->status = status;
  return status;
}

int mpu_fail_ctx(mpu_err *e, const char *fmt, ...) {
  char ctx[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx, sizeof ctx, fmt, ap);
  va_end(ap);
  size_t cl = strlen(ctx), n = sizeof e->msg;
  memmove(e->msg + cl + 2, e->msg, n - cl - 3);
  e->msg[n - 1] = 0;
  memcpy(e->msg, ctx, cl);
  e->msg[cl] = ':';
  e->msg[cl + 1] = ' ';
  return e->status;
}

/* ---------------------------------------------------------------- messages */
/* A mapped input file that shrinks under us raises SIGBUS: say so, remove
 * temporaries, exit 2 -- not a crash. */
static void on_sigbus(int sig);

void cli_init(const char *prog, int argc, char **argv) {
  (void)argc;
  /* OpenMP threads that spin between parallel regions (libgomp's default)
   * starve each other whenever a core is busy with anything else: measured
   * 15x slower on a shared two-core machine.  libgomp reads its policy from
   * the environment when it loads, so the only way to choose it is to start
   * again with it set; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins. */
  if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv); /* on failure, go on as we are */
  }
  cli_prog = prog;
  signal(SIGBUS, on_sigbus);
  /* A downstream stage that exits early is reported as a write error with
   * status 2, not a silent death by SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
}

void cli_msg(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", cli_prog);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int cli_report(const mpu_err *e) {
  if (e->status) fprintf(stderr, "%s: %s\n", cli_prog, e->msg);
  return e->status;
}

int cli_usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", cli_prog);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  const char *verb = strncmp(cli_prog, "mpu-", 4) == 0 ? cli_prog + 4 : NULL;
  if (verb) fprintf(stderr, "\nTry 'mpu %s --help'.\n", verb);
  else fprintf(stderr, "\nTry 'mpu --help'.\n");
  return MPU_EUSAGE;
}

void cli_version(void) {
  printf("%s (mpu) %s\n.mpuc format %d.%d\n", cli_prog, MPU_VERSION, MPUC_FORMAT_MAJOR, MPUC_FORMAT_MINOR);
}

int64_t cli_parse_size(const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || v < 0) return -1;
  static const char *const units[] = {"KMGT"};
  double mul = 1;
  if (*end) {
    const char *u = strchr(units[0], *end & ~0x20);
    if (!u && (*end | 0x20) == 'b' && !end[1]) return (int64_t)v; /* "100B" */
    if (!u) return -1;
    const char *rest = end + 1;
    int decimal = 0;
    if (!strcmp(rest, "B") || !strcmp(rest, "b")) decimal = 1;
    else if (*rest && strcmp(rest, "iB") && strcmp(rest, "ib")) return -1;
    for (int i = 0; i <= u - units[0]; i++) mul *= decimal ? 1000 : 1024;
  }
  v *= mul;
  if (v > 9.2e18) return -1;
  return (int64_t)v;
}

int cli_parse_int(const char *s, long long lo, long long hi, long long *v) {
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (end == s || *end || errno || x < lo || x > hi) return -1;
  *v = x;
  return 0;
}

int cli_common_option(cli_common *c, int opt, const char *arg) {
  long long v;
  int64_t size;
  switch (opt) {
  case 'q': c->quiet = 1; return 1;
  case OPT_PROGRESS: c->progress = 1; return 1;
  case OPT_NO_PROGRESS: c->progress = 0; return 1;
  case 'o': c->output = arg; return 1;
  case OPT_FORCE: c->enc.force = 1; return 1;
  case OPT_STORE: c->enc.level = 0; return 1;
  case OPT_NO_GROUP: c->enc.bytegroup = 0; return 1;
  case OPT_LEVEL:
    if (cli_parse_int(arg, 0, 19, &v)) {
      cli_usage_error("--level: '%s' is not a level in 0..19", arg);
      return -1;
    }
    c->enc.level = (int)v;
    return 1;
  case OPT_CHUNK_SIZE:
    size = cli_parse_size(arg);
    if (size < MPUC_MIN_CHUNK || size > MPUC_MAX_CHUNK || size % 64) {
      cli_usage_error("--chunk-size: '%s' must be 4KiB..64MiB and a multiple of 64 bytes", arg);
      return -1;
    }
    c->enc.chunk = (uint32_t)size;
    return 1;
  case OPT_SIGN_KEY: {
    /* Loaded now, so that a bad key stops the program before any work; one
     * key per program, kept for as long as it runs. */
    static sign_secret key;
    mpu_err e = {0};
    if (sign_secret_load(&key, arg, &e)) {
      cli_report(&e);
      return -1;
    }
    c->enc.sign = &key;
    return 1;
  }
  }
  return 0;
}

/* ---------------------------------------------------------------- cleanup */
/* Paths to remove if the program is interrupted: a list that only grows at
 * its head, each node complete before it is published, so the handler can
 * walk it at any moment.  Unregistering clears a node's path. */
typedef struct cleanup_node {
  char *volatile path;
  struct cleanup_node *next;
} cleanup_node;
static cleanup_node *volatile cleanup_head;
static volatile sig_atomic_t cleanup_installed;

/* Removes a file or a directory tree (symbolic links are removed, not
 * followed), without malloc: safe in a handler.  Deeper than 16 levels is
 * left alone. */
#include <dirent.h>
static void remove_tree(const char *p, int depth) {
  if (unlink(p) == 0 || (errno != EISDIR && errno != EPERM) || depth > 16) return;
  DIR *d = opendir(p);
  if (d) {
    struct dirent *de;
    char buf[4096];
    while ((de = readdir(d))) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
      if ((size_t)snprintf(buf, sizeof buf, "%s/%s", p, de->d_name) < sizeof buf) remove_tree(buf, depth + 1);
    }
    closedir(d);
  }
  rmdir(p);
}

void cli_remove_tree(const char *path) { remove_tree(path, 0); }

static void remove_registered(void) {
  for (cleanup_node *n = cleanup_head; n; n = n->next) {
    char *p = n->path;
    if (p) remove_tree(p, 0);
  }
}

static void on_signal(int sig) {
  remove_registered();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void on_sigbus(int sig) {
  (void)sig;
  static const char msg[] = ": an input file changed size while being read\n";
  if (write(2, cli_prog, strlen(cli_prog)) < 0 || write(2, msg, sizeof msg - 1) < 0) {}
  remove_registered();
  _exit(2);
}

void cli_cleanup_register(const char *path) {
  if (!cleanup_installed) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    cleanup_installed = 1;
  }
  /* reuse a cleared node, else add one at the head */
  char *copy = strdup(path);
  if (!copy) return;
  for (cleanup_node *n = cleanup_head; n; n = n->next)
    if (!n->path) {
      n->path = copy;
      return;
    }
  cleanup_node *n = malloc(sizeof *n);
  if (!n) {
    free(copy);
    return;
  }
  n->path = copy;
  n->next = cleanup_head;
  cleanup_head = n;
}

void cli_cleanup_unregister(const char *path) {
  for (cleanup_node *n = cleanup_head; n; n = n->next)
    if (n->path && !strcmp(n->path, path)) {
      char *p = n->path;
      n->path = NULL;
      free(p);
      return;
    }
}

/* ---------------------------------------------------------------- I/O */
int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

long long read_full(int fd, void *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)p + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  return (long long)got;
}

/* Pipes default to 64 KiB, which costs a context switch per 64 KiB between
 * stages; raise them to the unprivileged maximum (usually 1 MiB). */
static void widen_pipe(int fd) {
#ifdef F_SETPIPE_SZ
  struct stat st;
  if (fstat(fd, &st) || !S_ISFIFO(st.st_mode)) return;
  int size = 1 << 20;
  FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
  if (f) {
    if (fscanf(f, "%d", &size) != 1) size = 1 << 20;
    fclose(f);
  }
  if (size > (16 << 20)) size = 16 << 20;
  while (size >= (64 << 10) && fcntl(fd, F_SETPIPE_SZ, size) < 0) size /= 2;
#else
  (void)fd;
#endif
}

const char *cli_input_name(const char *path) {
  return !path || !strcmp(path, "-") ? "(stdin)" : path;
}

int cli_open_input(const char *path, int *fd, mpu_err *e) {
  if (!path || !strcmp(path, "-")) {
    if (isatty(0))
      return mpu_fail(e, MPU_EUSAGE, "standard input is a terminal; give a file or pipe a stream in");
    *fd = 0;
    widen_pipe(0);
    return 0;
  }
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0) return mpu_fail(e, MPU_EUSAGE, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(*fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    close(*fd);
    return mpu_fail(e, MPU_EUSAGE, "%s: is a directory", path);
  }
#ifdef POSIX_FADV_SEQUENTIAL
  posix_fadvise(*fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
  return 0;
}

int cli_output_check(const char *path, int force, mpu_err *e) {
  if (!path || !strcmp(path, "-")) {
    if (!path && isatty(1))
      return mpu_fail(e, MPU_EUSAGE,
                      "refusing to write binary data to a terminal; redirect it, use -o FILE, or force with -o -");
    return 0;
  }
  struct stat st;
  if (!force && lstat(path, &st) == 0)
    return mpu_fail(e, MPU_EUSAGE, "%s already exists; remove it or use --force", path);
  return 0;
}

int cli_output_open(cli_output *o, const char *path, int force, mpu_err *e) {
  memset(o, 0, sizeof *o);
  if (cli_output_check(path, force, e)) return e->status;
  if (!path || !strcmp(path, "-")) {
    o->fd = 1;
    widen_pipe(1);
    return 0;
  }
  size_t n = strlen(path) + 16;
  o->path = strdup(path);
  o->tmp = malloc(n);
  if (!o->path || !o->tmp) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  snprintf(o->tmp, n, "%s.tmp.XXXXXX", path);
  o->fd = mkstemp(o->tmp);
  if (o->fd < 0) {
    int err = errno;
    free(o->tmp);
    o->tmp = NULL;
    return mpu_fail(e, MPU_EUSAGE, "%s: cannot create: %s", path, strerror(err));
  }
  cli_cleanup_register(o->tmp);
  /* mkstemp makes 0600; an output file gets the usual 0666 & ~umask. */
  mode_t um = umask(0);
  umask(um);
  fchmod(o->fd, 0666 & ~um);
  return 0;
}

static char *volume_name(const char *path, int index) {
  size_t n = strlen(path) + 16;
  char *v = malloc(n);
  if (v) snprintf(v, n, "%s.%03d", path, index);
  return v;
}

/* Starts the next volume's temporary file. */
static int volume_next(cli_output *o, mpu_err *e) {
  if (o->fd >= 0 && close(o->fd)) return mpu_fail(e, MPU_EUSAGE, "%s: %s", o->path, strerror(errno));
  char *final = volume_name(o->path, o->nvol + 1);
  struct stat st;
  if (!final) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  if (!o->force && lstat(final, &st) == 0) {
    int rc = mpu_fail(e, MPU_EUSAGE, "%s already exists; remove it or use --force", final);
    free(final);
    return rc;
  }
  size_t n = strlen(final) + 16;
  char *tmp = malloc(n), **list = realloc(o->vol_tmp, (size_t)(o->nvol + 1) * sizeof *list);
  if (!tmp || !list) {
    free(final);
    free(tmp);
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  o->vol_tmp = list;
  snprintf(tmp, n, "%s.tmp.XXXXXX", final);
  free(final);
  o->fd = mkstemp(tmp);
  if (o->fd < 0) {
    int err = errno;
    free(tmp);
    return mpu_fail(e, MPU_EUSAGE, "%s: cannot create: %s", o->path, strerror(err));
  }
  mode_t um = umask(0);
  umask(um);
  fchmod(o->fd, 0666 & ~um);
  cli_cleanup_register(tmp);
  o->vol_tmp[o->nvol++] = tmp;
  o->in_volume = 0;
  return 0;
}

int cli_output_open_volumes(cli_output *o, const char *path, uint64_t volume, int force, mpu_err *e) {
  memset(o, 0, sizeof *o);
  o->fd = -1;
  o->path = strdup(path);
  o->volume = volume;
  o->force = force;
  if (!o->path) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  return volume_next(o, e);
}

int cli_output_write(cli_output *o, const void *p, size_t n, mpu_err *e) {
  const char *c = p;
  while (n) {
    size_t take = n;
    if (o->volume) {
      if (o->in_volume == o->volume && volume_next(o, e)) return e->status;
      if (take > o->volume - o->in_volume) take = (size_t)(o->volume - o->in_volume);
    }
    if (write_all(o->fd, c, take)) {
      if (errno == EPIPE) return mpu_fail(e, MPU_EUSAGE, "output closed early (the next stage exited)");
      return mpu_fail(e, MPU_EUSAGE, "%s: write failed: %s", o->path ? o->path : "(stdout)", strerror(errno));
    }
    o->bytes += take;
    o->in_volume += take;
    c += take;
    n -= take;
  }
  return 0;
}

int cli_output_commit(cli_output *o, mpu_err *e) {
  if (!o->path) return 0;
  int rc = 0;
  if (o->fd >= 0 && close(o->fd)) rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", o->path, strerror(errno));
  o->fd = -1;
  if (o->volume) {
    for (int i = 0; i < o->nvol; i++) {
      char *final = volume_name(o->path, i + 1);
      if (!rc && (!final || rename(o->vol_tmp[i], final)))
        rc = mpu_fail(e, MPU_EUSAGE, "%s: cannot rename into place: %s", final ? final : o->path, strerror(errno));
      free(final);
    }
    if (rc) cli_output_abort(o);
    for (int i = 0; i < o->nvol; i++) {
      cli_cleanup_unregister(o->vol_tmp[i]);
      free(o->vol_tmp[i]);
    }
    free(o->vol_tmp);
    o->vol_tmp = NULL;
    o->nvol = 0;
    free(o->path);
    o->path = NULL;
    return rc;
  }
  if (!rc && rename(o->tmp, o->path))
    rc = mpu_fail(e, MPU_EUSAGE, "%s: cannot rename into place: %s", o->path, strerror(errno));
  if (rc) unlink(o->tmp);
  cli_cleanup_unregister(o->tmp);
  free(o->tmp);
  free(o->path);
  o->tmp = o->path = NULL;
  return rc;
}

void cli_output_abort(cli_output *o) {
  if (o->volume) {
    if (o->fd >= 0) close(o->fd);
    o->fd = -1;
    for (int i = 0; i < o->nvol; i++) {
      unlink(o->vol_tmp[i]);
      cli_cleanup_unregister(o->vol_tmp[i]);
      free(o->vol_tmp[i]);
    }
    free(o->vol_tmp);
    o->vol_tmp = NULL;
    o->nvol = 0;
    free(o->path);
    o->path = NULL;
    return;
  }
  if (!o->tmp) return;
  if (o->fd >= 0) close(o->fd);
  unlink(o->tmp);
  cli_cleanup_unregister(o->tmp);
  free(o->tmp);
  free(o->path);
  o->tmp = o->path = NULL;
}

/* ---------------------------------------------------------------- file windows */
#include <sys/mman.h>

const uint8_t *file_window_map(file_window *w, uint64_t off, size_t n) {
  file_window_close(w);
  if (!n) return (const uint8_t *)"";
  long page = sysconf(_SC_PAGESIZE);
  uint64_t start = off - off % (uint64_t)page;
  size_t len = (size_t)(off - start) + n;
  void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, w->fd, (off_t)start);
  if (m == MAP_FAILED) return NULL;
  madvise(m, len, MADV_SEQUENTIAL);
  w->map = m;
  w->len = len;
  return (const uint8_t *)m + (off - start);
}

void file_window_close(file_window *w) {
  if (w->map) munmap(w->map, w->len);
  w->map = NULL;
  w->len = 0;
}

/* ---------------------------------------------------------------- progress */
double cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_progress_start(cli_progress *p, int mode, const char *what, uint64_t total) {
  memset(p, 0, sizeof *p);
  p->on = mode < 0 ? isatty(2) : mode;
  p->what = what;
  p->total = total;
  p->start = p->last = cli_now();
}

static void human_bytes(char *buf, size_t n, double v) {
  const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (v >= 1024 && i < 4) {
    v /= 1024;
    i++;
  }
  snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

void cli_progress_update(cli_progress *p, uint64_t done) {
  p->done = done;
  if (!p->on) return;
  double now = cli_now();
  if (now - p->last < 0.2) return;
  p->last = now;
  char a[32], r[32];
  human_bytes(a, sizeof a, (double)done);
  human_bytes(r, sizeof r, done / (now - p->start + 1e-9));
  if (p->total)
    fprintf(stderr, "\r%s: %s %5.1f%%  %s  %s/s   ", cli_prog, p->what, 100.0 * done / p->total, a, r);
  else
    fprintf(stderr, "\r%s: %s %s  %s/s   ", cli_prog, p->what, a, r);
}

void cli_progress_end(cli_progress *p) {
  if (p->on && p->last > p->start) fprintf(stderr, "\r\033[K");
}
