#!/usr/bin/python3
"""PyTorch baseline for bench/unlearn: the unlearning step that
`mpu unlearn --algo npo|graddiff` runs, in plain eager float32 torch.

  torch_unlearn.py --algo npo|graddiff --config C --weights W.safetensors
                   --forget F.jsonl --retain R.jsonl --batch B --warmup W
                   --steps K --threads N [--lr 1e-5] [--weight-decay 0.01]

One optimizer step = one micro-batch (grad_accum 1): the B forget rows
s*B..s*B+B-1 and the retain rows with the same indices (mpu's
`--pairing cycle --no-shuffle`) go through ONE forward/backward as a batch of
2B rows, as in mpu; then clip_grad_norm_(1.0) and AdamW (betas 0.9/0.999,
eps 1e-8, decoupled weight decay on every weight but the norms, as the HF
Trainer and mpu do; constant learning rate).  The K steps after the W warm-up
ones are timed (time.perf_counter).

The losses are those of tests/fixtures/unlearn/make_fixtures.py (imported, not
copied), OpenUnlearning's definitions:
  graddiff  L = -CE_mean(forget) + CE_mean(retain)
  npo       L = -(2/beta) mean_i log sigmoid(-beta r_i) + CE_mean(retain),
            r_i = NLL_ref,i - NLL_theta,i (per-row summed NLL), beta 0.1
npo's reference NLLs come from the model itself before training (mpu's
reference is the copy as it came), computed once up front in no_grad batches of
B forget rows; that pass is timed separately (ref_seconds), not in the steps.

The model is the plain-torch Llama of tests/fixtures/engine/make_fixtures.py
(via bench/engine/torch_step.py), on the weights of --weights (the model mpu
runs, exported with `mpu export`), read tensor by tensor straight into torch
tensors so that the file costs no extra resident memory.  Without --weights
the weights are drawn as bench/engine does.

Prints one JSON object: seconds, tokens (2B*T*K: forget + retain rows, every
row exactly T tokens), tokens_per_s, per-step losses (total, forget, retain)
and times, ref_seconds.  Run it with OMP_NUM_THREADS=N OPENBLAS_NUM_THREADS=N
as well: torch.set_num_threads does not reach Debian's OpenBLAS.
"""

import argparse
import importlib.util
import json
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ in bench/engine or tests/fixtures

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "bench", "engine"))
import torch_step as ts  # noqa: E402  (bench/engine's baseline: data, weights)

mf = ts.mf  # tests/fixtures/engine/make_fixtures.py: the plain-torch Llama


def _load_unlearn_fixtures():
    # also a make_fixtures.py: load it under its own name
    spec = importlib.util.spec_from_file_location(
        "unlearn_fixtures", os.path.join(ROOT, "tests", "fixtures", "unlearn", "make_fixtures.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


uf = _load_unlearn_fixtures()  # the reference losses: ce_mean, row_nll


def read_weights(path, cfg):
    """F32 safetensors -> {name: tensor}, each tensor read straight from the
    file into its own storage (no copy of the whole file in memory)."""
    p = {}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
        base = 8 + n
        for name, shape in mf.param_shapes(cfg):
            info = header[name]
            assert info["dtype"] == "F32" and list(info["shape"]) == list(shape), name
            b, e = info["data_offsets"]
            t = torch.empty(shape, dtype=torch.float32)
            f.seek(base + b)
            mv = memoryview(t.numpy()).cast("B")
            assert len(mv) == e - b, name
            assert f.readinto(mv) == e - b, name
            p[name] = t.requires_grad_(True)
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--algo", choices=["npo", "graddiff"], required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--weights")
    ap.add_argument("--forget", required=True)
    ap.add_argument("--retain", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--beta", type=float, default=0.1)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    cfg = ts.load_config(a.config)
    forget, T = ts.load_data(a.forget)
    retain, Tr = ts.load_data(a.retain)
    assert T == Tr, "forget and retain rows must have the same length"
    B, W, K = a.batch, a.warmup, a.steps
    assert len(forget) >= B * (W + K) and len(retain) >= B * (W + K), "not enough rows for warmup + steps"
    p = read_weights(a.weights, cfg) if a.weights else ts.make_params(cfg)
    params = list(p.values())
    gamma, alpha, beta = 1.0, 1.0, a.beta

    ref_seconds = None
    ref = None
    if a.algo == "npo":
        # the reference: per-row summed NLL of every forget row, the model as it came
        t0 = time.perf_counter()
        out = []
        with torch.no_grad():
            for first in range(0, len(forget), B):
                ids, labels = ts.batch_tensors(forget, first, B)
                out.append(uf.row_nll(mf.forward(cfg, p, ids), labels))
        ref = torch.cat(out)
        ref_seconds = time.perf_counter() - t0

    decay = [t for n, t in p.items() if not (n.endswith(".bias") or mf.is_norm(n))]
    no_decay = [t for n, t in p.items() if n.endswith(".bias") or mf.is_norm(n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    losses, lf_s, lr_s, times = [], [], [], []
    t_start = None
    for s in range(W + K):
        if s == W:
            t_start = time.perf_counter()
        t0 = time.perf_counter()
        fi, fl = ts.batch_tensors(forget, s * B, B)
        ri, rl = ts.batch_tensors(retain, s * B, B)
        opt.zero_grad(set_to_none=True)
        logits = mf.forward(cfg, p, torch.cat([fi, ri]))     # one pass over 2B rows
        zf, zr = logits[:B], logits[B:]
        l_r = uf.ce_mean(zr, rl)
        if a.algo == "graddiff":
            l_f = -uf.ce_mean(zf, fl)
        else:
            r = -(uf.row_nll(zf, fl) - ref[s * B:s * B + B])     # lose_log_ratio
            l_f = -2.0 / beta * F.logsigmoid(beta * (0.0 - r)).mean()
        loss = gamma * l_f + alpha * l_r
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        lf_s.append(l_f.item())
        lr_s.append(l_r.item())
        times.append(time.perf_counter() - t0)
    secs = time.perf_counter() - t_start
    print(json.dumps({"algo": a.algo, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "B": B, "T": T, "rows_per_step": 2 * B, "params": sum(t.numel() for t in params),
                      "warmup": W, "steps": K, "seconds": secs, "tokens": 2 * B * T * K,
                      "tokens_per_s": 2 * B * T * K / secs, "ref_seconds": ref_seconds,
                      "ref_rows": len(forget) if ref is not None else 0,
                      "losses": losses, "forget_losses": lf_s, "retain_losses": lr_s, "step_seconds": times}))


if __name__ == "__main__":
    main()
