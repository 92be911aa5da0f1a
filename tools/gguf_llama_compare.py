#!/usr/bin/env python3
"""Loads a `cllm export --format gguf` file in llama.cpp (through
`llama-cpp-python`, built from source by pip) and compares its next-token
logits with cllm's on the same tokens.

    python3 -m venv /tmp/gguf_venv
    /tmp/gguf_venv/bin/pip install gguf llama-cpp-python==0.3.36   # ~9 min build on 2 cores
    /tmp/gguf_venv/bin/python tools/gguf_llama_compare.py MODEL.cllm [--outtype f32] [--text FILE]

Runs `target/release/cllm export` twice into a temporary folder: `--format
hf --check-text TEXT` (cllm's own logits for TEXT, `cllm_logits.json`) and
`--format gguf`; then llama.cpp evaluates the same token ids. Passes when
max |difference| <= --tolerance (1e-2 for f32; llama.cpp's GELU uses an
fp16 table, so exact agreement is not expected) and the arg-max agrees at
>= 99% of positions. Also reports whether llama.cpp's tokenizer gives our
ids for TEXT. Exits 1 on failure.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

DEFAULT_TEXT = """static int sqlite3BtreeNext(BtCursor *pCur, int flags){
  int rc;
  assert( cursorOwnsBtShared(pCur) );
  if( pCur->eState!=CURSOR_VALID ){
    rc = moveToLeftmost(pCur);
  }
  return rc;
}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--outtype", default="f32", choices=["f32", "f16"])
    ap.add_argument("--text", help="file with the text to score (default: a C function)")
    ap.add_argument("--tolerance", type=float, default=None)
    ap.add_argument("--cllm", default="target/release/cllm")
    args = ap.parse_args()
    tol = args.tolerance if args.tolerance is not None else (1e-2 if args.outtype == "f32" else 5e-2)
    text = open(args.text).read() if args.text else DEFAULT_TEXT
    from llama_cpp import Llama

    with tempfile.TemporaryDirectory() as tmp:
        hf = os.path.join(tmp, "hf")
        gguf = os.path.join(tmp, "model.gguf")
        subprocess.run([args.cllm, "export", "--model", args.model, "--format", "hf",
                        "--output", hf, "--check-text", text], check=True, capture_output=True)
        subprocess.run([args.cllm, "export", "--model", args.model, "--format", "gguf",
                        "--outtype", args.outtype, "--output", gguf], check=True,
                       capture_output=True)
        ref = json.load(open(os.path.join(hf, "cllm_logits.json")))
        ids = ref["ids"]
        vocab = ref["vocab_size"]
        ours = np.asarray(ref["logits"], dtype=np.float32).reshape(len(ids), vocab)
        llm = Llama(model_path=gguf, n_ctx=max(len(ids), 8), logits_all=True, verbose=False,
                    n_threads=2)
        theirs_ids = llm.tokenize(text.encode(), add_bos=False, special=False)
        llm.eval(ids)
        theirs = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    diff = float(np.max(np.abs(theirs - ours)))
    agree = float(np.mean(np.argmax(theirs, axis=1) == np.argmax(ours, axis=1)))
    print(f"{len(ids)} tokens, vocabulary {vocab}, {args.outtype}: "
          f"max |difference| {diff:.3g}, arg-max agreement {100 * agree:.1f}%")
    # cllm cut the ids to the model's context; compare that many.
    same = theirs_ids[: len(ids)] == ids
    print(f"llama.cpp's tokenizer {'gives the same ids' if same else 'differs'} "
          f"(first {len(ids)} of its {len(theirs_ids)} tokens)")
    ok = diff <= tol and agree >= 0.99
    print("OK" if ok else f"FAIL (tolerance {tol}, arg-max >= 99%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
