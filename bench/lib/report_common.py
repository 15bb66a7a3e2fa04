#!/usr/bin/env python3
"""Helpers shared by the benchmarks' report.py (imported) and run.sh (as a
command, `$RC` in bench/lib/common.sh):

  report_common.py field FILE KEY       KEY (a dotted path, list indices as
                                        numbers: losses.0) of the first JSON
                                        object in FILE
  report_common.py lastfield FILE KEY   the same of the last JSON object in FILE
  report_common.py mpulog LOG W K       steady-state tokens/s of an mpu --log
                                        file: tokens of steps W+1..W+K over
                                        their time

A report.py imports it with

  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
  import report_common as rc
"""

import argparse
import collections
import hashlib
import json
import os
import re
import statistics
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the benchmarks


def die(msg):
    sys.stderr.write("report.py: %s\n" % msg)
    sys.exit(1)


# --------------------------------------------------------------------------
# run files: JSON lines, mpu's --log
# --------------------------------------------------------------------------

def json_objects(path):
    """Every line of FILE that is a JSON object, parsed."""
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip().startswith("{")]


def get_path(o, key):
    for k in key.split("."):
        o = o[int(k)] if isinstance(o, list) else o[k]
    return o


def field(path, key, last=False):
    rows = json_objects(path)
    if not rows:
        die("%s: no JSON object" % path)
    return get_path(rows[-1] if last else rows[0], key)


def mpulog_rate(path, w, k):
    """Steady-state tokens/s of steps W+1..W+K of an `mpu train|unlearn --log`
    file.  The log's tokens_per_s is cumulative since the training loop
    started (model loading excluded): tokens_so_far / elapsed.  So elapsed at
    step s is cum_tokens(s) / tokens_per_s(s), and the rate of steps W+1..W+K
    is the difference of cumulative tokens over the difference of elapsed
    times."""
    w, k = int(w), int(k)
    rows = json_objects(path)
    if len(rows) < w + k:
        die("%s: %d steps logged, need %d" % (path, len(rows), w + k))
    cum, t = [0], [0.0]
    for r in rows:
        cum.append(cum[-1] + r["tokens"])
        t.append(cum[-1] / r["tokens_per_s"])
    dt = t[w + k] - t[w]
    if dt <= 0:
        die("%s: no time between steps %d and %d" % (path, w, w + k))
    return (cum[w + k] - cum[w]) / dt


def na_float(x):
    return None if x in ("NA", "None", "") else float(x)


def read_runs(path, head, tail=()):
    """The rows bench/lib/common.sh `record` wrote: the HEAD fields, then
    wall, user, sys, rss (maxrss_kb), then the TAIL fields; HEAD and TAIL are
    (name, converter) pairs.  A list of dicts."""
    cols = list(head) + [("wall", float), ("user", float), ("sys", float), ("rss", int)] + list(tail)
    out = []
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        out.append({name: conv(v) for (name, conv), v in zip(cols, f)})
    return out


def select(runs, **want):
    """the runs with those field values, by repetition"""
    return sorted((r for r in runs if all(r[k] == v for k, v in want.items())), key=lambda r: r["rep"])


def blocks_of(runs, keys):
    """the distinct tuples of those fields, in the order they first appear"""
    out = []
    for r in runs:
        k = tuple(r[x] for x in keys)
        if k not in out:
            out.append(k)
    return out


def workload(spec):
    """'name config B T W K' (a run.sh workload array) as a dict"""
    s = spec.split()
    return dict(name=s[0], cfg=s[1], B=int(s[2]), T=int(s[3]), W=int(s[4]), K=int(s[5]))


def loop_seconds(path):
    """Seconds the training loop of an mpu --log file took, from its last line."""
    rows = json_objects(path)
    return sum(r["tokens"] for r in rows) / rows[-1]["tokens_per_s"]


# --------------------------------------------------------------------------
# what run.sh left: facts, commands
# --------------------------------------------------------------------------

def read_facts(path, multi=False):
    """facts.tsv (key<TAB>value) as an ordered dict; with multi, every key's
    values in a list (a key may be written more than once)."""
    facts = collections.OrderedDict()
    for line in open(path):
        k, _, v = line.rstrip("\n").partition("\t")
        if multi:
            facts.setdefault(k, []).append(v)
        else:
            facts[k] = v
    return facts


