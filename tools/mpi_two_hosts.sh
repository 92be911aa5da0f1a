#!/usr/bin/env bash
# One training run across two "hosts" on this machine, over real TCP: two
# network namespaces joined by a veth pair, one MPI rank in each (or
# PER_HOST ranks: then the ranks of a host sum through shared memory and
# the hosts over TCP, the hierarchical all-reduce). Checks the run matches
# the same command on loopback, step for step: bit for bit with one rank a
# host (two ranks sum the same two numbers either way), to float rounding
# with more (the sums group differently: the first 10 step losses within
# 1e-4; the difference grows as training amplifies it).
#
#   cargo build --release --features mpi
#   sudo tools/mpi_two_hosts.sh [DATA] [STEPS] [PRESET] [PER_HOST]
#
# Needs root (ip netns) and OpenMPI. Not part of the default test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/target/release/cllm"
data="$(realpath "${1:-src}")"
steps="${2:-30}"
preset="${3:-small}"
per_host="${4:-1}"
ranks=$((2 * per_host))
[ -x "$bin" ] || { echo "build first: cargo build --release --features mpi" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root for ip netns" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

work="$(mktemp -d)"
cleanup() {
  ip netns del cllm-a 2>/dev/null || true
  ip netns del cllm-b 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cleanup; work="$(mktemp -d)"

ip netns add cllm-a
ip netns add cllm-b
ip link add cllm-va type veth peer name cllm-vb
ip link set cllm-va netns cllm-a
ip link set cllm-vb netns cllm-b
ip -n cllm-a addr add 10.77.0.1/24 dev cllm-va
ip -n cllm-b addr add 10.77.0.2/24 dev cllm-vb
for ns in cllm-a cllm-b; do
  ip -n "$ns" link set lo up
done
ip -n cllm-a link set cllm-va up
ip -n cllm-b link set cllm-vb up
# The link takes a moment to come up; mpirun's daemons fail if it is not.
for _ in $(seq 50); do
  ip netns exec cllm-a ping -c1 -W1 10.77.0.2 >/dev/null 2>&1 && break
  sleep 0.1
done

# mpirun starts each rank through this agent: "ssh" into a namespace.
cat > "$work/agent" <<'AGENT'
#!/bin/sh
host="$1"; shift
exec ip netns exec "$host" sh -c "$*"
AGENT
chmod +x "$work/agent"
printf 'cllm-a slots=%s\ncllm-b slots=%s\n' "$per_host" "$per_host" > "$work/hosts"

args=(train --data "$data" --preset "$preset" --tokenizer bytes --batch-size 8 --seq-len 64
      --max-steps "$steps" --threads 1 --memory off --seed 3 --run-name two --json)

mkdir -p "$work/net" "$work/loop"
echo "== two namespaces over TCP (veth, 10.77.0.0/24)"
start=$(date +%s.%N)
# btl tcp,self: with OpenMPI 4.1.4's vader transport added, ranks sharing a
# namespace crashed (SIGSEGV, with or without cllm's shared window).
(cd "$work/net" && ip netns exec cllm-a mpirun --mca plm_rsh_agent "$work/agent" \
   --hostfile "$work/hosts" -np "$ranks" --map-by slot --oversubscribe --mca btl tcp,self \
   --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
   "$bin" "${args[@]}" > out.jsonl)
printf "   %.1f s\n" "$(echo "$(date +%s.%N) - $start" | bc)"
grep -o '"Info":"cluster: [^"]*"' "$work/net/out.jsonl" | head -1

echo "== loopback on one host"
start=$(date +%s.%N)
(cd "$work/loop" && mpirun --oversubscribe -np "$ranks" "$bin" "${args[@]}" > out.jsonl)
printf "   %.1f s\n" "$(echo "$(date +%s.%N) - $start" | bc)"

losses() { grep -o '"Step":{[^}]*' "$1" | grep -o '"loss":[^,]*'; }
losses "$work/net/out.jsonl" > "$work/net.loss"
losses "$work/loop/out.jsonl" > "$work/loop.loss"
n=$(wc -l < "$work/net.loss")
grep -o '"allreduce_secs":[^,]*' "$work/net/out.jsonl" | tail -n +5 |
  awk -F: '{s+=$2; n++} END {printf "   all-reduce over the veth pair: %.2f ms per step (mean of %d steps)\n", 1000*s/n, n}'
if [ "$n" -eq "$steps" ] && cmp -s "$work/net.loss" "$work/loop.loss"; then
  echo "match: all $n step losses are bit-identical over TCP and on loopback (last $(tail -1 "$work/net.loss"))"
elif [ "$n" -eq "$steps" ] && [ "$per_host" -gt 1 ] &&
     paste -d' ' "$work/net.loss" "$work/loop.loss" | tr ':' ' ' |
     awk '{d = $2 - $4; if (d < 0) d = -d; if (d > m) m = d; if (NR <= 10 && d > f) f = d}
          END {printf "   largest step-loss difference: %.2e over the first 10 steps, %.2e over all (rounding grows as training goes)\n", f, m; exit !(f < 1e-4)}'; then
  echo "match to float rounding: $n step losses (last $(tail -1 "$work/net.loss") over TCP, $(tail -1 "$work/loop.loss") on loopback)"
else
  echo "MISMATCH between the two runs ($n steps over TCP)" >&2
  paste -d" " "$work/net.loss" "$work/loop.loss" | head -40 >&2
  exit 1
fi
