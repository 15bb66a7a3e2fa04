#!/usr/bin/python3
"""PyTorch baseline for bench/engine: the same Llama training step / scoring
forward that `mpu train` / `mpu score` run, in plain eager float32 torch.

The model is the plain-torch Llama of tests/fixtures/engine/make_fixtures.py
(imported, not copied: its `forward` mirrors transformers' modeling_llama with
eager attention, and `causal_lm_loss` is transformers' shifted mean CE).  Here
it runs in float32 on parameters drawn from N(0, initializer_range) (norm
weights 1), as `mpu init` makes them.

  torch_step.py train --config C --data D.jsonl --batch B --warmup W --steps K --threads N
      W+K optimizer steps over consecutive batches of D (no shuffling), AdamW
      (lr 1e-5, betas 0.9/0.999, eps 1e-8, weight decay 0) with
      clip_grad_norm_(1.0); the K steps after the W warm-up ones are timed.
  torch_step.py score --config C --data D.jsonl --batch B --warmup W --threads N
      no_grad forward + per-example summed NLL over the scored positions, one
      batch at a time, like `mpu score`; the batches after the first W are
      timed.

Prints one JSON object: seconds, tokens (B*T*K), tokens_per_s, the losses,
and the per-step times.  Run it with OMP_NUM_THREADS=N OPENBLAS_NUM_THREADS=N
as well: torch.set_num_threads does not reach Debian's OpenBLAS.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.dont_write_bytecode = True  # no __pycache__ in tests/fixtures
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "fixtures", "engine"))
import make_fixtures as mf  # noqa: E402


def load_data(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                o = json.loads(line)
                rows.append((o["input_ids"], int(o.get("prompt_len", 0))))
    T = len(rows[0][0])
    assert all(len(r[0]) == T for r in rows), "all sequences must have the same length"
    return rows, T


def load_config(path):
    """config.json, with the defaults the fixtures' Llama expects"""
    with open(path) as f:
        cfg = json.load(f)
    cfg.setdefault("rope_scaling", None)
    cfg.setdefault("tie_word_embeddings", False)
    return cfg


def make_params(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    std = float(cfg.get("initializer_range", 0.02))
    p = {}
    for name, shape in mf.param_shapes(cfg):
        if mf.is_norm(name):
            t = torch.ones(shape, dtype=torch.float32)
        else:
            t = torch.randn(shape, generator=g, dtype=torch.float32) * std
        p[name] = t.requires_grad_(True)
    return p


def batch_tensors(rows, first, B):
    sel = rows[first:first + B]
    ids = torch.tensor([r[0] for r in sel], dtype=torch.int64)
    labels = ids.clone()
    for i, (_, pl) in enumerate(sel):
        labels[i, :pl] = mf.IGNORE  # positions < prompt_len are not scored
    return ids, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "score"])
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="timed steps (train); default: all after warm-up")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--lr", type=float, default=1e-5)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    cfg = load_config(a.config)
    rows, T = load_data(a.data)
    B = a.batch
    nb = len(rows) // B
    p = make_params(cfg)
    nparams = sum(t.numel() for t in p.values())
    out = {"mode": a.mode, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "B": B, "T": T, "params": nparams, "warmup": a.warmup}

    if a.mode == "train":
        K = a.steps or nb - a.warmup
        assert a.warmup + K <= nb, "not enough data for warmup + steps"
        params = list(p.values())
        opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        losses, times = [], []
        t_start = None
        for s in range(a.warmup + K):
            if s == a.warmup:
                t_start = time.perf_counter()
            t0 = time.perf_counter()
            ids, labels = batch_tensors(rows, s * B, B)
            opt.zero_grad(set_to_none=True)
            loss = mf.causal_lm_loss(mf.forward(cfg, p, ids), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(loss.item())
            times.append(time.perf_counter() - t0)
        secs = time.perf_counter() - t_start
        out.update(steps=K, seconds=secs, tokens=B * T * K, tokens_per_s=B * T * K / secs,
                   losses=losses, step_seconds=times)
    else:
        K = nb - a.warmup
        assert K >= 1, "not enough data for warmup + 1 batch"
        times, nll_sums = [], []
        t_start = None
        with torch.no_grad():
            for s in range(nb):
                if s == a.warmup:
                    t_start = time.perf_counter()
                t0 = time.perf_counter()
                ids, labels = batch_tensors(rows, s * B, B)
                logits = mf.forward(cfg, p, ids)
                V = logits.shape[-1]
                nll = torch.nn.functional.cross_entropy(
                    logits[:, :-1, :].reshape(-1, V), labels[:, 1:].reshape(-1),
                    ignore_index=mf.IGNORE, reduction="none").view(ids.shape[0], T - 1)
                for row in nll.sum(1).tolist():
                    nll_sums.append(row)
                times.append(time.perf_counter() - t0)
        secs = time.perf_counter() - t_start
        out.update(steps=K, seconds=secs, tokens=B * T * K, tokens_per_s=B * T * K / secs,
                   step_seconds=times, mean_nll=sum(nll_sums) / len(nll_sums) / (T - 1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