def read_commands(path):
    out = []
    for line in open(path):
        k, _, v = line.rstrip("\n").partition("\t")
        out.append((k, v))
    return out


# --------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------

def med(xs):
    return statistics.median(list(xs))


def fmt(x, nd=1):
    if x is None:
        return "–"
    if abs(x) >= 100:
        return "%.0f" % x
    return ("%%.%df" % nd) % x


def mb(kb):
    return kb / 1024.0


def span(xs, f="%.2f"):
    """'median (min–max)'"""
    xs = list(xs)
    return (f + " (" + f + "–" + f + ")") % (med(xs), min(xs), max(xs))


def word(r):
    """how a speed ratio reads in words"""
    if r >= 1.1:
        return "faster than"
    if r >= 0.9:
        return "about as fast as"
    if r >= 0.6:
        return "slower than"
    return "much slower than"


def goal_verdict(s, goal=1.0):
    """whether a paired_runs summary meets 'mpu >= goal x PyTorch', in words"""
    if s["ratio"] >= goal:
        return "met" if s["rmin"] >= goal else "met by the median (not in every repetition)"
    return "not met" if s["rmax"] < goal else "not met by the median (met in some repetitions)"


def goal_summary(w, S, keys, name, goal=1.0):
    """One bold line: in how many of the summaries S[k] mpu reaches GOAL x PyTorch."""
    met = [k for k in keys if S[k]["ratio"] >= goal]
    every = [k for k in keys if S[k]["rmin"] >= goal]
    w("**Goal: %s at least %gx PyTorch eager's tokens/s — %s** (median per-repetition ratio >= %g in %d of %d "
      "configurations, and in every repetition in %d of them; lowest median %.2fx, highest %.2fx)." % (
          name, goal, "met everywhere by the median" if len(met) == len(keys) else "not met anywhere" if not met else "met only in part",
          goal, len(met), len(keys), len(every), min(S[k]["ratio"] for k in keys), max(S[k]["ratio"] for k in keys)))
    w("")


def paired_runs(base_rows, test_rows):
    """Per-repetition pairs of two lists of run dicts with a "rep" and a "tps"
    (tokens/s): the summary of test over base that the engine and unlearn
    reports tabulate."""
    tt = {x["rep"]: x for x in base_rows}
    mm = {x["rep"]: x for x in test_rows}
    reps = sorted(set(tt) & set(mm))
    if not reps:
        return None
    ratios = [mm[r]["tps"] / tt[r]["tps"] for r in reps]
    return dict(torch_tps=med(x["tps"] for x in base_rows), mpu_tps=med(x["tps"] for x in test_rows),
                ratio=med(ratios), rmin=min(ratios), rmax=max(ratios), reps=len(reps),
                torch_rss=max(x["rss"] for x in base_rows), mpu_rss=max(x["rss"] for x in test_rows),
                torch_wall=med(x["wall"] for x in base_rows), mpu_wall=med(x["wall"] for x in test_rows),
                torch_cpu=med((x["user"] + x["sys"]) / x["wall"] for x in base_rows),
                mpu_cpu=med((x["user"] + x["sys"]) / x["wall"] for x in test_rows),
                ratios=ratios, rep_ids=reps, tt=tt, mm=mm)


def throughput_cells(s, imp_kb):
    """The common cells of an engine / unlearn result row: tokens/s, the
    ratio, peak memory, CPUs busy."""
    return "%s | %s | **%.2f** (%.2f–%.2f) | %.0f MB | %.0f MB | %.0f MB | %.2f | %.2f / %.2f" % (
        fmt(s["torch_tps"]), fmt(s["mpu_tps"]), s["ratio"], s["rmin"], s["rmax"],
        mb(s["torch_rss"]), mb(s["torch_rss"] - imp_kb), mb(s["mpu_rss"]),
        s["mpu_rss"] / max(1, s["torch_rss"] - imp_kb), s["torch_cpu"], s["mpu_cpu"])


THROUGHPUT_HEAD = ("PyTorch tokens/s | mpu tokens/s | **mpu / PyTorch** (min–max) | peak RSS PyTorch | (torch − import) "
                   "| peak RSS mpu | RSS mpu / (torch − import) | CPUs busy torch / mpu")


