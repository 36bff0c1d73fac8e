#!/bin/bash
# Run from the repository root after `cargo build --release -p pudding-cli --bin pudding`
# and `cargo build --release` in scripts/peer/candle-bench; pause other jobs first.
# One run: candle (quantized kernels), pudding (dense and skipping 7,18,19), candle with
# every matmul dequantised to f32, then candle quantized again.
set -e
M=${MODEL:-$HOME/.cache/pudding/models/SmolLM2-135M-Instruct.Q4_1.gguf}
C=${CANDLE_BENCH:-scripts/peer/candle-bench/target/release/candle-bench}
P=${PUDDING:-target/release/pudding}
echo "== candle quantized"; $C $M 128 128 3
echo "== pudding"; $P bench --model $M --skip 7,18,19 --prefill 128 --generate 128 --repeats 3 --out ${OUT:-/tmp}/peer-pudding.json
echo "== candle dequantized (f32)"; CANDLE_DEQUANTIZE_ALL=1 $C $M 128 128 3
echo "== candle quantized (again)"; $C $M 128 128 3
