#!/bin/bash
# Run from the repository root after `cargo build --release -p pudding-cli --bin pudding`
# and `cargo build --release` in scripts/peer/candle-bench; pause other jobs first.
set -e
M=${MODEL:-$HOME/.cache/pudding/models/SmolLM2-135M-Instruct.Q4_1.gguf}
C=${CANDLE_BENCH:-scripts/peer/candle-bench/target/release/candle-bench}
P=${PUDDING:-target/release/pudding}
echo "== pudding k6"; time $P bench --skip 3,12,16,17,18,26 --repeats 3 --out ${OUT:-/tmp}/bench-k6.json
echo "== pudding k3"; time $P bench --skip 7,18,19 --repeats 3 --generate 128 --out ${OUT:-/tmp}/bench-k3.json
echo "== candle f32"; CANDLE_DEQUANTIZE_ALL=1 $C $M 128 128 3
echo "== pudding peer"; $P bench --model $M --skip 7,18,19 --prefill 128 --generate 128 --repeats 3 --out ${OUT:-/tmp}/peer-pudding2.json
echo "== candle quantized"; $C $M 128 128 3
