#!/usr/bin/env python3
"""Checks that a `cllm export --format hf` folder works in Hugging Face
`transformers` without hand-work: `AutoTokenizer` and
`AutoModelForCausalLM` load it, the tokenizer knows the special tokens, and
greedy `generate()` stops at them, with the same middle as `cllm generate
--suffix`. A manual check, not part of CI.

    pip install torch transformers
    python3 tools/check_hf_generate.py MODEL.cllm [--data FILE] [--holes 4] [--max-tokens 32]

The model needs FIM tokens. Holes are cut from `--data` as in
`tools/check_gguf_infill.py`; the FIM prompt is written as marker text
(`<fim_suffix>SUFFIX<fim_prefix>PREFIX<fim_middle>LINE`, the prefix's current
line after `<fim_middle>`), which the tokenizer
turns into the special tokens. Exits 0 when every middle equals cllm's.
"""

import argparse
import os
import subprocess
import sys
import tempfile

from check_gguf_infill import cllm_middle, holes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", help="a .cllm model with FIM tokens")
    ap.add_argument("--data", default="/work/shared/data/sqlite_c.val.txt")
    ap.add_argument("--holes", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cllm", default="target/release/cllm")
    args = ap.parse_args()
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = open(args.data, encoding="utf-8", errors="replace").read()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "hf")
        subprocess.run([args.cllm, "export", "--model", args.model, "--format", "hf",
                        "--output", out], check=True, capture_output=True)
        tok = AutoTokenizer.from_pretrained(out)
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    model.eval()
    gen = model.generation_config
    print(f"transformers {transformers.__version__}: {type(tok).__name__}, "
          f"{type(model).__name__}; eos {tok.eos_token!r}={tok.eos_token_id}, "
          f"pad {tok.pad_token!r}={tok.pad_token_id}, special {tok.all_special_tokens}; "
          f"generate() ends at {gen.eos_token_id}, max_length {gen.max_length}")
    ends = set(gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id])
    n_ctx = model.config.n_positions
    reserve = max(1, min(args.max_tokens, max(1, n_ctx // 4)))
    room = n_ctx - reserve - 3

    def count(s):
        return len(tok(s, add_special_tokens=False)["input_ids"])

    def fits(prefix, suffix):
        if count(suffix) > room // 4:
            return "suffix"
        return None if count(prefix) + count(suffix) <= room else "prefix"

    same = stopped = 0
    cases = holes(text, args.holes, args.seed, fits)
    for n, (prefix, suffix) in enumerate(cases, 1):
        ours, _ = cllm_middle(args.cllm, args.model, prefix, suffix, args.max_tokens)
        cut = prefix.rfind("\n") + 1  # cllm's layout: the current line after <fim_middle>
        prompt = tok(f"<fim_suffix>{suffix}<fim_prefix>{prefix[:cut]}<fim_middle>{prefix[cut:]}",
                     return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**prompt, do_sample=False, max_new_tokens=args.max_tokens,
                                 repetition_penalty=1.0)[0, prompt["input_ids"].shape[1]:]
        ids = ids.tolist()
        last_is_end = bool(ids) and ids[-1] in ends
        stopped += last_is_end
        middle = tok.decode([i for i in ids if i not in ends], skip_special_tokens=False)
        same += middle == ours
        print(f"\nhole {n}: {'SAME' if middle == ours else 'DIFFERENT'}; {len(ids)} tokens, "
              f"{'stopped at ' + repr(tok.convert_ids_to_tokens(ids[-1])) if last_is_end else 'ran to max_new_tokens'}")
        print(f"  cllm          {ours!r}")
        print(f"  transformers  {middle!r}")
    print(f"\n{len(cases)} holes: same middle in {same}; generate() stopped at a special "
          f"token in {stopped}.")
    return 0 if cases and same == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
