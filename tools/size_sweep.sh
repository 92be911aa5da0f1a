#!/usr/bin/env bash
# The model-size sweep behind `--preset auto` (not part of `cargo test`):
# for each time budget and each size, `cllm train --time BUDGET --preset
# SIZE` on a training file, then `cllm eval --json` of the final model on a
# held-out file. Prints one Markdown table row per run, and writes them to
# WORK_DIR/sweep.md; each run's output stays in WORK_DIR/<budget>-<size>.log.
#
#   cargo build --release
#   tools/size_sweep.sh TRAIN_FILE VAL_FILE [WORK_DIR]
#
# On an idle machine (the budgets are wall-clock time). Settings from the
# environment: CLLM_BIN (default target/release/cllm), SWEEP_BUDGETS
# ("10m 30m"), SWEEP_SIZES ("small medium large"), SWEEP_SEQ (empty: each
# size's default), SWEEP_EXTRA (more `cllm train` flags, e.g. "--tokenizer
# bytes").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
train="${1:?usage: size_sweep.sh TRAIN_FILE VAL_FILE [WORK_DIR]}"
val="${2:?usage: size_sweep.sh TRAIN_FILE VAL_FILE [WORK_DIR]}"
work="${3:-$(mktemp -d "${TMPDIR:-/tmp}/cllm-sweep.XXXXXX")}"
bin="${CLLM_BIN:-$root/target/release/cllm}"
budgets="${SWEEP_BUDGETS:-10m 30m}"
sizes="${SWEEP_SIZES:-small medium large}"
extra="${SWEEP_EXTRA:-}"

[ -x "$bin" ] || { echo "sweep: $bin: no release binary; run cargo build --release first" >&2; exit 2; }
for f in "$train" "$val"; do
    [ -f "$f" ] || { echo "sweep: $f: no such file" >&2; exit 2; }
done
train="$(cd "$(dirname "$train")" && pwd)/$(basename "$train")"
val="$(cd "$(dirname "$val")" && pwd)/$(basename "$val")"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
cd "$work"

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
flags="$(grep -o 'avx512[a-z_0-9]*\|avx2\|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')"
{
    echo "CPU: $cpu ($(nproc) cores; $flags)"
    echo
    echo "| budget | size | seq | parameters | steps | tokens | tokens/s | time used | val bits/byte | with memory |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
} | tee sweep.md

# field JSON KEY: a number from a one-line JSON object.
field() {
    python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("-" if v is None else (f"{v:.3f}" if isinstance(v,float) else v))' "$1" "$2"
}

for budget in $budgets; do
    for size in $sizes; do
        name="$budget-$size"
        seq_flag=()
        [ -n "${SWEEP_SEQ:-}" ] && seq_flag=(--seq-len "$SWEEP_SEQ")
        # shellcheck disable=SC2086
        "$bin" train --data "$train" --time "$budget" --preset "$size" "${seq_flag[@]}" \
            --run-name "$name" --output "$work/$name.cllm" $extra >"$name.log" 2>&1
        summary="$(grep -E '^ *time budget' "$name.log" | sed 's/^ *//')"
        steps="$(grep -oE '^done: [0-9]+ steps' "$name.log" | grep -oE '[0-9]+')"
        toks="$(grep -oE '[0-9]+ tokens/s' "$name.log" | tail -1 | grep -oE '^[0-9]+')"
        json="$("$bin" eval --model "$work/$name.cllm" --data "$val" --json 2>/dev/null | tail -1)"
        info="$("$bin" inspect --model "$work/$name.cllm" --json 2>/dev/null || echo '{}')"
        params="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d.get("num_params","-"))' "$info")"
        seq="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d.get("train_config",{}).get("seq_len","-"))' "$info")"
        tokens="$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d.get("state",{}).get("tokens_seen","-"))' "$info")"
        used="$(echo "$summary" | grep -oE 'used [^(]+\([0-9.]+%\)' | sed 's/used //')"
        echo "| $budget | $size | $seq | $params | $steps | $tokens | $toks | $used | $(field "$json" bits_per_byte) | $(field "$json" bits_per_byte_with_memory) |" | tee -a sweep.md
    done
done
echo "table: $work/sweep.md"
