#!/usr/bin/env python3
"""PyTorch baseline for `cllm bench`: the same GPT and the same optimizer
step (forward, backward, gradient clipping, AdamW) timed on this CPU, so the
ratio between the two is measured in one session on one machine.

Not part of the test command. Run by hand from the repository root:
    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch
    /tmp/tv/bin/python tools/torch_bench.py --preset seed --threads 1,2
    ./target/release/cllm bench --preset seed --threads 1,2 --no-profile

The model is GPT-2's shape as in tools/reference.py: token + position
embedding, pre-LayerNorm blocks (causal attention through
scaled_dot_product_attention, tanh-GELU MLP), final LayerNorm, output head
tied to the token embedding, mean cross-entropy, dropout as in the preset.
`--precision bf16` runs the step under CPU autocast (bf16 matmuls, fp32
master weights), PyTorch's counterpart of `cllm bench --precision bf16`.
`--compile` adds torch.compile. Prints one line per thread count and, with
--json, one JSON object per line.
"""

import argparse
import contextlib
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# The presets of crates/core/src/config.rs (vocabulary as `cllm bench` uses it;
# `tiny` only for trying tools/benchmarks.py --quick).
PRESETS = {
    "tiny": dict(vocab=37, ctx=16, layers=2, heads=2, embd=16, inner=64, dropout=0.0),
    "small": dict(vocab=2048, ctx=128, layers=4, heads=4, embd=128, inner=512, dropout=0.0),
    "medium": dict(vocab=2048, ctx=128, layers=6, heads=6, embd=192, inner=768, dropout=0.0),
    "seed": dict(vocab=50_000, ctx=512, layers=6, heads=8, embd=256, inner=1024, dropout=0.1),
}


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["embd"]
        self.heads, self.p = cfg["heads"], cfg["dropout"]
        self.ln_1 = nn.LayerNorm(c)
        self.c_attn = nn.Linear(c, 3 * c)
        self.attn_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, cfg["inner"])
        self.mlp_proj = nn.Linear(cfg["inner"], c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.p if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(b, t, c)
        x = x + F.dropout(self.attn_proj(y), self.p, self.training)
        m = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + F.dropout(self.mlp_proj(m), self.p, self.training)


class Gpt(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.p = cfg["dropout"]
        self.wte = nn.Embedding(cfg["vocab"], cfg["embd"])
        self.wpe = nn.Embedding(cfg["ctx"], cfg["embd"])
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg["layers"]))
        self.ln_f = nn.LayerNorm(cfg["embd"])

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = F.dropout(self.wte(idx) + self.wpe(torch.arange(t)), self.p, self.training)
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def measure(cfg, args, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Gpt(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, foreach=True)
    step_fn = model
    if args.compile:
        step_fn = torch.compile(model)
    idx = torch.randint(0, cfg["vocab"], (args.batch, args.seq))
    tgt = torch.randint(0, cfg["vocab"], (args.batch, args.seq))
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if args.precision == "bf16"
        else contextlib.nullcontext()
    )

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = step_fn(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    best = math.inf
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return args.batch * args.seq / best, best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="seed", choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (the best is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cfg = PRESETS[args.preset]
    mode = ("torch.compile" if args.compile else "eager") + f" {args.precision}"
    print(
        f"PyTorch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
        f"{args.preset} preset, {args.batch} x {args.seq} tokens, {mode}, best of {args.steps} steps"
    )
    for threads in [int(t) for t in args.threads.split(",")]:
        tok_s, secs = measure(cfg, args, threads)
        if args.json:
            print(json.dumps(dict(
                torch=torch.__version__, preset=args.preset, mode=mode, threads=threads,
                tokens_per_s=round(tok_s, 1), step_s=round(secs, 5),
            )))
        else:
            print(f"  threads {threads}: {tok_s:8.0f} tokens/s, step {secs * 1000:.1f} ms")


if __name__ == "__main__":
    main()