# --------------------------------------------------------------------------
# markdown pieces
# --------------------------------------------------------------------------

def machine_table(w, facts, labels):
    """The Machine section: (fact key, label) rows for the facts present."""
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    for k, lab in labels:
        if k in facts:
            v = facts[k]
            v = v[-1] if isinstance(v, list) else v
            w("| %s | %s |" % (lab, (v if v != "" else "(nothing)").replace("|", "\\|")))
    w("")


# the Machine rows machine_facts (bench/lib/common.sh) and the load figures give every benchmark
MACHINE_HEAD = [("date", "date"), ("nproc", "nproc"), ("cpu", "CPU model"), ("cpu_flags", "CPU vector extensions"),
                ("mem", "memory"), ("mem_available", "memory available at the start"), ("kernel", "kernel"),
                ("mpu", "mpu"), ("git", "commit"), ("git_dirty", "working tree differs from the commit in"),
                ("bin_mtime", "programs built")]
BUILD_ROWS = [("cc", "C compiler"), ("cflags", "mpu's compile flags (Makefile)"), ("torch", "PyTorch"),
              ("python", "python (for torch)"), ("openblas", "BLAS libraries")]
LOAD_ROWS = [("lock_wait_s", "waited for other benchmarks (the lock), s"),
             ("load_start", "load before (other processes)"),
             ("other_cpu", "CPU used by other processes during the measurements"),
             ("load_end", "load after")]


def peak_memory_note(imp_kb):
    return ("* *Peak memory* is GNU time's maximum resident set size (`/usr/bin/time -f %%M`) of the whole process, the largest "
            "over the repetitions. For PyTorch it includes the interpreter and the torch/numpy libraries: importing them alone "
            "takes %.0f MB (measured here), shown as \"torch − import\"." % mb(imp_kb))


def quick_note(facts):
    q = facts.get("quick", "0")
    q = q[-1] if isinstance(q, list) else q
    return " — **QUICK=1: a smoke test of the script on tiny workloads, not a measurement**" if q == "1" else ""


def commands_block(w, cmds, intro, dedup=None):
    """The Commands section; dedup(label) -> key keeps the first command of each key."""
    w("## Commands")
    w("")
    w(intro)
    w("")
    w("```")
    seen = set()
    for k, v in cmds:
        if dedup:
            key = dedup(k)
            if key in seen:
                continue
            seen.add(key)
        w("# %s" % k)
        w(v)
    w("```")
    w("")


