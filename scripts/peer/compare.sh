#!/usr/bin/env bash
# pudding vs llama.cpp on the same GGUF, alternating, at 1 and 2 threads, in one run:
# prefill (pp128, pp512) and decode (tg128) tokens/s, pudding's skipped/dense ratios, and
# the peak RSS of `pudding generate`. Prints a Markdown table (and writes it with the raw
# JSON under $OUT_DIR).
#
#   scripts/peer/build-llama-cpp.sh                    # once
#   cargo build --release --bin pudding
#   scripts/peer/compare.sh [MODEL.gguf] [SKIP]        # default: the fetched SmolLM2 Q4_1
#
# Environment: ROUNDS (alternations, default 2), REPEATS (per measurement, default 3),
# WEIGHTS (pudding's --weights, default quantized), OUT_DIR (default target/peer).
#
# Decode is compared at the same depth: pudding's rate is (128 - 1) / (t[prompt 128 +
# generate 128] - t[prefill 128]), i.e. 128 tokens decoded after a 128-token prompt, and
# llama.cpp's is llama-bench's tg128 at depth 128 (`-d 128`). llama-bench's tg128 from an
# empty context (less attention per token) is printed too.
set -euo pipefail
cd "$(dirname "$0")/../.."
PEER_HOME="${PUDDING_HOME:-$HOME/.cache/pudding}/peer"
LLAMA_BENCH="${LLAMA_BENCH:-$PEER_HOME/build/bin/llama-bench}"
PUDDING="${PUDDING:-target/release/pudding}"
MODEL="${1:-$("$PUDDING" fetch 2>/dev/null | tail -n 1)}"
SKIP="${2:-3,12,16,17,18,26}"
ROUNDS="${ROUNDS:-2}"
REPEATS="${REPEATS:-3}"
WEIGHTS="${WEIGHTS:-quantized}"
OUT_DIR="${OUT_DIR:-target/peer}"
mkdir -p "$OUT_DIR"
[ -x "$LLAMA_BENCH" ] || { echo "no llama-bench at $LLAMA_BENCH: run scripts/peer/build-llama-cpp.sh" >&2; exit 1; }
[ -x "$PUDDING" ] || { echo "no pudding at $PUDDING: cargo build --release --bin pudding" >&2; exit 1; }
NAME=$(basename "$MODEL" .gguf)
echo "model: $MODEL ($(stat -c %s "$MODEL") bytes); skip: $SKIP; machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >&2

for round in $(seq 1 "$ROUNDS"); do
    for threads in 1 2; do
        echo "round $round, $threads thread(s): llama-bench" >&2
        "$LLAMA_BENCH" -m "$MODEL" -p 128,512 -n 128 -t "$threads" -r "$REPEATS" -o json \
            > "$OUT_DIR/$NAME-llama-t$threads-r$round.json" 2>/dev/null
        "$LLAMA_BENCH" -m "$MODEL" -p 0 -n 128 -d 128 -t "$threads" -r "$REPEATS" -o json \
            > "$OUT_DIR/$NAME-llama-depth-t$threads-r$round.json" 2>/dev/null
        echo "round $round, $threads thread(s): pudding bench" >&2
        RAYON_NUM_THREADS="$threads" "$PUDDING" --weights "$WEIGHTS" bench --model "$MODEL" \
            --skip "$SKIP" --prefill 128,512 --generate 128 --repeats "$REPEATS" \
            --out "$OUT_DIR/$NAME-pudding-t$threads-r$round.json" > /dev/null
    done
done
for w in quantized dequantized; do
    /usr/bin/time -f "%M" -o "$OUT_DIR/$NAME-rss-$w.txt" "$PUDDING" --weights "$w" generate \
        --model "$MODEL" --prompt "Why is the sky blue?" --max-tokens 32 > /dev/null 2>&1
done

python3 - "$OUT_DIR" "$NAME" "$ROUNDS" "$MODEL" "$WEIGHTS" <<'PY' | tee "$OUT_DIR/$NAME.md"
import json, os, statistics, sys
out, name, rounds, model, weights = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def llama(t):
    rates = {}
    for r in range(1, rounds + 1):
        rows = json.load(open(f"{out}/{name}-llama-t{t}-r{r}.json"))
        rows += json.load(open(f"{out}/{name}-llama-depth-t{t}-r{r}.json"))
        for row in rows:
            key = f"pp{row['n_prompt']}" if row["n_gen"] == 0 else f"tg{row['n_gen']}"
            if row.get("n_depth", 0):
                key += f"@d{row['n_depth']}"
            rates.setdefault(key, []).append(row["avg_ts"])
    return {k: statistics.median(v) for k, v in rates.items()}
def pudding(t):
    rates, ratios = {}, {}
    for r in range(1, rounds + 1):
        rows = {x["workload"]: x for x in json.load(open(f"{out}/{name}-pudding-t{t}-r{r}.json"))["rows"]}
        for n in (128, 512):
            rates.setdefault(f"pp{n}", []).append(n / rows[f"prefill {n}"]["dense_secs"])
        gen, pre = rows["prompt 128 + generate 128"], rows["prefill 128"]
        rates.setdefault("tg128@d128", []).append(127 / (gen["dense_secs"] - pre["dense_secs"]))
        skipped = 127 / (gen["skipped_secs"] - pre["skipped_secs"])
        rates.setdefault("tg128 skipped", []).append(skipped)
        for w, x in rows.items():
            ratios.setdefault(w, []).append((x["ratio"], x["ideal_ratio"]))
    return ({k: statistics.median(v) for k, v in rates.items()},
            {w: (statistics.median(a for a, _ in v), v[0][1]) for w, v in ratios.items()})
size = os.path.getsize(model)
print(f"**{name}** ({size / 1e6:.0f} MB), pudding `--weights {weights}`, medians over {rounds} alternating rounds\n")
print("| tokens/s | llama.cpp 1 thread | pudding 1 thread | ratio | llama.cpp 2 threads | pudding 2 threads | ratio |")
print("|---|---|---|---|---|---|---|")
l1, l2 = llama(1), llama(2)
(p1, r1), (p2, r2) = pudding(1), pudding(2)
for k, label in (("pp128", "pp128"), ("pp512", "pp512"), ("tg128@d128", "tg128 after 128 tokens")):
    print(f"| {label} | {l1[k]:.1f} | {p1[k]:.1f} | {p1[k] / l1[k]:.2f}x | {l2[k]:.1f} | {p2[k]:.1f} | {p2[k] / l2[k]:.2f}x |")
print(f"| tg128 after 128 tokens, blocks skipped | | {p1['tg128 skipped']:.1f} | | | {p2['tg128 skipped']:.1f} | |")
print(f"| tg128 from an empty context | {l1['tg128']:.1f} | | | {l2['tg128']:.1f} | | |")
rss = {w: int(open(f"{out}/{name}-rss-{w}.txt").read().split()[-1]) * 1024 for w in ("quantized", "dequantized")}
print(f"\npeak RSS of `pudding generate`: quantized {rss['quantized'] / 2**20:.0f} MiB "
      f"({rss['quantized'] / size:.2f}x the file), dequantized {rss['dequantized'] / 2**20:.0f} MiB "
      f"({rss['dequantized'] / size:.2f}x)\n")
print("| pudding skipped/dense | 1 thread | 2 threads | ideal |")
print("|---|---|---|---|")
for w in r1:
    print(f"| {w} | {r1[w][0]:.3f} | {r2[w][0]:.3f} | {r1[w][1]:.3f} |")
PY
