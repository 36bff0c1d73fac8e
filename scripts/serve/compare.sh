#!/usr/bin/env bash
# pudding serve vs llama.cpp's llama-server on the same GGUF, in one run: for each
# concurrency level, each server is started fresh (cold caches), loaded with the same
# bounded run of streaming chat requests (examples/serve_load.rs: prompts from the paper's
# six tasks, greedy, a fixed number of requests, then it stops), and stopped; the servers
# alternate level by level. Prints one Markdown table and keeps the JSON rows.
#
#   scripts/serve/compare.sh [--requests 200] [--concurrency 1,4,8,16] [--max-tokens 64]
#                            [--threads 2] [--model GGUF] [--out DIR]
#
# Servers: llama-server (dense; --jinja, so it renders the GGUF's own chat template as
# pudding does; -np 16 slots, continuous batching, its prompt cache on as by default),
# pudding serve dense, the same with a prompt cache of 16 (--prompt-cache 16), pudding serve
# routed by the embedded k = 3 router with mixed-set batching, and the same routed server
# batching per omission set (--batching per-set), the grouping mixed batching replaces.
# Needs: a release build (cargo build --release -p pudding-cli -p pudding-examples
# --example serve_load) and llama-server (scripts/peer/build-llama-cpp.sh llama-server).
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=200 LEVELS=1,4,8,16 MAX_TOKENS=64 THREADS=2 OUT=target/serve-compare MODEL=""
while [ $# -gt 0 ]; do
    case "$1" in
        --requests) REQUESTS=$2; shift 2 ;;
        --concurrency) LEVELS=$2; shift 2 ;;
        --max-tokens) MAX_TOKENS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
HOME_DIR="${PUDDING_HOME:-$HOME/.cache/pudding}"
MODEL="${MODEL:-$HOME_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
PUDDING=target/release/pudding
LOAD=target/release/examples/serve_load
LLAMA_SERVER="$HOME_DIR/peer/build/bin/llama-server"
for bin in "$PUDDING" "$LOAD" "$LLAMA_SERVER"; do
    [ -x "$bin" ] || { echo "missing $bin (see the header of $0)" >&2; exit 1; }
done
mkdir -p "$OUT"
ROWS="$OUT/rows.jsonl"
: > "$ROWS"
PORT=8193
PID=""
stop() { if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi; }
trap stop EXIT
wait_ready() {
    for _ in $(seq 1 300); do
        curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "the server on $PORT did not come up" >&2; exit 1
}
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $REQUESTS requests per level, max_tokens $MAX_TOKENS, $THREADS threads" | tee "$OUT/machine.txt"
offset=0
for level in ${LEVELS//,/ }; do
    for server in llama-server pudding-dense pudding-dense-prompt-cache pudding-routed pudding-routed-per-set; do
        case "$server" in
            llama-server)
                "$LLAMA_SERVER" -m "$MODEL" -t "$THREADS" -np 16 -c 32768 --jinja \
                    --host 127.0.0.1 --port "$PORT" > "$OUT/$server.log" 2>&1 &
                skip=() ;;
            pudding-dense)
                RAYON_NUM_THREADS=$THREADS "$PUDDING" serve --model "$MODEL" --no-router \
                    --port "$PORT" > "$OUT/$server.log" 2>&1 &
                skip=(--skip dense) ;;
            pudding-dense-prompt-cache)
                RAYON_NUM_THREADS=$THREADS "$PUDDING" serve --model "$MODEL" --no-router \
                    --prompt-cache 16 --port "$PORT" > "$OUT/$server.log" 2>&1 &
                skip=(--skip dense) ;;
            pudding-routed)
                RAYON_NUM_THREADS=$THREADS "$PUDDING" serve --model "$MODEL" \
                    --port "$PORT" > "$OUT/$server.log" 2>&1 &
                skip=(--skip auto) ;;
            pudding-routed-per-set)
                RAYON_NUM_THREADS=$THREADS "$PUDDING" serve --model "$MODEL" --batching per-set \
                    --port "$PORT" > "$OUT/$server.log" 2>&1 &
                skip=(--skip auto) ;;
        esac
        PID=$!
        wait_ready
        "$LOAD" --url "http://127.0.0.1:$PORT" --requests "$REQUESTS" --concurrency "$level" \
            --max-tokens "$MAX_TOKENS" --offset "$offset" --label "$server" "${skip[@]}" \
            --json "$ROWS" | tail -1
        stop
    done
    offset=$((offset + REQUESTS))
done
python3 - "$ROWS" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| server | concurrency | ok | errors | generated tokens/s | TTFT p50 / p99 ms | ITL p50 / p99 ms | sets used |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['server']} | {r['concurrency']} | {r['ok']} | {r['errors']} | {r['tokens_per_second']:.1f} | "
          f"{r['ttft_p50_ms']:.0f} / {r['ttft_p99_ms']:.0f} | {r['itl_p50_ms']:.1f} / {r['itl_p99_ms']:.1f} | {len(r['sets'])} |")
by = {(r['server'], r['concurrency']): r['tokens_per_second'] for r in rows}
print()
for level in sorted({r['concurrency'] for r in rows}):
    peer = by.get(('llama-server', level))
    cached = by.get(('pudding-dense-prompt-cache', level))
    if peer and cached:
        print(f"- concurrency {level}: pudding dense with a prompt cache / llama-server {cached / peer:.2f}x")
    routed = by.get(('pudding-routed', level))
    dense = by.get(('pudding-dense', level))
    per_set = by.get(('pudding-routed-per-set', level))
    if peer and routed and dense and per_set:
        print(f"- concurrency {level}: pudding dense / llama-server {dense / peer:.2f}x; "
              f"routed / llama-server {routed / peer:.2f}x; mixed / per-set batching {routed / per_set:.2f}x")
PY
