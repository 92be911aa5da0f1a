#!/usr/bin/env bash
# The large-tree journey, as a benchmark (not part of `cargo test`): the
# release binary's `cllm prepare` on a big real tree, `cllm tokenize` on the
# corpus it wrote, and a short `cllm train` on that corpus, each timed, with
# its peak memory, printed as a table.
#
#   cargo build --release
#   tools/journey_large_tree.sh [TREE] [WORK_DIR]
#
# TREE defaults to the cargo registry sources (~/.cargo/registry/src, 10k+
# files); WORK_DIR (default: a new temporary folder) receives the corpus,
# the tokenizer, the model and each phase's log. Settings from the
# environment: CLLM_BIN (default target/release/cllm), JOURNEY_PRESET
# (tiny), JOURNEY_STEPS (20), JOURNEY_VOCAB (2048), JOURNEY_THREADS (0 =
# all cores). Needs GNU time (/usr/bin/time; Debian: apt-get install time).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tree="${1:-$HOME/.cargo/registry/src}"
work="${2:-$(mktemp -d "${TMPDIR:-/tmp}/cllm-journey.XXXXXX")}"
bin="${CLLM_BIN:-$root/target/release/cllm}"
preset="${JOURNEY_PRESET:-tiny}"
steps="${JOURNEY_STEPS:-20}"
vocab="${JOURNEY_VOCAB:-2048}"
threads="${JOURNEY_THREADS:-0}"

[ -d "$tree" ] || { echo "journey: $tree: no such folder" >&2; exit 2; }
[ -x "$bin" ] || { echo "journey: $bin: no release binary; run cargo build --release first" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "journey: /usr/bin/time missing (Debian: apt-get install time)" >&2; exit 2; }
mkdir -p "$work"
work="$(cd "$work" && pwd)"
tree="$(cd "$tree" && pwd)"
# The trainer writes runs/ under the current folder: keep it in WORK_DIR.
cd "$work"

rows=()
# phase NAME COMMAND...: runs it under GNU time, keeps its output in
# NAME.log, and adds a row "NAME wall_s peak_MiB".
phase() {
    local name="$1"
    shift
    echo "journey: $name: $*" >&2
    if ! /usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.log" 2>&1; then
        echo "journey: $name failed; the end of $work/$name.log:" >&2
        tail -n 20 "$work/$name.log" >&2
        exit 1
    fi
    local wall rss
    wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0
        for (i = 1; i <= n; i++) s = s * 60 + p[i]
        printf "%.1f", s }' "$work/$name.time")"
    rss="$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$work/$name.time")"
    rows+=("$name $wall $rss")
}

phase prepare "$bin" prepare --input "$tree" --output "$work/corpus.txt" --force
phase tokenize "$bin" tokenize --input "$work/corpus.txt" --output "$work/tokenized" \
    --vocab-size "$vocab"
phase train "$bin" train --data "$work/corpus.txt" --preset "$preset" --max-steps "$steps" \
    --vocab-size "$vocab" --threads "$threads" --output "$work/model.cllm" \
    --checkpoint-dir "$work/checkpoints" --checkpoint-every 0 --eval-every "$steps" \
    --run-name journey

corpus_mb="$(awk -v b="$(stat -c %s "$work/corpus.txt")" 'BEGIN { printf "%.1f", b / 1e6 }')"
echo
echo "tree: $tree"
echo "corpus: $corpus_mb MB; $(grep -m1 '^kept' "$work/prepare.log" || true)"
echo "tokenize: $(tail -n 1 "$work/tokenize.log")"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
echo
printf '%-10s %10s %14s\n' phase "wall (s)" "peak RSS (MiB)"
for row in "${rows[@]}"; do
    # shellcheck disable=SC2086
    printf '%-10s %10s %14s\n' $row
done
echo
echo "logs and outputs: $work"
