#!/usr/bin/python3
"""torch_round.py -- the server side of an MPU round done the way the official
PyTorch code does it (github.com/Tristan0318/MPU, src/trainer/unlearn/pum.py
and src/trainer/pum_utils.py, commit 6ffb4c3b): the whole state dict in
memory, the m zero-sum noises drawn with torch.randn up front as m full noise
state dicts, one published copy built at a time by deep-copying the state
dict, adding its noise and applying T_k (RoPE-plane rotations of q/k/v/o, a
permutation of the FFN neurons); after the client, each copy's update
T_k^-1(theta_after - theta_pub) accumulated into the harmonic sum.

This is a baseline for bench/protocol/run.sh: it does the same amount of work
as `mpu perturb` / `mpu invert | mpu denoise`, not the same bytes (its own
seeds and torch's generator; see the report).  safetensors is read and
written by hand (the `safetensors` package is not installed).

  torch_round.py perturb --model M.safetensors --copies M --kappa K [--dtype keep|f32] -o OUT|-
      writes the M published copies to OUT, one safetensors image after
      another (standard output with -).
  torch_round.py post --model M.safetensors --copies M --kappa K --returned COPIES [--dtype keep|f32] -o OUT|-
      the server's Post-Process: regenerates every theta_pub from the model
      and the seeds (the server keeps only the model and its secrets, as mpu
      invert does), reads the returned copies (COPIES, as perturb wrote them)
      one whole state dict at a time, inverts T_k on the update, aggregates
      with weights 1/alpha_k and writes theta + Delta-bar.

--dtype keep (default, as the official code): noise and copies in the
model's dtype; f32: copies in float32 (what mpu writes by default).
Prints one JSON line of timings to standard error.
"""
import argparse
import copy
import hashlib
import json
import math
import os
import struct
import sys
import time
from collections import OrderedDict

import torch

DT = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
DT_NAME = {v: k for k, v in DT.items()}
T0 = time.time()
PHASES = OrderedDict()


def phase(name, t0):
    PHASES[name] = PHASES.get(name, 0.0) + time.time() - t0
    return time.time()


