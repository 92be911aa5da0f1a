#!/usr/bin/env python3
"""Writes docs/benchmarks.md: `cllm bench` and PyTorch on the same model and
step, at 1 and 2 threads, with the machine they ran on.

Run from the repository root, on a quiet machine (nothing else building or
training: every figure is a wall-clock time):

    python3 tools/benchmarks.py                  # builds target/release/cllm, writes docs/benchmarks.md
    TORCH_PYTHON=/path/to/venv/bin/python python3 tools/benchmarks.py
    python3 tools/benchmarks.py --quick          # tries the script: tiny preset, 2 steps,
                                                 # writes target/benchmarks-quick.md

What it runs, for the `seed` and `small` presets (8 x 128 tokens a step):
`cllm bench --preset P --threads 1,2 --precision fp32 --head store,recompute
--json` (both ways the vocabulary head's backward gets its tiles back), the
same with `--precision bf16` where the CPU has AVX512_BF16, and beside each
`tools/torch_bench.py` (PyTorch eager; bf16 = CPU autocast) when the python
named by TORCH_PYTHON (default `python3`) imports torch; then the f32
products of `seed`'s shapes on `gemm` and OpenBLAS (`cllm bench --products`,
OpenBLAS where the system has it). The page records
the date, the CPU (name, family/model, AVX and AVX-512 flags, cores), the
load average before and after, the busiest other processes, the commit, and
every command, so a reader can run the same again.

Standard library only. Not part of the test command.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd, **kw):
    """Runs a command (a list), returns its stdout; raises with its stderr."""
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {r.returncode}:\n{r.stderr.strip()}")
    return r.stdout


def try_sh(cmd):
    try:
        return sh(cmd).strip()
    except (OSError, RuntimeError):
        return None


# ---------------------------------------------------------------- the machine


def cpu_info():
    text = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    first = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        key, _, value = line.partition(":")
        first[key.strip()] = value.strip()
    flags = set(first.get("flags", "").split())
    vector = sorted(f for f in flags if f in ("avx", "avx2", "fma") or f.startswith("avx512"))
    return {
        "name": first.get("model name", platform.processor() or platform.machine()),
        "vendor": first.get("vendor_id", "?"),
        "family": first.get("cpu family", "?"),
        "model": first.get("model", "?"),
        "stepping": first.get("stepping", "?"),
        "flags": vector,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_gib": mem_gib(),
    }


def mem_gib():
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def load_average():
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "unknown"


def busiest_processes(n=5):
    """The processes using the most CPU right now, this script's own left out."""
    out = try_sh(["ps", "-eo", "pid,ppid,pcpu,etime,comm", "--sort=-pcpu"])
    if not out:
        return []
    mine = {os.getpid(), os.getppid()}
    rows = []
    for line in out.splitlines()[1:]:
        parts = line.split(None, 4)
        if len(parts) < 5 or int(parts[0]) in mine or int(parts[1]) == os.getpid():
            continue
        if float(parts[2]) < 1.0:
            break
        rows.append(f"{parts[4]} (pid {parts[0]}, {parts[2]}% CPU, running {parts[3]})")
        if len(rows) == n:
            break
    return rows


# ---------------------------------------------------------------- the runs


def cllm_binary():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "cllm")


