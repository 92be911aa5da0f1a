#!/usr/bin/env python3
"""Where a cluster of machines like this one stops paying off.

Measures each preset on this machine with `cllm bench` (all cores, one rank)
and projects a data-parallel run on K such machines:

  step time = compute / K + all-reduce - what overlap hides
  all-reduce (ring) = 2 (K-1)/K x gradient bytes / bandwidth + 2 (K-1) x latency

The trainer all-reduces each layer's gradients as backward finishes it, so
all but the last bucket (the token and position embeddings, finished last)
can hide behind the rest of backward (about 2/3 of a step's compute):

  exposed = ring(embedding bytes) + max(0, ring(other bytes) - backward)

Prints a Markdown table: efficiency = compute/K / step time at the batch
given, and the smallest global batch (sequences per step) that keeps the
efficiency at or above 90%.

  python3 tools/cluster_model.py [--cllm target/release/cllm] [--presets small,medium,large,seed]
"""
import argparse
import json
import subprocess

LATENCY = 30e-6  # seconds per message hop on a LAN (TCP)


def bench(cllm, preset, batch, seq, steps):
    out = subprocess.run(
        [cllm, "bench", "--preset", preset, "--threads", "0", "--batch", str(batch),
         "--seq", str(seq), "--steps", str(steps), "--no-profile", "--json"],
        check=True, capture_output=True, text=True).stdout
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return [l for l in lines if l["measurement"] == "scaling"][-1]


def ring(bytes_, k, bw):
    return 2 * (k - 1) / k * bytes_ / bw + 2 * (k - 1) * LATENCY if k > 1 else 0.0


def efficiency(m, k, bw, seqs, seq):
    compute = seqs * seq / m["tokens_per_sec"] / k
    backward = compute * 2 / 3
    emb = 4 * m["embedding_params"]
    rest = 4 * m["params"] - emb
    exposed = ring(emb, k, bw) + max(0.0, ring(rest, k, bw) - backward)
    return compute / (compute + exposed)


def batch_for(m, k, bw, seq, target=0.9):
    seqs = k  # at least one sequence per machine
    while seqs < 1 << 24:
        if efficiency(m, k, bw, seqs, seq) >= target:
            return seqs
        seqs *= 2
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cllm", default="target/release/cllm")
    ap.add_argument("--presets", default="small,medium,large,seed")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64, help="global sequences per step")
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    links = [("1 Gbit/s", 1e9 / 8), ("10 Gbit/s", 10e9 / 8), ("25 Gbit/s", 25e9 / 8)]
    ks = [2, 4, 8, 16, 32, 64]
    print("| preset | params | machine tokens/s | link | " +
          " | ".join(f"K={k}" for k in ks) + " | batch for 90% at K=64 |")
    print("|---|---|---|---|" + "---|" * len(ks) + "---|")
    for p in a.presets.split(","):
        m = bench(a.cllm, p, 8, a.seq, a.steps)
        for name, bw in links:
            effs = [efficiency(m, k, bw, max(a.batch, k), a.seq) for k in ks]
            b = batch_for(m, 64, bw, a.seq)
            print(f"| {p} | {m['params'] / 1e6:.2f}M | {m['tokens_per_sec']:.0f} | {name} | " +
                  " | ".join(f"{100 * e:.0f}%" for e in effs) +
                  f" | {b if b else '>16M'} |")


if __name__ == "__main__":
    main()