# ---------------------------------------------------------------- safetensors by hand
def read_safetensors(f):
    """Reads one safetensors image from the current position of f into memory
    (one bytearray; the tensors are views of it).  None at end of file."""
    head = f.read(8)
    if not head:
        return None
    (n,) = struct.unpack("<Q", head)
    hdr = json.loads(f.read(n))
    hdr.pop("__metadata__", None)
    size = max((v["data_offsets"][1] for v in hdr.values()), default=0)
    buf = bytearray(size)
    mv = memoryview(buf)
    got = 0
    while got < size:
        r = f.readinto(mv[got:])
        if not r:
            raise SystemExit("torch_round.py: truncated safetensors image")
        got += r
    sd = OrderedDict()
    for name, v in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = v["data_offsets"]
        dt = DT[v["dtype"]]
        t = torch.frombuffer(buf, dtype=dt, count=(b - a) // torch.tensor([], dtype=dt).element_size(), offset=a) if b > a else torch.empty(0, dtype=dt)
        sd[name] = t.view(v["shape"])
    return sd


def write_safetensors(out, sd):
    hdr, off = OrderedDict(), 0
    for name, t in sd.items():
        n = t.numel() * t.element_size()
        hdr[name] = {"dtype": DT_NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    out.write(struct.pack("<Q", len(h)))
    out.write(h)
    for t in sd.values():
        t = t.contiguous()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.view(torch.int16)
        out.write(memoryview(t.numpy()).cast("B"))


# ---------------------------------------------------------------- the official code's pieces (pum_utils.py)
def construct_seed64(master, *keys):
    payload = json.dumps([int(master)] + list(keys), separators=(",", ":"), ensure_ascii=False)
    return int(hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16], 16)


def layer_groups(sd):
    groups = OrderedDict()
    for k in sd:
        if k.startswith("model.layers."):
            parts = k.split(".")
            if len(parts) > 3:
                groups.setdefault("layer" + parts[2], []).append(k)
    return groups


@torch.no_grad()
def layerwise_sigma(sd, groups, kappa):
    sigma = {}
    for lk, names in groups.items():
        ss, n = 0.0, 0
        for name in names:
            v = sd[name].to(torch.float32)
            ss += (v * v).sum().item()
            n += v.numel()
        sigma[lk] = 0.0 if n == 0 else kappa * (ss / n) ** 0.5
    return sigma


@torch.no_grad()
def zero_sum_noises(sd, groups, sigmas, m, alphas, seed_round, dtype):
    """generate_zero_sum_noises: m full noise state dicts, drawn in fp32 on
    the CPU and cast to the copies' dtype."""
    noises = []
    for _ in range(m):
        noises.append(OrderedDict((name, torch.zeros(t.shape, dtype=dtype or t.dtype)) for name, t in sd.items()))
    scale = math.sqrt(m / (m - 1))
    for lk, names in groups.items():
        sigma = float(sigmas.get(lk, 0.0))
        if sigma == 0.0:
            continue
        for name in names:
            t = sd[name]
            zs = []
            for k in range(m):
                g = torch.Generator(device="cpu")
                g.manual_seed(construct_seed64(seed_round, "noise", lk, name, k))
                zs.append(torch.randn(t.shape, generator=g, dtype=torch.float32) * sigma)
            Z = torch.stack(zs, dim=0)
            eps0 = (Z - Z.mean(dim=0)) * scale
            for k in range(m):
                noises[k][name].add_(eps0[k].to(dtype=noises[k][name].dtype) * float(alphas[k]))
    return noises


def rope_angles(hkv, d_h, seed):
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    th = torch.rand(hkv, d_h // 2, generator=g, dtype=torch.float32) * (2 * math.pi)
    return torch.cos(th), torch.sin(th)


def ffn_perm(d_ff, seed):
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    perm = torch.randperm(d_ff, generator=g)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(d_ff)
    return perm, inv


def rot_rows(W, heads, d_h, c, s, inverse):
    """(x, y) = rows (p, p + d_h/2) of each head -> (c x + s y, c y - s x), or the inverse."""
    d_in = W.shape[1]
    half = d_h // 2
    X = W.reshape(heads, d_h, d_in)
    A, B = X[:, :half, :], X[:, half:, :]
    c, s = c.to(W.dtype).unsqueeze(-1), s.to(W.dtype).unsqueeze(-1)
    if not inverse:
        return torch.cat([c * A + s * B, -s * A + c * B], dim=1).reshape(heads * d_h, d_in)
    return torch.cat([c * A - s * B, s * A + c * B], dim=1).reshape(heads * d_h, d_in)


def rot_cols(W, heads, d_h, c, s, inverse):
    d_out = W.shape[0]
    half = d_h // 2
    X = W.reshape(d_out, heads, d_h).permute(1, 0, 2)
    A, B = X[:, :, :half], X[:, :, half:]
    c, s = c.to(W.dtype).unsqueeze(1), s.to(W.dtype).unsqueeze(1)
    if not inverse:
        Y = torch.cat([A * c + B * s, -A * s + B * c], dim=-1)
    else:
        Y = torch.cat([A * c - B * s, A * s + B * c], dim=-1)
    return Y.permute(1, 0, 2).reshape(d_out, heads * d_h)


@torch.no_grad()
def transform(sd, cfg, t_round, k, inverse):
    """T_k (apply_T_attention_weights / apply_T_ffn_weights, RoPE-aware) or its
    inverse on updates (inverse_T_on_update_*), in place on the dict sd."""
    hq, hkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    d_h = cfg.get("head_dim") or cfg["hidden_size"] // hq
    idx_q = torch.tensor([min(i * hkv // hq, hkv - 1) for i in range(hq)])
    for lid in range(cfg["num_hidden_layers"]):
        a = "model.layers.%d.self_attn." % lid
        c, s = rope_angles(hkv, d_h, construct_seed64(t_round, "T", k, lid))
        cq, sq = c.index_select(0, idx_q), s.index_select(0, idx_q)
        sd[a + "q_proj.weight"] = rot_rows(sd[a + "q_proj.weight"], hq, d_h, cq, sq, inverse)
        sd[a + "k_proj.weight"] = rot_rows(sd[a + "k_proj.weight"], hkv, d_h, c, s, inverse)
        sd[a + "v_proj.weight"] = rot_rows(sd[a + "v_proj.weight"], hkv, d_h, c, s, inverse)
        sd[a + "o_proj.weight"] = rot_cols(sd[a + "o_proj.weight"], hq, d_h, cq, sq, inverse)
        f = "model.layers.%d.mlp." % lid
        perm, inv = ffn_perm(sd[f + "gate_proj.weight"].shape[0], construct_seed64(t_round, "FFN-P", k, lid))
        p = inv if inverse else perm
        sd[f + "gate_proj.weight"] = sd[f + "gate_proj.weight"].index_select(0, p)
        sd[f + "up_proj.weight"] = sd[f + "up_proj.weight"].index_select(0, p)
        sd[f + "down_proj.weight"] = sd[f + "down_proj.weight"].index_select(1, p)


def published(theta, noise_k, dtype):
    """pub_sd = deepcopy(theta_prev); pub_sd[name].add_(noise_k[name])."""
    if dtype is None:
        pub = copy.deepcopy(theta)
        for name, t in pub.items():
            t.add_(noise_k[name])
    else:
        pub = OrderedDict((name, t.to(dtype) + noise_k[name]) for name, t in theta.items())
    return pub


# ---------------------------------------------------------------- commands
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["perturb", "post"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--config", required=True, help="the model's config.json")
    ap.add_argument("--copies", type=int, required=True)
    ap.add_argument("--kappa", type=float, required=True)
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--dtype", choices=["keep", "f32"], default="keep")
    ap.add_argument("--returned")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.config))
    m = a.copies
    alphas = [1.0 + k / (m - 1) for k in range(m)]          # PUM.alphas()
    s_r, t_r = 101000 + a.round, 202000 + a.round           # the official default seeds
    dtype = torch.float32 if a.dtype == "f32" else None
    out = sys.stdout.buffer if a.output == "-" else open(a.output, "wb")

    t = time.time()
    with open(a.model, "rb") as f:
        theta = read_safetensors(f)                          # the whole state dict
    t = phase("load", t)
    groups = layer_groups(theta)
    sig = layerwise_sigma(theta, groups, a.kappa)
    t = phase("sigma", t)
    noises = zero_sum_noises(theta, groups, sig, m, alphas, s_r, dtype)
    t = phase("noise", t)

    if a.cmd == "perturb":
        for k in range(1, m + 1):
            pub = published(theta, noises[k - 1], dtype)
            noises[k - 1] = None
            t = phase("add", t)
            transform(pub, cfg, t_r, k, inverse=False)
            t = phase("reparam", t)
            write_safetensors(out, pub)
            del pub
            t = phase("write", t)
    else:
        rf = open(a.returned, "rb")
        S0, S1 = 0.0, OrderedDict()
        for k in range(1, m + 1):
            pub = published(theta, noises[k - 1], dtype)     # theta_pub regenerated from the secrets
            noises[k - 1] = None
            transform(pub, cfg, t_r, k, inverse=False)
            t = phase("regenerate", t)
            after = read_safetensors(rf)                    # the returned copy, whole
            if after is None or list(after) != list(pub):
                raise SystemExit("torch_round.py: %s: copy %d missing or not this model's" % (a.returned, k))
            t = phase("read", t)
            delta = OrderedDict((name, after[name] - pub[name]) for name in pub)
            transform(delta, cfg, t_r, k, inverse=True)
            t = phase("invert", t)
            w = 1.0 / alphas[k - 1]
            S0 += w
            for name, d in delta.items():
                if name not in S1:
                    S1[name] = d.clone() * w
                else:
                    S1[name].add_(d, alpha=w)
            del after, delta, pub
            t = phase("aggregate", t)
        nxt = OrderedDict()
        for name, th in theta.items():
            nxt[name] = (th + (S1[name] / S0).to(th.dtype)).to(th.dtype)
        t = phase("aggregate", t)
        write_safetensors(out, nxt)
        t = phase("write", t)
    out.flush()
    if out is not sys.stdout.buffer:
        out.close()
    PHASES["total"] = time.time() - T0
    rec = {"cmd": a.cmd, "model": os.path.basename(a.model), "copies": m, "threads": a.threads, "dtype": a.dtype}
    rec.update((k, round(v, 3)) for k, v in PHASES.items())
    sys.stderr.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
