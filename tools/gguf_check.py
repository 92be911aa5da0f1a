#!/usr/bin/env python3
"""Reads a `cllm export --format gguf` file with the `gguf` package from PyPI
(llama.cpp's own reader) and checks it: the gpt2 keys llama.cpp's loader
needs, every tensor llama.cpp's GPT-2 graph uses with the shape the keys
imply, the tokenizer arrays; with --hf DIR (a `cllm export --format hf`
folder of the same checkpoint) also every tensor's values against the
safetensors file, read with numpy alone.

    python3 -m venv /tmp/gguf_venv && /tmp/gguf_venv/bin/pip install gguf
    target/release/cllm export --model M.cllm --format gguf --output /tmp/m.gguf
    target/release/cllm export --model M.cllm --format hf --output /tmp/m-hf
    /tmp/gguf_venv/bin/python tools/gguf_check.py /tmp/m.gguf --hf /tmp/m-hf

Exits 1 on the first mismatch, naming it.
"""

import argparse
import json
import struct
import sys

import numpy as np
from gguf import GGUFReader


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def field_value(reader, key):
    f = reader.fields.get(key)
    if f is None:
        fail(f"missing key {key}")
    if len(f.data) == 1 and f.types and f.types[0].name != "ARRAY":
        part = f.parts[f.data[0]]
        if f.types[0].name == "STRING":
            return bytes(part).decode()
        return part.tolist()[0]
    if f.types[-1].name == "STRING":
        return [bytes(f.parts[i]).decode() for i in f.data]
    return [f.parts[i].tolist()[0] for i in f.data]


def read_safetensors(path):
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        data = fh.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=np.float32).reshape(info["shape"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--hf", help="a `cllm export --format hf` folder of the same model")
    args = ap.parse_args()
    r = GGUFReader(args.gguf)
    arch = field_value(r, "general.architecture")
    if arch != "gpt2":
        fail(f"architecture {arch}")
    n_ctx = field_value(r, "gpt2.context_length")
    n_embd = field_value(r, "gpt2.embedding_length")
    n_layer = field_value(r, "gpt2.block_count")
    n_ff = field_value(r, "gpt2.feed_forward_length")
    n_head = field_value(r, "gpt2.attention.head_count")
    eps = field_value(r, "gpt2.attention.layer_norm_epsilon")
    if field_value(r, "tokenizer.ggml.model") != "gpt2":
        fail("tokenizer.ggml.model is not gpt2")
    tokens = field_value(r, "tokenizer.ggml.tokens")
    types = field_value(r, "tokenizer.ggml.token_type")
    merges = field_value(r, "tokenizer.ggml.merges") if "tokenizer.ggml.merges" in r.fields else []
    n_vocab = len(tokens)
    if len(types) != n_vocab:
        fail("token types and tokens differ in length")
    print(f"gpt2: context {n_ctx}, width {n_embd}, {n_layer} layers, {n_head} heads, "
          f"MLP {n_ff}, eps {eps:g}, {n_vocab} tokens, {len(merges)} merges, "
          f"file type {field_value(r, 'general.file_type')}")

    want = {
        "token_embd.weight": (n_vocab, n_embd),
        "position_embd.weight": (n_ctx, n_embd),
        "output_norm.weight": (n_embd,),
        "output_norm.bias": (n_embd,),
    }
    for l in range(n_layer):
        p = f"blk.{l}."
        want.update({
            p + "attn_norm.weight": (n_embd,), p + "attn_norm.bias": (n_embd,),
            p + "attn_qkv.weight": (3 * n_embd, n_embd), p + "attn_qkv.bias": (3 * n_embd,),
            p + "attn_output.weight": (n_embd, n_embd), p + "attn_output.bias": (n_embd,),
            p + "ffn_norm.weight": (n_embd,), p + "ffn_norm.bias": (n_embd,),
            p + "ffn_up.weight": (n_ff, n_embd), p + "ffn_up.bias": (n_ff,),
            p + "ffn_down.weight": (n_embd, n_ff), p + "ffn_down.bias": (n_embd,),
        })
    got = {t.name: t for t in r.tensors}
    if set(got) != set(want):
        fail(f"tensor names differ: missing {sorted(set(want) - set(got))}, "
             f"extra {sorted(set(got) - set(want))}")
    for name, shape in want.items():
        t = got[name]
        # GGUF lists dimensions fastest first.
        if tuple(int(d) for d in reversed(t.shape)) != shape:
            fail(f"{name}: shape {list(reversed(t.shape))}, expected {shape}")
    print(f"{len(want)} tensors, names and shapes as llama.cpp's GPT-2 loader expects")

    if args.hf:
        hf = read_safetensors(f"{args.hf}/model.safetensors")
        conv = ("c_attn.weight", "c_proj.weight", "c_fc.weight")
        back = {"token_embd.weight": "wte.weight", "position_embd.weight": "wpe.weight",
                "output_norm.weight": "ln_f.weight", "output_norm.bias": "ln_f.bias"}
        parts = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
                 "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
        worst = 0.0
        for name, t in got.items():
            if name in back:
                hname = back[name]
            else:
                _, l, part, kind = name.split(".")
                hname = f"h.{l}.{parts[part]}.{kind}"
            ref = hf["transformer." + hname]
            if hname.endswith(conv):
                ref = ref.T  # HF Conv1D (in, out) -> (out, in)
            data = np.asarray(t.data, dtype=np.float32).reshape(want[name])
            diff = float(np.max(np.abs(data - ref)))
            tol = 0.0 if t.tensor_type.name == "F32" else 1e-3 * float(np.max(np.abs(ref))) + 1e-6
            if diff > tol:
                fail(f"{name}: max |difference| {diff:g} against the HF export (tolerance {tol:g})")
            worst = max(worst, diff)
        print(f"values equal the HF export's (max |difference| {worst:g})")
    print("OK")


if __name__ == "__main__":
    main()
