"""torch_llama.py -- the PyTorch eager yardstick for bench/gpu/engine.sh.

A Llama model of the given config.json with random weights (transformers'
LlamaForCausalLM, eager attention), on the GPU, trained with torch.optim.AdamW
and clip_grad_norm_(1.0) as mpu's engine does: a train step over B rows of T
tokens, or an unlearn step over B forget + B retain rows (NPO's weights, one
forward and backward, as mpu unlearn batches them).  Prints one JSON object:
steady tokens/s (after warm-up steps) and torch's peak allocated memory.

  python3 torch_llama.py CONFIG MODE(train|unlearn) PRECISION(autocast|bf16|fp32) B T STEPS
"""
import json
import sys
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

cfg_path, mode, precision, B, T, steps = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
cfg = LlamaConfig(**json.load(open(cfg_path)))
cfg._attn_implementation = "eager"
torch.manual_seed(0)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dtype = torch.bfloat16 if precision == "bf16" else torch.float32
model = LlamaForCausalLM(cfg).to(device="cuda", dtype=dtype)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
rows = 2 * B if mode == "unlearn" else B
ids = torch.randint(0, cfg.vocab_size, (rows, T), device="cuda")
ref = torch.zeros(B, device="cuda")  # NPO's reference NLLs (their value does not change the cost)


def step():
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "autocast"):
        logits = model(input_ids=ids).logits
    lp = -F.cross_entropy(logits[:, :-1].float().reshape(-1, cfg.vocab_size), ids[:, 1:].reshape(-1),
                          reduction="none").view(rows, T - 1)
    if mode == "unlearn":
        nll_f = -lp[:B].sum(1)
        npo = -(2 / 0.1) * F.logsigmoid(-0.1 * (ref - nll_f)).mean()
        loss = npo + (-lp[B:]).mean()
    else:
        loss = (-lp).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


warm = 2
for _ in range(warm):
    step()
torch.cuda.synchronize()
t0 = time.perf_counter()
for _ in range(steps):
    step()
torch.cuda.synchronize()
dt = time.perf_counter() - t0
print(json.dumps({"mode": mode, "precision": precision, "B": B, "T": T, "steps": steps,
                  "tokens_per_s": rows * T * steps / dt,
                  "peak_allocated_gb": torch.cuda.max_memory_allocated() / 1e9,
                  "params": sum(p.numel() for p in model.parameters())}))
