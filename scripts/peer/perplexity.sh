#!/usr/bin/env bash
# An exported (pruned) GGUF in llama.cpp against pudding: `pudding export` writes GGUF
# without SKIP's blocks, llama.cpp's llama-perplexity runs the export, pudding runs the
# source with SKIP skipped and the export dense, all on the same fixed text
# (scripts/peer/perplexity_text.py) and chunks. Prints one Markdown row.
#
#   scripts/peer/perplexity.sh [GGUF or asset name] [SKIP] [CTX=256] [CHUNKS=16]
#
# Needs scripts/peer/build-llama-cpp.sh llama-perplexity, and the task data
# (`pudding fetch task-data`). PUDDING: the pudding binary (default: a release build).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL="${1:-smollm2-135m-instruct}"
SKIP="${2:-4,7,13,18,19,26}"
CTX="${3:-256}"
CHUNKS="${4:-16}"
HOME_DIR="${PUDDING_HOME:-$HOME/.cache/pudding}"
LLAMA_PERPLEXITY="$HOME_DIR/peer/build/bin/llama-perplexity"
[ -x "$LLAMA_PERPLEXITY" ] || { echo "build it first: scripts/peer/build-llama-cpp.sh llama-perplexity" >&2; exit 1; }
if [ -z "${PUDDING:-}" ]; then
    cargo build --release --quiet --bin pudding
    PUDDING=target/release/pudding
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PUDDING" fetch task-data > /dev/null
python3 scripts/peer/perplexity_text.py "$WORK/text.txt" > /dev/null
SOURCE=$("$PUDDING" fetch "$MODEL" 2>/dev/null | tail -1 || true)
[ -f "$SOURCE" ] || SOURCE="$MODEL"
"$PUDDING" export --model "$SOURCE" --skip "$SKIP" --out "$WORK/pruned.gguf" >&2

ppl_of() { python3 -c 'import json,sys; print("%.4f" % json.loads(sys.stdin.read().strip().splitlines()[-1])["perplexity"])'; }
LLAMA_DENSE=$("$LLAMA_PERPLEXITY" -m "$SOURCE" -f "$WORK/text.txt" -c "$CTX" -b "$CTX" --chunks "$CHUNKS" -t 2 2>&1 \
    | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
LLAMA=$("$LLAMA_PERPLEXITY" -m "$WORK/pruned.gguf" -f "$WORK/text.txt" -c "$CTX" -b "$CTX" --chunks "$CHUNKS" -t 2 2>&1 \
    | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
[ -n "$LLAMA" ] || { echo "llama-perplexity failed on the export" >&2; exit 1; }
run() { "$PUDDING" perplexity "$@" --file "$WORK/text.txt" --ctx "$CTX" --chunks "$CHUNKS" 2>/dev/null | ppl_of; }
DENSE=$(run --weights dequantized --model "$SOURCE")
SKIPPED=$(run --weights dequantized --model "$SOURCE" --skip "$SKIP")
EXPORT=$(run --weights dequantized --model "$WORK/pruned.gguf")
EXPORT_Q=$(run --weights quantized --model "$WORK/pruned.gguf")
DIFF=$(python3 -c "print('%+.2f %%' % (100 * ($LLAMA / $SKIPPED - 1)))")
echo "| model | removed | dense: pudding / llama.cpp | source skipped (pudding f32) | export (pudding f32) | export (pudding quantised) | export (llama.cpp) | llama.cpp vs pudding f32 |"
echo "|---|---|---|---|---|---|---|---|"
echo "| $(basename "$SOURCE") | $SKIP | $DENSE / $LLAMA_DENSE | $SKIPPED | $EXPORT | $EXPORT_Q | $LLAMA | $DIFF |"
