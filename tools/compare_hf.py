#!/usr/bin/env python3
"""Compare cllm's logits with Hugging Face transformers' on an exported model.

Usage (after `cllm export FILE --format hf --output DIR --check-text "TEXT"`):

    pip install torch transformers safetensors
    python3 tools/compare_hf.py DIR [--tolerance 1e-3]

Loads DIR with transformers.GPT2LMHeadModel, runs the token ids cllm wrote
to DIR/cllm_logits.json, and prints the maximum absolute difference between
the two sets of logits. Exits 1 when it exceeds the tolerance.
"""

import argparse
import json
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="folder written by `cllm export --format hf`")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="largest acceptable max |difference| (default 1e-3)")
    args = parser.parse_args()

    logits_path = os.path.join(args.dir, "cllm_logits.json")
    if not os.path.exists(logits_path):
        print(f"{logits_path} is missing: export with --check-text TEXT first", file=sys.stderr)
        return 2
    with open(logits_path, encoding="utf-8") as f:
        reference = json.load(f)
    ids = reference["ids"]
    vocab = reference["vocab_size"]

    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(args.dir, torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        hf = model(torch.tensor([ids], dtype=torch.long)).logits[0]  # (T, V)
    cllm = torch.tensor(reference["logits"], dtype=torch.float32).reshape(len(ids), vocab)
    if hf.shape != cllm.shape:
        print(f"shape mismatch: transformers {tuple(hf.shape)}, cllm {tuple(cllm.shape)}")
        return 1
    diff = (hf - cllm).abs()
    max_diff = diff.max().item()
    worst = int(diff.argmax().item())
    print(f"text: {reference['text']!r}")
    print(f"tokens: {len(ids)}, vocabulary: {vocab}")
    print(f"max |logit difference| = {max_diff:.3e} (token {worst // vocab}, id {worst % vocab})")
    print(f"mean |logit difference| = {diff.mean().item():.3e}")
    same_argmax = (hf.argmax(-1) == cllm.argmax(-1)).float().mean().item()
    print(f"arg-max agreement: {same_argmax * 100:.1f}%")
    if max_diff > args.tolerance:
        print(f"FAIL: above the tolerance {args.tolerance}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