def json_lines(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


HEADS = ["store", "recompute"]


def run_cllm(binary, shown, preset, precision, shape, commands):
    """Per head mode: the one-thread profile and the scaling points by threads."""
    cmd = [binary, "bench", "--preset", preset, "--threads", "1,2", "--precision", precision,
           "--head", ",".join(HEADS), "--batch", str(shape["batch"]), "--seq", str(shape["seq"]),
           "--steps", str(shape["steps"]), "--json"]
    commands.append(shlex.join([shown] + cmd[1:]))
    lines = json_lines(sh(cmd))
    out = {}
    for head in HEADS:
        mine = [l for l in lines if l.get("head", "store") == head]
        profile = next((l for l in mine if l.get("measurement") == "train_step"), None)
        scaling = {l["threads"]: l for l in mine if l.get("measurement") == "scaling"}
        out[head] = (profile, scaling)
    return out


def run_products(binary, shown, shape, commands):
    cmd = [binary, "bench", "--preset", "seed", "--products", "--batch", str(shape["batch"]),
           "--seq", str(shape["seq"]), "--steps", str(shape["steps"]), "--json"]
    commands.append(shlex.join([shown] + cmd[1:]))
    return [l for l in json_lines(sh(cmd)) if l.get("measurement") == "product"]


def torch_available(python):
    return try_sh([python, "-c", "import torch; print(torch.__version__, torch.backends.cpu.get_cpu_capability())"])


def run_torch(python, preset, precision, shape, commands):
    cmd = [python, "tools/torch_bench.py", "--preset", preset, "--threads", "1,2",
           "--precision", precision, "--batch", str(shape["batch"]), "--seq", str(shape["seq"]),
           "--steps", str(shape["steps"]), "--json"]
    shown = ["$TORCH_PYTHON" if python != "python3" else "python3"] + cmd[1:]
    commands.append(" ".join(shlex.quote(c) if c != "$TORCH_PYTHON" else c for c in shown))
    return {l["threads"]: l for l in json_lines(sh(cmd))}


# ---------------------------------------------------------------- the page


def fmt(x, digits=0):
    return "—" if x is None else f"{x:,.{digits}f}"


def pct(x):
    return "—" if x is None else f"{100 * x:.1f}%"


def ratio(a, b):
    return "—" if a is None or not b else f"{a / b:.2f}×"


def write_page(path, meta, rows, products, commands, quick):
    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("<!-- Written by tools/benchmarks.py; edit the script, not this page. -->")
    w("")
    if quick:
        w("**Quick mode (`--quick`): the `tiny` preset and 2 steps, to try the script. "
          "These figures say nothing about speed; do not publish them.**")
        w("")
    w("Training throughput of `cllm` and of PyTorch on the same model and the same "
      "optimizer step (forward, backward, gradient clipping, AdamW), one after the "
      "other on one machine. Regenerate this page on a quiet machine with "
      "`python3 tools/benchmarks.py` (see the script's header); "
      "[performance.md](performance.md) explains the figures and keeps the "
      "history of earlier measurements.")
    w("")
    w("## The machine")
    w("")
    cpu = meta["cpu"]
    w(f"- Date: {meta['date']} (UTC), {meta['seconds']:.0f} s of benchmarks")
    w(f"- CPU: {cpu['name']} ({cpu['vendor']}, family {cpu['family']} model {cpu['model']} "
      f"stepping {cpu['stepping']})")
    w(f"- Vector flags: {' '.join(cpu['flags']) or 'none'}")
    avx512 = [f for f in cpu["flags"] if f.startswith("avx512")]
    w(f"- AVX-512 (`grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u`): "
      f"{' '.join(avx512) if avx512 else 'none'}")
    mem = f", {cpu['mem_gib']:.0f} GiB memory" if cpu["mem_gib"] else ""
    w(f"- Cores: {cpu['logical_cpus']} logical CPUs, {cpu['usable_cpus']} usable by this process{mem}")
    w(f"- Load average (1, 5, 15 min): {meta['load_before']} before, {meta['load_after']} after")
    busy = meta["busy"]
    w(f"- Other processes using CPU when it started: {'; '.join(busy) if busy else 'none above 1%'}")
    w(f"- Build: `cllm` at commit {meta['commit']}, {meta['rustc']}; {meta['os']}")
    w(f"- PyTorch: {meta['torch'] or 'not installed (set TORCH_PYTHON to a python that imports torch)'}")
    w("")
    w("## Training steps")
    w("")
    shape = meta["shape"]
    w(f"Tokens per second of full optimizer steps, {shape['batch']} × {shape['seq']} tokens a "
      f"step, best of {shape['steps']} timed steps. `cllm` bf16 = bf16 matmuls with f32 "
      "accumulation and f32 master weights; PyTorch bf16 = its CPU autocast. MFU = model "
      "FLOPs per second over the peak of `cllm`'s matmul kernel in that precision, measured "
      "in the same run, times the threads (PyTorch's against the same peak). "
      "Speedup = 2 threads over 1. Head: how the vocabulary head's backward gets each "
      "tile's exponentials back, `store` (kept from the forward) or `recompute` "
      "(`CLLM_HEAD`, [performance.md](performance.md)).")
    w("")
    w("| preset | precision | head | `cllm` 1 thread | `cllm` 2 threads | speedup | MFU 1 / 2 | "
      "PyTorch 1 thread | PyTorch 2 threads | `cllm` / PyTorch at 1 / 2 | PyTorch MFU 2 |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c1, c2 = r["cllm"].get(1), r["cllm"].get(2)
        t1 = r["torch"].get(1) if r["torch"] else None
        t2 = r["torch"].get(2) if r["torch"] else None
        c1s, c2s = (c1 or {}).get("tokens_per_sec"), (c2 or {}).get("tokens_per_sec")
        if r["torch"] is None:
            torch_cells = ["PyTorch not installed"] * 2 + ["—", "—"]
        else:
            t1s, t2s = (t1 or {}).get("tokens_per_s"), (t2 or {}).get("tokens_per_s")
            torch_mfu = None
            if t2s and c2:
                torch_mfu = t2s * c2["flops_per_token"] / 1e9 / (c2["peak_gflops"] * min(2, meta["cpu"]["usable_cpus"]))
            torch_cells = [fmt(t1s), fmt(t2s), f"{ratio(c1s, t1s)} / {ratio(c2s, t2s)}", pct(torch_mfu)]
        w(f"| `{r['preset']}` | {r['precision']} | {r['head']} | {fmt(c1s)} | {fmt(c2s)} | "
          f"{ratio(c2s, c1s)} | {pct((c1 or {}).get('mfu'))} / {pct((c2 or {}).get('mfu'))} | "
          + " | ".join(torch_cells) + " |")
    w("")
    w("One thread's step against its limits (`cllm bench`'s profile): the step with every "
      "operation at its floor (bytes over the bandwidth of the cache its data fits, FLOPs over "
      "the kernel's peak), and the same at the instructions' own peak timed from registers "
      "(about the most this machine allows one thread).")
    w("")
    w("| preset | precision | head | tokens/s | kernel peak GFLOP/s | head's share of it | "
      "every op at its floor | at the instructions' peak |")
    w("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        p = r["profile"] or {}
        limits = p.get("limits") or {}
        tok = p.get("tokens_per_sec")
        floor = limits.get("floor_tokens_per_sec")
        ceiling = (limits.get("ceiling") or {}).get("tokens_per_sec")
        share = lambda lim: "—" if not lim or not tok else f"{fmt(lim)} (run {100 * tok / lim:.1f}%)"
        w(f"| `{r['preset']}` | {r['precision']} | {r['head']} | {fmt(tok)} | "
          f"{fmt(p.get('peak_gflops'), 1)} | {pct(p.get('head_share_of_peak'))} | "
          f"{share(floor)} | {share(ceiling)} |")
    w("")
    if products:
        peak = products[0].get("register_peak") or {}
        p = peak.get("gflops")
        w("## Products")
        w("")
        w("The `seed` preset's f32 matrix products, one thread, GFLOP/s and share of "
          f"the register peak of `{peak.get('instruction', '?')}` ({fmt(p, 1)} GFLOP/s, "
          f"timed from registers in the same run): the `gemm` crate as `cllm` runs it "
          f"({products[0].get('gemm_isa')}) and the system's OpenBLAS.")
        w("")
        w("| shape | m | k | n | `gemm` | OpenBLAS |")
        w("|---|---:|---:|---:|---:|---:|")
        cell = lambda g: "—" if g is None else (f"{g:.1f} ({100 * g / p:.1f}%)" if p else f"{g:.1f}")
        for r in products:
            w(f"| {r['shape']} | {r['m']} | {r['k']} | {r['n']} | {cell(r['gemm_gflops'])} | "
              f"{cell(r['openblas_gflops'])} |")
        w("")
    w("## Commands")
    w("")
    w("Run in this order from the repository root:")
    w("")
    w("```sh")
    out.extend(commands)
    w("```")
    w("")
    with open(path, "w") as f:
        f.write("\n".join(out))


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="the tiny preset and 2 steps, to try the script (writes target/benchmarks-quick.md)")
    parser.add_argument("--output", help="the page to write (default docs/benchmarks.md, "
                        "or target/benchmarks-quick.md with --quick)")
    parser.add_argument("--no-build", action="store_true", help="use target/release/cllm as it is")
    parser.add_argument("--binary", help="the cllm to run instead of target/release/cllm (implies --no-build)")
    parser.add_argument("--steps", type=int, help="timed steps per measurement (default 5; 2 with --quick)")
    args = parser.parse_args()

    quick = args.quick
    presets = ["tiny"] if quick else ["seed", "small"]
    shape = {"batch": 8, "seq": 16 if quick else 128, "steps": args.steps or (2 if quick else 5)}
    output = args.output or os.path.join(ROOT, "target/benchmarks-quick.md" if quick else "docs/benchmarks.md")
    commands = []

    binary = args.binary or cllm_binary()
    if not args.no_build and not args.binary:
        print("building target/release/cllm ...", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--bin", "cllm"], cwd=ROOT, check=True)
        commands.append("cargo build --release --bin cllm")
    if not os.access(binary, os.X_OK):
        sys.exit(f"no {binary}: build it with `cargo build --release` (or drop --no-build)")

    shown = "target/release/cllm" if not args.binary else os.path.relpath(binary, ROOT) if binary.startswith(ROOT) else binary
    cpu = cpu_info()
    precisions = ["fp32"] + (["bf16"] if "avx512_bf16" in cpu["flags"] else [])
    python = os.environ.get("TORCH_PYTHON", "python3")
    torch = torch_available(python)
    if torch:
        version, capability = torch.split()
        torch = f"{version} (CPU capability {capability}), eager mode, run by `{python}`"
    else:
        print(f"PyTorch: `{python} -c 'import torch'` fails; the table says so", file=sys.stderr)

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "load_before": load_average(),
        "busy": busiest_processes(),
        "commit": (try_sh(["git", "rev-parse", "--short", "HEAD"]) or "unknown")
        + (" (with uncommitted changes)" if try_sh(["git", "status", "--porcelain", "--untracked-files=no"]) else ""),
        "rustc": try_sh(["rustc", "--version"]) or "rustc unknown",
        "os": f"{platform.system()} {platform.release()}",
        "torch": torch,
        "shape": shape,
    }
    started = time.time()
    rows = []
    for preset in presets:
        for precision in precisions:
            print(f"cllm bench: {preset} {precision}", file=sys.stderr)
            by_head = run_cllm(binary, shown, preset, precision, shape, commands)
            torch_rows = None
            if torch:
                print(f"torch_bench: {preset} {precision}", file=sys.stderr)
                torch_rows = run_torch(python, preset, precision, shape, commands)
            for head, (profile, scaling) in by_head.items():
                rows.append({"preset": preset, "precision": precision, "head": head,
                             "profile": profile, "cllm": scaling, "torch": torch_rows})
    print("cllm bench: products", file=sys.stderr)
    products = run_products(binary, shown, shape, commands) if not quick else []
    meta["seconds"] = time.time() - started
    meta["load_after"] = load_average()
    os.makedirs(os.path.dirname(output), exist_ok=True)
    write_page(output, meta, rows, products, commands, quick)
    print(f"wrote {os.path.relpath(output, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