def sha1(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def analysis_section(w, root, analysed, text):
    """A hand-written analysis, with a note when the sources it was written
    against ({path: sha1}) have changed since."""
    stale = [rel for rel, h in analysed.items()
             if h and os.path.exists(os.path.join(root, rel)) and sha1(os.path.join(root, rel)) != h]
    w("## Analysis")
    w("")
    if stale:
        w("> **Note:** the hand-written analysis below was written against an earlier version of %s; the numbers above "
          "are current, the explanation may not be." % ", ".join("`%s`" % s for s in stale))
        w("")
    w(text)
    w("")


# --------------------------------------------------------------------------
# perf (bench/lib/common.sh perf_profile)
# --------------------------------------------------------------------------

# functions that run outside the timed loop (loading, saving, freeing), or only
# in training: no "% of the loop" for them
OUTSIDE_LOOP = {"model_load", "model_load_copies", "model_take", "model_setup", "to_f32", "from_f32", "model_save",
                "model_free", "optim_free", "optim_init", "model_copy", "rope_frequencies", "asm_exc_page_fault"}
C_KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof"}
ENGINE_SOURCES = ("lib/ops.c", "lib/model.c", "lib/optim.c", "lib/train.c")


def lib_functions(root, files=ENGINE_SOURCES):
    """{function name: file} for the functions defined in those C files."""
    out = {}
    for rel in files:
        p = os.path.join(root, rel)
        if not os.path.exists(p):
            continue
        for line in open(p, errors="replace"):
            m = re.match(r"^[A-Za-z_][\w \*]*?\b([a-z_][a-z_0-9]*)\(", line)
            if m and not line.rstrip().endswith(";") and m.group(1) not in C_KEYWORDS:
                out.setdefault(m.group(1), rel)
    return out


def parse_children(path):
    """perf report --children --sort symbol: {symbol: (children %, self %, kind)}"""
    out = {}
    if not os.path.exists(path):
        return out
    for line in open(path, errors="replace"):
        m = re.match(r"^\s+([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(\S+)", line)
        if m and m.group(4) not in out:
            out[m.group(4)] = (float(m.group(1)), float(m.group(2)), m.group(3))
    return out


def parse_self(path, n=12):
    """perf report --no-children --sort dso,symbol: [(self %, dso, symbol)]"""
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path, errors="replace"):
        m = re.match(r"^\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
        if m:
            out.append((float(m.group(1)), m.group(2), m.group(4)))
    return out[:n] if n else out


def parse_srcline(path, root, n=8):
    """perf report --sort symbol,srcline: [(%, symbol, file:line, the line's text)]"""
    out = []
    if not os.path.exists(path):
        return out
    cache = {}
    for line in open(path, errors="replace"):
        m = re.match(r"^\s+([\d.]+)%\s+\[(.)\]\s+(\S+)\s+(\S+):(\d+)\s", line)
        if not m or m.group(4) == "??":
            continue
        fn, lno = m.group(4), int(m.group(5))
        src = ""
        for d in ("lib", "format", "bin"):
            p = os.path.join(root, d, fn)
            if os.path.exists(p):
                if p not in cache:
                    cache[p] = open(p, errors="replace").read().split("\n")
                lines = cache[p]
                src = lines[lno - 1].strip() if 0 < lno <= len(lines) else ""
                fn = "%s/%s" % (d, fn)
                break
        out.append((float(m.group(1)), m.group(3), "%s:%d" % (fn, lno), src))
        if len(out) >= n:
            break
    return out


def parse_annotate(path, n=10):
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path, errors="replace"):
        m = re.match(r"^\s+([\d.]+)\s+:\s+([0-9a-f]+):\s+(.*)$", line)
        if m and float(m.group(1)) > 0:
            out.append((float(m.group(1)), m.group(3).strip()))
    out.sort(key=lambda x: -x[0])
    return out[:n]


def hot_self(pdir, name, n=8):
    """'`sym` (dso) p%; ...' of a profile's hottest functions by own time"""
    return "; ".join("`%s` (%s) %.1f%%" % (s, d, p) for p, d, s in parse_self(os.path.join(pdir, name + ".self"), n))


def hot_lines(pdir, name, src_root, n=6, indent=""):
    """markdown bullets of a profile's hottest source lines"""
    return ["%s* %.1f%% `%s` in `%s`: `%s`" % (indent, p, where, sym, src.replace("`", "'"))
            for p, sym, where, src in parse_srcline(os.path.join(pdir, name + ".srcline"), src_root, n)]


def hot_instructions(pdir, name):
    """[(function, '% `ins`; ...')] of the two busiest OpenMP regions of a profile"""
    out = []
    for i in (1, 2):
        tf = os.path.join(pdir, "%s.topfn%d" % (name, i))
        ann = parse_annotate(os.path.join(pdir, "%s.annotate%d" % (name, i)), 8)
        if os.path.exists(tf) and ann:
            out.append((open(tf).read().strip(), "; ".join("%.1f%% `%s`" % (p, ins.replace("`", "'")) for p, ins in ann)))
    return out


HOT_INSTRUCTIONS_INTRO = ("Hottest instructions of the two busiest parallel regions of mpu's own code (`_omp_fn` = the body "
                          "of an `omp parallel for`), in % of that function's samples:")


def write_parser():
    """The arguments every `report.py write` takes; a benchmark adds its own."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--facts", required=True)
    ap.add_argument("--commands", required=True)
    ap.add_argument("--prof")
    ap.add_argument("--root", required=True)
    return ap


def main():
    if len(sys.argv) < 2:
        die("usage: see the docstring of bench/lib/report_common.py")
    c, args = sys.argv[1], sys.argv[2:]
    if c == "field" and len(args) == 2:
        print(field(args[0], args[1]))
    elif c == "lastfield" and len(args) == 2:
        print(field(args[0], args[1], last=True))
    elif c == "mpulog" and len(args) == 3:
        print("%.3f" % mpulog_rate(*args))
    else:
        die("unknown command or wrong arguments: %s" % " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
