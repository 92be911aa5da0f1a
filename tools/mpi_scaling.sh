#!/usr/bin/env bash
# Scaling across ranks on this machine, measured in one run: 1 rank x 1
# thread, 1 rank x 2 threads (`cllm bench --threads 1,2`) and 2 ranks x 1
# thread (`mpirun -np 2 cllm bench --threads 1`), full optimizer steps on
# random tokens, best step of N. Prints the two ratios the issue asks for.
#
#   cargo build --release --features mpi
#   tools/mpi_scaling.sh [PRESET] [STEPS] [BATCH] [SEQ] [PRECISION]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/target/release/cllm"
preset="${1:-seed}"
steps="${2:-5}"
batch="${3:-8}"
seq="${4:-128}"
precision="${5:-auto}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(bench --preset "$preset" --steps "$steps" --batch "$batch" --seq "$seq" --no-profile --json --precision "$precision")

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores;" \
     "flags: $(grep -o 'avx512[a-z_0-9]*\|avx2\|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')"
one=$("$bin" "${common[@]}" --threads 1,2 | grep '"scaling"')
two=$(mpirun --oversubscribe -np 2 "$bin" "${common[@]}" --threads 1 | grep '"scaling"')
# The same with the host's ranks summing through OpenMPI's all-reduce
# instead of the shared window (what runs across hosts with one rank each).
plain=$(CLLM_MPI_SHARED_MEMORY=0 mpirun --oversubscribe -np 2 "$bin" "${common[@]}" --threads 1 | grep '"scaling"')
python3 - "$preset" "$batch" "$seq" <<PY
import json, sys
one = [json.loads(l) for l in """$one""".splitlines()]
two = json.loads("""$two""".splitlines()[-1])
plain = json.loads("""$plain""".splitlines()[-1])
r11 = next(p for p in one if p["threads"] == 1)
r12 = next(p for p in one if p["threads"] == 2)
preset, batch, seq = sys.argv[1:4]
print(f"preset {preset}, {batch} x {seq} tokens per step, {two['params']/1e6:.2f}M parameters, {two.get('precision', 'fp32')} matmuls")
print(f"  1 rank  x 1 thread : {r11['tokens_per_sec']:8.0f} tokens/s  (step {r11['step_secs']*1e3:.0f} ms)")
print(f"  1 rank  x 2 threads: {r12['tokens_per_sec']:8.0f} tokens/s  (step {r12['step_secs']*1e3:.0f} ms)")
print(f"  2 ranks x 1 thread : {two['tokens_per_sec']:8.0f} tokens/s  (step {two['step_secs']*1e3:.0f} ms)")
print(f"  all-reduce: {two['allreduce_bytes']/1e6:.1f} MB per step, {two['allreduce_secs']*1e3:.1f} ms inside it, "
      f"{two['exposed_secs']*1e3:.1f} ms not hidden behind backward")
print(f"  2 ranks x 1 thread, summing through MPI's all-reduce instead of shared memory: "
      f"{plain['tokens_per_sec']:.0f} tokens/s (step {plain['step_secs']*1e3:.0f} ms; "
      f"{plain['allreduce_secs']*1e3:.1f} ms inside it, {plain['exposed_secs']*1e3:.1f} ms not hidden)")
print(f"  2 ranks x 1 / 1 rank x 1 = {two['tokens_per_sec']/r11['tokens_per_sec']:.2f}x (target >= 1.85x)")
print(f"  2 ranks x 1 / 1 rank x 2 = {two['tokens_per_sec']/r12['tokens_per_sec']:.2f} (target >= 0.95)")
PY
