#!/usr/bin/env python3
"""Independent reference for the Rust GPT: the `tiny` preset written out in
PyTorch (float64), with its own random weights, writing inputs, weights,
logits, loss and every gradient to crates/core/tests/fixtures/gpt_tiny_reference.json.

Run by hand (not in CI), from the repository root:
    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch
    /tmp/torchenv/bin/python tools/reference.py

The model follows GPT-2: token + position embedding; pre-LayerNorm blocks
of causal multi-head attention and a tanh-GELU MLP; final LayerNorm; output
head tied to the token embedding; mean cross-entropy over all positions.
Matrices use torch.nn.Linear's (out, in) layout and GPT-2's names, as the
Rust parameter buffer does. No dropout (the reference is deterministic).
"""

import json
import math
import os

import torch
import torch.nn.functional as F

CONFIG = dict(vocab_size=37, n_ctx=16, n_layer=2, n_head=2, n_embd=16, n_inner=64, dropout=0.0)
BATCH, SEQ = 2, 8
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "core", "tests", "fixtures", "gpt_tiny_reference.json")


def param_shapes(cfg):
    """(name, shape) in the order of the Rust flat buffer."""
    c, inner = cfg["n_embd"], cfg["n_inner"]
    shapes = [("wte.weight", (cfg["vocab_size"], c)), ("wpe.weight", (cfg["n_ctx"], c))]
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        shapes += [
            (p + "ln_1.weight", (c,)),
            (p + "ln_1.bias", (c,)),
            (p + "attn.c_attn.weight", (3 * c, c)),
            (p + "attn.c_attn.bias", (3 * c,)),
            (p + "attn.c_proj.weight", (c, c)),
            (p + "attn.c_proj.bias", (c,)),
            (p + "ln_2.weight", (c,)),
            (p + "ln_2.bias", (c,)),
            (p + "mlp.c_fc.weight", (inner, c)),
            (p + "mlp.c_fc.bias", (inner,)),
            (p + "mlp.c_proj.weight", (c, inner)),
            (p + "mlp.c_proj.bias", (c,)),
        ]
    shapes += [("ln_f.weight", (c,)), ("ln_f.bias", (c,))]
    return shapes


def make_params(cfg, gen):
    """Random weights (std 0.2; LayerNorm gains 1 + 0.1 noise), drawn in
    float32 so the Rust side holds exactly the same numbers, then widened."""
    params = {}
    for name, shape in param_shapes(cfg):
        x = torch.randn(shape, generator=gen, dtype=torch.float32)
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            x = 1.0 + 0.1 * x
        else:
            x = 0.2 * x
        params[name] = x.to(torch.float64).requires_grad_(True)
    return params


def forward(cfg, p, idx):
    """idx (B, T) -> logits (B, T, V)."""
    b, t = idx.shape
    c, nh = cfg["n_embd"], cfg["n_head"]
    hs = c // nh
    x = p["wte.weight"][idx] + p["wpe.weight"][torch.arange(t)]
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for i in range(cfg["n_layer"]):
        h = f"h.{i}."
        a = F.layer_norm(x, (c,), p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps=1e-5)
        qkv = F.linear(a, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"])
        q, k, v = qkv.split(c, dim=2)
        q, k, v = (z.view(b, t, nh, hs).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        x = x + F.linear(y, p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"])
        m = F.layer_norm(x, (c,), p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps=1e-5)
        m = F.gelu(F.linear(m, p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"]), approximate="tanh")
        x = x + F.linear(m, p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"])
    x = F.layer_norm(x, (c,), p["ln_f.weight"], p["ln_f.bias"], eps=1e-5)
    return x @ p["wte.weight"].T


def main():
    gen = torch.Generator().manual_seed(2024)
    cfg = CONFIG
    params = make_params(cfg, gen)
    inputs = torch.randint(0, cfg["vocab_size"], (BATCH, SEQ), generator=gen)
    targets = torch.randint(0, cfg["vocab_size"], (BATCH, SEQ), generator=gen)
    logits = forward(cfg, params, inputs)
    loss = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1))
    loss.backward()

    def flat(t):
        # float32 values written with enough digits to round-trip.
        return [float(f"{v:.9g}") for v in t.detach().reshape(-1).tolist()]

    fixture = {
        "about": "tools/reference.py: GPT-2 tiny preset in PyTorch float64; loss is the mean "
        "cross-entropy over batch*seq tokens; grads are d(loss)/d(param)",
        "torch_version": torch.__version__,
        "config": cfg,
        "batch": BATCH,
        "seq": SEQ,
        "inputs": inputs.reshape(-1).tolist(),
        "targets": targets.reshape(-1).tolist(),
        "params": {n: flat(params[n].to(torch.float32)) for n, _ in param_shapes(cfg)},
        "logits": flat(logits),
        "loss": loss.item(),
        "grads": {n: flat(params[n].grad) for n, _ in param_shapes(cfg)},
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    print(f"wrote {os.path.normpath(OUT)}: loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
