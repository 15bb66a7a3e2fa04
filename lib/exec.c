/*
 * exec.c -- an outside trainer's round trip (see exec.h).
 */
#include "exec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "hf.h"
#include "prov.h"

/* The model as a stream file, then as a Hugging Face directory. */
static int export_model(model *m, const char *dir, const char *hfdir, mpu_err *e) {
  char path[4200];
  snprintf(path, sizeof path, "%s/export.mpuc", dir);
  stream_options so = {.level = 0, .bytegroup = 0, .chunk = 4u << 20, .force = 1};
  model *one[1] = {m};
  int rc = model_save(one, 1, path, &so, 0, prov_header("exec-export", NULL), NULL, e);
  ms_reader in;
  if (!rc && !(rc = ms_reader_open(&in, path, e))) {
    hf_export_options o = {.progress = 0};
    rc = hf_export(&in, hfdir, &o, e);
    ms_reader_close(&in);
  }
  unlink(path);
  return rc;
}

/* "[a, b]" for messages. */
static void shape_str(json_t *t, char *buf, size_t n) {
  size_t i, k = 0;
  json_t *d;
  buf[0] = 0;
  json_array_foreach(json_object_get(t, "shape"), i, d)
    k += (size_t)snprintf(buf + k, k < n ? n - k : 0, "%s%lld", i ? ", " : "[", (long long)json_integer_value(d));
  snprintf(buf + k, k < n ? n - k : 0, "%s", i ? "]" : "[]");
}

/* Every tensor of want must be in got with the same shape and dtype, and
 * got must hold no other. */
static int same_tensors(json_t *want, json_t *got, mpu_err *e) {
  size_t i, j;
  json_t *a, *b;
  json_array_foreach(want, i, a) {
    const char *name = json_string_value(json_object_get(a, "name"));
    json_t *match = NULL;
    json_array_foreach(got, j, b) if (!strcmp(name, json_string_value(json_object_get(b, "name")))) match = b;
    if (!match) return mpu_fail(e, MPU_EVERIFY, "the command's model lacks tensor %s", name);
    char sa[96], sb[96];
    shape_str(a, sa, sizeof sa);
    shape_str(match, sb, sizeof sb);
    const char *da = json_string_value(json_object_get(a, "dtype")), *db = json_string_value(json_object_get(match, "dtype"));
    if (strcmp(sa, sb) || strcmp(da, db))
      return mpu_fail(e, MPU_EVERIFY, "the command changed tensor %s from %s %s to %s %s", name, da, sa, db, sb);
  }
  if (json_array_size(got) != json_array_size(want)) {
    json_array_foreach(got, j, b) {
      const char *name = json_string_value(json_object_get(b, "name"));
      int found = 0;
      json_array_foreach(want, i, a) found |= !strcmp(name, json_string_value(json_object_get(a, "name")));
      if (!found) return mpu_fail(e, MPU_EVERIFY, "the command's model has a tensor the copy does not: %s", name);
    }
  }
  return 0;
}

/* The output directory back as a model with m's layout; its tensors into m. */
static int import_model(model *m, const char *dir, const char *hfdir, const char *config, mpu_err *e) {
  char path[4200], cfg[4300];
  snprintf(path, sizeof path, "%s/import.mpuc", dir);
  snprintf(cfg, sizeof cfg, "%s/config.json", hfdir);
  struct stat st;
  hf_source src;
  ms_writer w;
  stream_options so = {.level = 0, .bytegroup = 0, .chunk = 4u << 20, .force = 1};
  int rc = hf_source_open(&src, hfdir, stat(cfg, &st) == 0 ? NULL : config, e);
  if (!rc) rc = hf_import(&src, &w, path, &so, NULL, 0, e);
  hf_source_close(&src);
  if (rc) return mpu_fail_ctx(e, "the command's output (%s)", "MPU_OUTPUT_DIR");
  ms_reader in;
  model r;
  memset(&r, 0, sizeof r);
  if (!(rc = ms_reader_open(&in, path, e))) {
    rc = same_tensors(json_object_get(m->header, "tensors"), json_object_get(in.header, "tensors"), e);
    if (!rc) rc = model_load(&r, &in, -1, e);
    ms_reader_close(&in);
  }
  unlink(path);
  if (!rc && (r.nparams != m->nparams || r.nextra != m->nextra))
    rc = mpu_fail(e, MPU_EVERIFY, "the command's model does not have the copy's layout");
  if (!rc) {
    memcpy(m->params, r.params, m->nparams * sizeof(float));
    for (size_t i = 0; i < m->nextra; i++)
      for (size_t j = 0; j < r.nextra; j++)
        if (!strcmp(m->extra[i].name, r.extra[j].name)) memcpy(m->extra[i].data, r.extra[j].data, m->extra[i].entry.raw_size);
  }
  model_free(&r);
  return rc;
}

static int run_command(const char *cmd, const char *model_dir, const char *out_dir, const exec_var *vars, size_t nvars,
                       mpu_err *e) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return mpu_fail(e, MPU_EUSAGE, "--exec: fork: %s", strerror(errno));
  if (pid == 0) {
    setenv("MPU_MODEL_DIR", model_dir, 1);
    setenv("MPU_OUTPUT_DIR", out_dir, 1);
    for (size_t i = 0; i < nvars; i++) /* unset: none inherited from our caller */
      if (vars[i].value) setenv(vars[i].name, vars[i].value, 1);
      else unsetenv(vars[i].name);
    if (dup2(2, 1) < 0) _exit(127);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return mpu_fail(e, MPU_EUSAGE, "--exec: waitpid: %s", strerror(errno));
  if (WIFSIGNALED(status)) return mpu_fail(e, MPU_EUSAGE, "--exec: the command was killed by signal %d", WTERMSIG(status));
  if (WEXITSTATUS(status) == 127) return mpu_fail(e, MPU_EUSAGE, "--exec: the command could not be run (status 127)");
  if (WEXITSTATUS(status)) return mpu_fail(e, MPU_EUSAGE, "--exec: the command failed with status %d", WEXITSTATUS(status));
  return 0;
}

int exec_round_trip(model *m, const char *cmd, const exec_var *vars, size_t nvars, mpu_err *e) {
  const char *tmp = getenv("TMPDIR");
  char dir[4096], model_dir[4200], out_dir[4200], config[4300];
  snprintf(dir, sizeof dir, "%s/mpu-exec-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir)) return mpu_fail(e, MPU_EUSAGE, "--exec: a temporary directory in %s: %s", tmp ? tmp : "/tmp", strerror(errno));
  cli_cleanup_register(dir); /* mkdtemp made it 0700: the copy is the client's alone */
  snprintf(model_dir, sizeof model_dir, "%s/model", dir);
  snprintf(out_dir, sizeof out_dir, "%s/output", dir);
  snprintf(config, sizeof config, "%s/config.json", model_dir);
  int rc = export_model(m, dir, model_dir, e);
  if (!rc && mkdir(out_dir, 0700)) rc = mpu_fail(e, MPU_EUSAGE, "%s: %s", out_dir, strerror(errno));
  if (!rc) rc = run_command(cmd, model_dir, out_dir, vars, nvars, e);
  if (!rc) rc = import_model(m, dir, out_dir, config, e);
  cli_remove_tree(dir);
  cli_cleanup_unregister(dir);
  return rc;
}
